"""ExchangeConfig rules, the env and vault factories, and the repr regression test."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from client_testkit import BINANCE_API_KEY, BINANCE_SECRET, OKX_PASSPHRASE, OKX_SECRET

from keybroker import (
    BinanceAdapter,
    ExchangeConfig,
    ExchangeError,
    ExchangeId,
    OKXAdapter,
    binance_testnet_config,
    okx_testnet_config,
    vault_config,
)
from keybroker.crypto.kdf import Argon2idParams
from keybroker.errors import WrongPassphrase
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

CANARY_SECRET = "canary-secret-not-real-7f3a"
CANARY_PASSPHRASE = "canary-passphrase-not-real-9c1b"
VAULT_PASSPHRASE = "test vault passphrase, not real"
FAST_KDF = Argon2idParams(memory_kib=65536, iterations=1, lanes=1)


def test_exchange_config_repr_does_not_leak_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Permanent regression test (seed 000 §4): run it after any adapter change."""
    monkeypatch.setenv("BINANCE_API_KEY", "canary-binance-api-key-0001")
    monkeypatch.setenv("BINANCE_API_SECRET", CANARY_SECRET)
    monkeypatch.setenv("OKX_API_KEY", "canary-okx-api-key-0001")
    monkeypatch.setenv("OKX_API_SECRET", CANARY_SECRET)
    monkeypatch.setenv("OKX_PASSPHRASE", CANARY_PASSPHRASE)
    for factory, adapter_type in (
        (binance_testnet_config, BinanceAdapter),
        (okx_testnet_config, OKXAdapter),
    ):
        cfg = factory()
        for text in (repr(cfg), str(cfg), f"{cfg}", f"{cfg!r:>300}", repr([cfg])):
            assert CANARY_SECRET not in text
            assert CANARY_PASSPHRASE not in text
            assert "Secret('***')" in text
        adapter = adapter_type(cfg)
        try:
            assert repr(adapter) == f"{adapter_type.__name__}(...)"
            assert str(adapter) == f"{adapter_type.__name__}(...)"
            with pytest.raises(TypeError):
                pickle.dumps(adapter)
        finally:
            adapter.close()
        with pytest.raises(TypeError):
            pickle.dumps(cfg)
        assert isinstance(cfg.api_secret, Secret) and cfg.api_secret.reveal_text() == CANARY_SECRET
    assert repr(BinanceAdapter(binance_testnet_config())) == "BinanceAdapter(...)"


def test_secrets_given_as_str_are_kept_as_secret() -> None:
    cfg = ExchangeConfig(ExchangeId.OKX, "key", "secret-not-real", "phrase-not-real")
    assert isinstance(cfg.api_secret, Secret) and isinstance(cfg.passphrase, Secret)
    assert cfg.exchange_id is ExchangeId.OKX and cfg.testnet
    assert cfg.credential().environment == "testnet"


@pytest.mark.parametrize(
    ("factory", "present", "missing"),
    [
        (binance_testnet_config, {}, ["BINANCE_API_KEY", "BINANCE_API_SECRET"]),
        (binance_testnet_config, {"BINANCE_API_KEY": "k"}, ["BINANCE_API_SECRET"]),
        (binance_testnet_config, {"BINANCE_API_SECRET": CANARY_SECRET}, ["BINANCE_API_KEY"]),
        (
            okx_testnet_config,
            {"OKX_API_KEY": "k", "OKX_API_SECRET": CANARY_SECRET},
            ["OKX_PASSPHRASE"],
        ),
        (
            okx_testnet_config,
            {"OKX_PASSPHRASE": CANARY_PASSPHRASE, "OKX_API_SECRET": " "},
            ["OKX_API_KEY", "OKX_API_SECRET"],
        ),
    ],
)
def test_env_factories_name_the_missing_variable_never_a_value(
    factory: object, present: dict[str, str], missing: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ExchangeError) as caught:
        factory()  # type: ignore[operator]
    message = str(caught.value)
    assert caught.value.code == "InvalidConfig"
    assert all(name in message for name in missing)
    assert all(name not in message for name in present if name not in missing)
    assert CANARY_SECRET not in message and CANARY_PASSPHRASE not in message


def test_env_factories_read_only_their_variables() -> None:
    environ = {"BINANCE_API_KEY": BINANCE_API_KEY, "BINANCE_API_SECRET": BINANCE_SECRET}
    cfg = binance_testnet_config(environ=environ)
    assert (cfg.api_key, cfg.testnet, cfg.rest_base_url) == (BINANCE_API_KEY, True, None)
    okx = okx_testnet_config(
        environ={"OKX_API_KEY": "k", "OKX_API_SECRET": OKX_SECRET, "OKX_PASSPHRASE": OKX_PASSPHRASE}
    )
    assert okx.passphrase is not None and okx.passphrase.reveal_text() == OKX_PASSPHRASE


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"testnet": False}, "rest_base_url"),
        ({"testnet": False, "rest_base_url": "https://testnet.binance.vision"}, "test host"),
        ({"rest_base_url": "https://api.binance.com"}, "testnet=False"),
        ({"rest_base_url": "http://api.binance.com"}, "loopback"),
        ({"rest_base_url": "http://10.0.0.5:8080"}, "loopback"),
        ({"rest_base_url": "ftp://127.0.0.1"}, "https://"),
        ({"rest_base_url": "https://user:pw@api.binance.com"}, "password"),
        ({"rest_base_url": "https://api.binance.com?x=1", "testnet": False}, "query"),
        ({"ws_url": "ws://stream.binance.com:9443/ws"}, "wss://"),
        ({"passphrase": "nope"}, "no passphrase"),
    ],
)
def test_config_rules_say_what_is_wrong(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ExchangeError) as caught:
        ExchangeConfig("binance", BINANCE_API_KEY, BINANCE_SECRET, **kwargs)  # type: ignore[arg-type]
    assert caught.value.code == "InvalidConfig" and words in str(caught.value)
    assert caught.value.exit_code == 1


