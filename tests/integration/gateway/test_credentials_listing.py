"""``GET /_/credentials`` and the bridges that use it: a bot passes only a name and its token.

The gateway is a real ``keybroker serve`` process; ccxt and the adapters talk
to it over loopback HTTP, and it forwards to the emulators.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from gateway_testkit import (
    BINANCE_API_KEY,
    OKX_API_KEY,
    TRADER,
    Emulator,
    Serve,
    assert_no_secret,
    make_vault,
    new_token,
)

from keybroker import OKXAdapter, connect_ccxt, gateway_config
from keybroker.errors import ExchangeError, InvalidInput

SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}, "has": {"fetchCurrencies": False}}


@pytest.fixture(scope="module")
def served(
    _template: None, _plain_emulators: dict[str, Emulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Serve, dict[str, str]]]:
    """One serve process for the module (starting one costs seconds); credentials bn
    (binance), ox (okx), other (binance), and gone (removed); two tokens."""
    binance, okx = _plain_emulators["binance"], _plain_emulators["okx"]
    for emulator in (binance, okx):
        httpx.post(f"{emulator.url}/__emulator__/reset", timeout=10).raise_for_status()
    home = tmp_path_factory.mktemp("listing") / "home"
    vault = make_vault(
        home,
        {
            "bn": ("binance", binance.url),
            "ox": ("okx", okx.url),
            "other": ("binance", binance.url),
            "gone": ("binance", binance.url),
        },
        policies={"bn": TRADER, "ox": TRADER},
    )
    tokens = {
        "bot1": new_token(vault, "bot1", ["bn", "ox", "gone"]),
        "bot2": new_token(vault, "bot2", ["other"]),
    }
    vault.remove("gone")
    vault.close()
    process = Serve(home)
    yield process, tokens
    process.stop()


def test_the_listing_names_only_the_tokens_credentials_and_nothing_secret(
    served: tuple[Serve, dict[str, str]],
) -> None:
    process, tokens = served
    url = f"{process.url}/_/credentials"
    first = httpx.get(url, headers={"X-Keybroker-Token": tokens["bot1"]})
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    # "gone" was granted but does not exist: not listed. "other" was not granted.
    assert first.json() == {
        "credentials": [
            {"environment": "testnet", "exchange": "binance", "name": "bn"},
            {"environment": "testnet", "exchange": "okx", "name": "ox"},
        ]
    }
    second = httpx.get(url, headers={"Authorization": f"Bearer {tokens['bot2']}"})
    assert [item["name"] for item in second.json()["credentials"]] == ["other"]
    for body in (first.text, second.text):
        assert_no_secret(body)
        assert BINANCE_API_KEY not in body and OKX_API_KEY not in body
        assert BINANCE_API_KEY[-4:] not in body  # not even a masked key id
        assert "127.0.0.1" not in body  # nor the base URL
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Keybroker-Token": "kb_not-a-token"}).status_code == 401


def test_connect_ccxt_needs_no_exchange(served: tuple[Serve, dict[str, str]]) -> None:
    process, tokens = served
    client = connect_ccxt("bn", gateway_url=process.url, token=tokens["bot1"], config=SPOT_ONLY)
    assert client.id == "binance"
    order = client.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)
    assert client.fetch_order(order["id"], "BTC/USDT")["status"] == "open"
    client.cancel_order(order["id"], "BTC/USDT")
    okx = connect_ccxt("ox", gateway_url=process.url, token=tokens["bot1"], config=SPOT_ONLY)
    assert okx.id == "okx"
    assert okx.fetch_ticker("BTC/USDT")["last"] == 60000
    # exchange= is still accepted, and wins without asking.
    usdm = connect_ccxt("bn", exchange="binanceusdm", gateway_url=process.url, token="kb_x")
    assert usdm.id == "binanceusdm"


def test_gateway_config_needs_no_exchange(
    served: tuple[Serve, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    process, tokens = served
    monkeypatch.setenv("KEYBROKER_GATEWAY_URL", process.url)  # the default, when unset
    config = gateway_config("ox", token=tokens["bot1"])
    assert config.exchange_id.value == "okx" and config.rest_base_url == f"{process.url}/ox"
    with OKXAdapter(config) as adapter:
        order = adapter.place_order("BTC-USDT", "buy", "limit", "0.001", "50000")
        assert adapter.get_order("BTC-USDT", order_id=order.order_id).is_open
        adapter.cancel_order("BTC-USDT", order_id=order.order_id)
    assert gateway_config("bn", token=tokens["bot1"]).exchange_id.value == "binance"


def test_the_lookup_names_what_went_wrong(served: tuple[Serve, dict[str, str]]) -> None:
    process, tokens = served
    with pytest.raises(InvalidInput, match="not granted credential 'other'"):
        connect_ccxt("other", gateway_url=process.url, token=tokens["bot1"])
    with pytest.raises(ExchangeError, match="not granted credential 'gone'"):
        gateway_config("gone", gateway_url=process.url, token=tokens["bot1"])
    with pytest.raises(ExchangeError, match="refused the bot token"):
        gateway_config("bn", gateway_url=process.url, token="kb_not-a-token")
    with pytest.raises(InvalidInput, match="could not reach the keybroker gateway"):
        connect_ccxt("bn", gateway_url="http://127.0.0.1:1", token=tokens["bot1"])


def test_the_default_gateway_url_is_the_local_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYBROKER_GATEWAY_URL", raising=False)
    config = gateway_config("bn", exchange="binance", token="kb_x")
    assert config.rest_base_url == "http://127.0.0.1:8787/bn"
