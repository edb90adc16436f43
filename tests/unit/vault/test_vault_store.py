"""The vault's API on real files: create, open, unlock, add, rotate, remove, passwd, upgrade."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vault_testkit import CANARY, FAST_KDF, NEW_PASSPHRASE, PASSPHRASE, START_MS, material

from keybroker import errors
from keybroker.clock import FixedClock
from keybroker.crypto.kdf import Argon2idParams
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault, _schema

FAKE_PEM = (
    "-----BEGIN PRIVATE KEY-----\nFAKE-NOT-A-REAL-KEY-canary-pem-0001\n-----END PRIVATE KEY-----\n"
)
START = datetime.fromtimestamp(START_MS / 1000, tz=UTC)


def file_bytes(path: Path) -> bytes:
    """The main file and its WAL: everything SQLite keeps on disk for this vault."""
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def raw_value(path: Path, sql: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


# -- create and open -------------------------------------------------------------------


def test_create_makes_a_private_home_and_file_and_returns_it_unlocked(
    vault: Vault, vault_path: Path
) -> None:
    assert vault.is_unlocked
    assert stat.S_IMODE(vault_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(vault_path.parent.stat().st_mode) == 0o700
    assert vault.warnings == []
    # No staging file is left behind.
    assert sorted(p.name for p in vault_path.parent.iterdir() if p.name.startswith(".")) == []


def test_create_refuses_an_existing_vault_and_leaves_it_alone(
    vault: Vault, vault_path: Path
) -> None:
    vault.add("bot1", "binance", material())
    before = vault_path.read_bytes()
    with pytest.raises(errors.VaultExists):
        Vault.create(vault_path, Secret(PASSPHRASE), kdf=FAST_KDF)
    assert vault_path.read_bytes() == before


@pytest.mark.parametrize("passphrase", ["", "short", "elevenchars"])
def test_create_refuses_a_short_passphrase(vault_path: Path, passphrase: str) -> None:
    with pytest.raises(errors.WeakPassphrase, match="at least 12 characters"):
        Vault.create(vault_path, Secret(passphrase), kdf=FAST_KDF)
    assert not vault_path.exists()


def test_twelve_characters_are_enough(vault_path: Path) -> None:
    Vault.create(vault_path, Secret("twelve chars"), kdf=FAST_KDF).close()


def test_create_refuses_a_home_others_can_write(tmp_path: Path) -> None:
    home = tmp_path / "shared"
    home.mkdir()
    home.chmod(0o777)
    with pytest.raises(errors.InsecurePermissions, match=f"chmod 700 {home}"):
        Vault.create(home / "vault.db", Secret(PASSPHRASE), kdf=FAST_KDF)
    assert list(home.iterdir()) == []


def test_open_of_a_missing_vault_says_how_to_make_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "vault.db"
    with pytest.raises(errors.VaultNotFound) as caught:
        Vault.open(path)
    assert str(caught.value) == f"no vault at {path}; run `keybroker init`"
    assert not path.parent.exists()


def test_reopened_vault_is_locked_but_lists_without_the_passphrase(
    vault: Vault, reopen: Callable[[], Vault]
) -> None:
    added = vault.add("bot2", "okx", material(2, passphrase=Secret("FAKE-okx-pass")))
    vault.add("bot1", "binance", material(1))
    again = reopen()
    assert not again.is_unlocked
    assert [r.name for r in again.list_credentials()] == ["bot1", "bot2"]
    assert again.record("bot2") == added
    assert again.info().record_count == 2
    with pytest.raises(errors.VaultLocked):
        again.credential("bot1")
    again.unlock(Secret(PASSPHRASE))
    assert again.credential("bot1").secret == Secret("FAKE-SECRET-canary-0001")


def test_info_needs_no_passphrase(vault: Vault, reopen: Callable[[], Vault]) -> None:
    info = reopen().info()
    assert info.vault_id == vault.info().vault_id and len(info.vault_id) == 32
    assert info.schema_version == len(_schema.MIGRATIONS)
    assert info.kdf == FAST_KDF
    assert (info.file_mode, info.dir_mode, info.warnings) == (0o600, 0o700, ())


def test_the_file_is_wal_and_writes_are_fully_synchronous(vault: Vault, vault_path: Path) -> None:
    assert raw_value(vault_path, "PRAGMA journal_mode") == "wal"
    assert vault._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


# -- unlock, lock, wrong passphrase ----------------------------------------------------


def test_lock_forgets_the_data_key(vault: Vault) -> None:
    vault.add("bot1", "binance", material())
    vault.credential("bot1")
    vault.lock()
    assert not vault.is_unlocked
    with pytest.raises(errors.VaultLocked):
        vault.credential("bot1")
    with pytest.raises(errors.VaultLocked):
        vault.add("bot2", "binance", material(2))


def test_wrong_passphrase_is_refused_after_the_delay(reopen: Callable[[], Vault]) -> None:
    again = reopen()
    again.wrong_passphrase_delay = 0.2
    start = time.monotonic()
    with pytest.raises(errors.WrongPassphrase) as caught:
        again.unlock(Secret("not the passphrase at all"))
    assert time.monotonic() - start >= 0.2
    assert str(caught.value) == "wrong passphrase"
    assert not again.is_unlocked


def test_the_wrong_passphrase_delay_is_on_by_default() -> None:
    assert Vault.wrong_passphrase_delay >= 1.0


# -- add, read, rotate, remove ---------------------------------------------------------


def test_every_field_round_trips(vault: Vault, reopen: Callable[[], Vault]) -> None:
    okx = material(7, passphrase=Secret("FAKE-okx-passphrase"))
    added = vault.add(
        "okx-main",
        "okx",
        okx,
        environment="production",
        scopes=["trade", "read"],
        base_url="https://eea.okx.com",
        notes="desk 2; ask Ana before rotating",
    )
    assert added.scopes == ("read", "trade")  # canonical order, each once
    assert (added.key_type, added.key_id, added.version) == ("hmac", "FAKE…real", 1)
    assert (added.created_at, added.rotated_at, added.key_history) == (START, None, ())
    again = reopen()
    again.unlock(Secret(PASSPHRASE))
    assert again.record("okx-main") == added
    credential = again.credential("okx-main")
    assert credential.api_key == okx.api_key
    assert credential.secret == okx.secret
    assert credential.passphrase == okx.passphrase
    assert (credential.exchange, credential.environment) == ("okx", "production")
    assert credential.base_url == "https://eea.okx.com"


def test_a_pem_private_key_keeps_its_newlines(vault: Vault) -> None:
    pem = KeyMaterial("FAKE-ed25519-key-id-0001", Secret(FAKE_PEM), key_type="ed25519")
    record = vault.add("ed", "binance", pem)
    assert record.key_type == "ed25519"
    credential = vault.credential("ed")
    assert credential.secret.reveal_text() == FAKE_PEM
    assert credential.key_type == "ed25519"


def test_list_is_sorted_by_name(vault: Vault) -> None:
    for n, name in enumerate(["zeta", "Alpha", "beta", "alpha"]):
        vault.add(name, "binance", material(n))
    assert [r.name for r in vault.list_credentials()] == ["Alpha", "alpha", "beta", "zeta"]


def test_names_are_unique(vault: Vault) -> None:
    vault.add("bot1", "binance", material(1))
    with pytest.raises(errors.CredentialExists, match="bot1"):
        vault.add("bot1", "okx", material(2))
    assert vault.credential("bot1").exchange == "binance"


@pytest.mark.parametrize("operation", ["record", "credential", "remove", "rotate"])
def test_unknown_names_are_not_found(vault: Vault, operation: str) -> None:
    args = (material(),) if operation == "rotate" else ()
    with pytest.raises(errors.CredentialNotFound, match="ghost"):
        getattr(vault, operation)("ghost", *args)


def test_remove_deletes_one_credential(vault: Vault, vault_path: Path) -> None:
    vault.add("keep", "binance", material(1))
    vault.add("drop", "binance", material(2))
    sealed = raw_value(vault_path, "SELECT sealed FROM credentials WHERE name = 'drop'")
    vault.remove("drop")
    assert [r.name for r in vault.list_credentials()] == ["keep"]
    assert isinstance(sealed, bytes) and sealed not in file_bytes(vault_path)


def test_rotate_keeps_history_and_forgets_the_old_secret(
    vault: Vault, vault_path: Path, clock: FixedClock
) -> None:
    vault.add("bot1", "binance", material(1), scopes=["read", "trade"])
    old_sealed = raw_value(vault_path, "SELECT sealed FROM credentials")
    clock.advance(3_600_000)
    rotated = vault.rotate("bot1", material(2))
    later = START + timedelta(hours=1)
    assert rotated.key_id == "FAKE…real"
    assert rotated.rotated_at == later
    assert rotated.key_history == (("FAKE…real", later),)
    assert (rotated.version, rotated.created_at, rotated.scopes) == (2, START, ("read", "trade"))
    assert vault.record("bot1") == rotated
    assert vault.credential("bot1").secret == Secret("FAKE-SECRET-canary-0002")
    # The old ciphertext is gone from the file and its WAL, not merely unlinked.
    assert isinstance(old_sealed, bytes) and old_sealed not in file_bytes(vault_path)


def test_rotate_can_change_the_key_type(vault: Vault) -> None:
    vault.add("bot1", "binance", material(1))
    rotated = vault.rotate("bot1", KeyMaterial("FAKE-rsa-id-0002", Secret(FAKE_PEM), None, "rsa"))
    assert rotated.key_type == "rsa"
    assert vault.credential("bot1").key_type == "rsa"


# -- passphrase and KDF ----------------------------------------------------------------


def test_change_passphrase(vault: Vault, vault_path: Path, reopen: Callable[[], Vault]) -> None:
    vault.add("bot1", "binance", material())
    old_wrapped = raw_value(vault_path, "SELECT wrapped_key FROM header")
    vault.change_passphrase(Secret(NEW_PASSPHRASE))
    assert vault.credential("bot1").secret == Secret(CANARY)  # still unlocked
    again = reopen()
    with pytest.raises(errors.WrongPassphrase):
        again.unlock(Secret(PASSPHRASE))
    again.unlock(Secret(NEW_PASSPHRASE))
    assert again.credential("bot1").secret == Secret(CANARY)
    # The old wrapping would open under the old passphrase: it must be gone.
    assert isinstance(old_wrapped, bytes) and old_wrapped not in file_bytes(vault_path)


def test_change_passphrase_needs_an_unlocked_vault_and_a_long_passphrase(vault: Vault) -> None:
    with pytest.raises(errors.WeakPassphrase):
        vault.change_passphrase(Secret("too short"))
    vault.lock()
    with pytest.raises(errors.VaultLocked):
        vault.change_passphrase(Secret(NEW_PASSPHRASE))


def test_upgrade_kdf_rewraps_under_stronger_parameters(
    vault: Vault, reopen: Callable[[], Vault]
) -> None:
    vault.add("bot1", "binance", material())
    stronger = Argon2idParams(memory_kib=65536, iterations=2, lanes=1)
    locked = reopen()
    locked.upgrade_kdf(Secret(PASSPHRASE), stronger)
    assert not locked.is_unlocked  # upgrading does not unlock
    assert locked.info().kdf == stronger
    again = reopen()
    again.unlock(Secret(PASSPHRASE))
    assert again.credential("bot1").secret == Secret(CANARY)
    # Weaker than what is stored now: refused, nothing changes.
    with pytest.raises(errors.InvalidInput, match="weaker"):
        again.upgrade_kdf(Secret(PASSPHRASE), FAST_KDF)
    assert again.info().kdf == stronger


def test_upgrade_kdf_checks_the_passphrase(vault: Vault) -> None:
    with pytest.raises(errors.WrongPassphrase):
        vault.upgrade_kdf(Secret("not the passphrase"), FAST_KDF)
    assert vault.info().kdf == FAST_KDF


def test_a_header_change_by_another_process_is_not_overwritten(
    vault: Vault, reopen: Callable[[], Vault]
) -> None:
    other = reopen()
    other.upgrade_kdf(Secret(PASSPHRASE), Argon2idParams(memory_kib=65536, iterations=2, lanes=1))
    # `vault` still holds the old parameters: rewrapping under them would be a downgrade.
    with pytest.raises(errors.VaultError, match="another process"):
        vault.change_passphrase(Secret(NEW_PASSPHRASE))
    reopen().unlock(Secret(PASSPHRASE))


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "has space", "a/b", "semi;colon", "new\nline", "ünï", "(header)"]
)
def test_bad_names_are_refused(vault: Vault, name: str) -> None:
    with pytest.raises(errors.InvalidInput, match="credential name"):
        vault.add(name, "binance", material())


@pytest.mark.parametrize("name", ["a", "x" * 64, "Bot_1.main-2"])
def test_good_names_are_accepted(vault: Vault, name: str) -> None:
    assert vault.add(name, "binance", material()).name == name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"exchange": "mtgox"}, "unknown exchange"),
        ({"environment": "mainnet"}, "unknown environment"),
        ({"scopes": ["withdraw"]}, "unknown scope"),
        ({"scopes": []}, "at least one scope"),
        ({"base_url": "http://api.binance.com"}, "base URL"),
    ],
)
def test_bad_metadata_is_refused(vault: Vault, changes: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"exchange": "binance", **changes}
    exchange = arguments.pop("exchange")
    with pytest.raises(errors.InvalidInput, match=message):
        vault.add("bot1", exchange, material(), **arguments)  # type: ignore[arg-type]
    assert vault.list_credentials() == []


@pytest.mark.parametrize(
    "url",
    [
        "https://api.binance.com",
        "https://testnet.binance.vision/api",
        "https://example.com:8443",
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:9000/prefix",
        "http://[::1]:8000",
    ],
)
def test_https_or_loopback_http_base_urls_are_accepted(vault: Vault, url: str) -> None:
    assert vault.add("bot1", "binance", material(), base_url=url).base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "api.binance.com",
        "http://api.binance.com",
        "http://10.0.0.1:8080",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "ftp://127.0.0.1",
        "https://",
        "https://user:FAKE-pw@example.com",
        "https://example.com/?key=x",
        "https://example.com:99999",
        " https://example.com",
    ],
)
def test_other_base_urls_are_refused_without_echoing_them(vault: Vault, url: str) -> None:
    with pytest.raises(errors.InvalidInput, match="base URL") as caught:
        vault.add("bot1", "binance", material(), base_url=url)
    assert "FAKE-pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"api_key": "", "secret": Secret(CANARY)}, "api key is empty"),
        ({"api_key": "FAKE key", "secret": Secret(CANARY)}, "api key contains whitespace"),
        ({"api_key": "FAKE-id", "secret": Secret("")}, "secret is empty"),
        ({"api_key": "FAKE-id", "secret": Secret(f" {CANARY}")}, "secret contains whitespace"),
        ({"api_key": "FAKE-id", "secret": Secret(f"{CANARY}\n")}, "secret contains whitespace"),
        (
            {"api_key": "FAKE-id", "secret": Secret(CANARY), "passphrase": Secret("")},
            "passphrase is empty",
        ),
        (
            {"api_key": "FAKE-id", "secret": Secret(CANARY), "passphrase": Secret(f"a\t{CANARY}")},
            "passphrase contains whitespace",
        ),
        ({"api_key": "FAKE-id", "secret": Secret("  \n"), "key_type": "rsa"}, "secret is empty"),
        ({"api_key": "FAKE-id", "secret": Secret(CANARY), "key_type": "dsa"}, "unknown key type"),
    ],
)
def test_key_material_names_the_bad_field_never_its_value(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        KeyMaterial(**fields)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
    assert CANARY not in str(caught.value)


def test_key_material_wants_secrets_as_secret_objects() -> None:
    with pytest.raises(TypeError):
        KeyMaterial("FAKE-id", CANARY)  # type: ignore[arg-type]


# -- no secret anywhere but the sealed blob ----------------------------------------------


def test_no_secret_reaches_a_repr_a_result_or_the_file_in_clear(
    vault: Vault, vault_path: Path
) -> None:
    okx = material(1, passphrase=Secret("FAKE-PASSPHRASE-canary-0001"))
    record = vault.add("bot1", "okx", okx)
    credential = vault.credential("bot1")
    texts = [
        repr(vault),
        repr(okx),
        str(okx),
        repr(record),
        repr(credential),
        str(credential),
        repr(vault.info()),
        repr(vault.verify()),
        repr(vault.list_credentials()),
    ]
    for text in texts:
        assert CANARY not in text
        assert "FAKE-PASSPHRASE-canary" not in text
        assert "FAKE-APIKEY-0001-not-real" not in text  # api keys are shown masked
    on_disk = file_bytes(vault_path)
    for needle in (CANARY, "FAKE-PASSPHRASE-canary-0001", "FAKE-APIKEY-0001-not-real"):
        assert needle.encode() not in on_disk


def test_a_returned_credential_is_the_callers_own_copy(vault: Vault) -> None:
    vault.add("bot1", "binance", material())
    first = vault.credential("bot1")
    first.secret.wipe()  # a caller done with its copy
    assert vault.credential("bot1").secret == Secret(CANARY)


def test_another_processes_rotation_is_seen_at_once(
    vault: Vault, reopen: Callable[[], Vault]
) -> None:
    vault.add("bot1", "binance", material(1))
    assert vault.credential("bot1").secret == Secret(CANARY)
    other = reopen()
    other.unlock(Secret(PASSPHRASE))
    other.rotate("bot1", material(2))
    assert vault.credential("bot1").secret == Secret("FAKE-SECRET-canary-0002")


# -- schema ----------------------------------------------------------------------------


def test_a_vault_from_a_newer_keybroker_is_refused_untouched(
    vault: Vault, vault_path: Path
) -> None:
    vault.close()
    conn = sqlite3.connect(vault_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = vault_path.read_bytes()
    with pytest.raises(errors.VaultError, match="newer"):
        Vault.open(vault_path)
    assert vault_path.read_bytes() == before


def test_the_vault_file_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "loose" / "vault.db"
        Vault.create(path, Secret(PASSPHRASE), kdf=FAST_KDF).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