def test_production_needs_both_the_flag_and_an_explicit_production_url() -> None:
    cfg = ExchangeConfig(
        ExchangeId.Binance,
        BINANCE_API_KEY,
        BINANCE_SECRET,
        rest_base_url="https://api.binance.com/",
        ws_url="wss://stream.binance.com:9443/ws",
        testnet=False,
    )
    assert cfg.rest_base_url == "https://api.binance.com" and not cfg.testnet
    assert cfg.credential().environment == "production"
    # Loopback (an emulator) is fine either way; OKX's host never decides the environment.
    ExchangeConfig("binance", "k", "s", rest_base_url="http://127.0.0.1:9", testnet=False)
    ExchangeConfig("binance", "k", "s", rest_base_url="http://[::1]:9")
    ExchangeConfig("okx", "k", "s", "p", rest_base_url="https://www.okx.com")
    with pytest.raises(ExchangeError, match="passphrase"):
        ExchangeConfig("okx", "k", "s")
    with pytest.raises(ExchangeError, match="no adapter for exchange 'kraken'"):
        ExchangeConfig("kraken", "k", "s")
    with pytest.raises(ExchangeError, match="whitespace"):
        ExchangeConfig("binance", "k", "s with space")
    with pytest.raises(ExchangeError, match="needs a okx config"):
        OKXAdapter(ExchangeConfig("binance", "k", "s"))


def test_binance_key_permissions_say_the_testnet_has_no_sapi() -> None:
    adapter = BinanceAdapter(ExchangeConfig("binance", "k", "s"))
    with adapter, pytest.raises(ExchangeError) as caught:
        adapter.key_permissions()
    assert caught.value.code == "Unsupported" and "production" in str(caught.value)


def _vault(home: Path, *, environment: str = "testnet") -> None:
    with Vault.create(home / "vault.db", Secret(VAULT_PASSPHRASE), kdf=FAST_KDF) as vault:
        material = KeyMaterial(BINANCE_API_KEY, Secret(CANARY_SECRET))
        vault.add("bot1", "binance", material, environment=environment, scopes=("read", "trade"))
        okx = KeyMaterial("okx-key", Secret(OKX_SECRET), Secret(OKX_PASSPHRASE))
        vault.add("okx1", "okx", okx)


def test_vault_config_takes_the_credential_from_the_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _vault(home)
    cfg = vault_config("bot1", home=home, passphrase=VAULT_PASSPHRASE)
    assert (cfg.exchange_id, cfg.api_key, cfg.testnet) == ("binance", BINANCE_API_KEY, True)
    assert cfg.api_secret.reveal_text() == CANARY_SECRET and CANARY_SECRET not in repr(cfg)
    okx = vault_config("okx1", home=home, passphrase=Secret(VAULT_PASSPHRASE))
    assert okx.passphrase is not None and okx.exchange_id is ExchangeId.OKX

    with pytest.raises(ExchangeError) as no_passphrase:
        vault_config("bot1", home=home)
    assert no_passphrase.value.code == "InvalidConfig"
    assert "KEYBROKER_PASSPHRASE" in str(no_passphrase.value)

    monkeypatch.setenv("KEYBROKER_HOME", str(home))
    monkeypatch.setenv("KEYBROKER_PASSPHRASE", VAULT_PASSPHRASE)
    assert vault_config("bot1").api_key == BINANCE_API_KEY

    with pytest.raises(ExchangeError) as wrong:
        vault_config("bot1", passphrase="not the passphrase at all")
    assert wrong.value.code == "CredentialUnavailable"
    assert isinstance(wrong.value.__cause__, WrongPassphrase)
    with pytest.raises(ExchangeError, match="nobody"):
        vault_config("nobody")


def test_a_production_vault_credential_gets_the_production_url(tmp_path: Path) -> None:
    _vault(tmp_path, environment="production")
    cfg = vault_config("bot1", home=tmp_path, passphrase=VAULT_PASSPHRASE)
    assert (cfg.testnet, cfg.rest_base_url) == (False, "https://api.binance.com")


def test_importing_keybroker_stays_cheap() -> None:
    code = (
        "import sys, keybroker\n"
        "heavy = [m for m in ('httpx', 'keybroker.emulator', 'keybroker.exchanges',"
        " 'keybroker.vault', 'cryptography') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
