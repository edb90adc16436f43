"""The bridges: ccxt (connect_ccxt) and the adapters (gateway_config) through the gateway.

Everything is real: ccxt's own classes sign with placeholder keys, the gateway
strips and re-signs with the vault's credential, and the emulator checks the
signatures as the exchange would. The bot side never holds the key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import ccxt
import pytest
from gateway_testkit import (
    SECRETS,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    assert_no_secret,
    make_vault,
    new_token,
)

import keybroker
from keybroker import BinanceAdapter, OKXAdapter, connect_ccxt, gateway_config
from keybroker.errors import ExchangeError

# Spot markets only (fewer requests), and no currency list: OKX's is a private
# endpoint the emulator does not serve (the real exchange would answer it).
SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}, "has": {"fetchCurrencies": False}}


def _okx_world(tmp_path: Path, emulator: StartEmulator, gateway: StartGateway) -> World:
    exchange = emulator("okx")
    vault = make_vault(
        tmp_path / "okx-home", {"ox": ("okx", exchange.url)}, policies={"ox": TRADER}
    )
    return World(exchange, gateway(vault, new_token(vault, "bot1", ["ox"])))


def _trade(client: Any, symbol: str) -> None:
    balance = client.fetch_balance()
    assert balance["total"]["USDT"] == 100000
    ticker = client.fetch_ticker(symbol)
    assert ticker["last"] == 60000
    book = client.fetch_order_book(symbol)
    assert book["bids"][0][0] < ticker["last"] < book["asks"][0][0]
    candles = client.fetch_ohlcv(symbol, "1h", limit=5)
    assert len(candles) == 5 and candles[-1][4] == 60000

    resting = client.create_order(symbol, "limit", "buy", 0.01, 50000)
    assert resting["id"]
    fetched = client.fetch_order(resting["id"], symbol)
    assert (fetched["status"], fetched["amount"], fetched["price"]) == ("open", 0.01, 50000)
    assert [order["id"] for order in client.fetch_open_orders(symbol)] == [resting["id"]]
    client.cancel_order(resting["id"], symbol)
    assert client.fetch_order(resting["id"], symbol)["status"] == "canceled"
    assert client.fetch_open_orders(symbol) == []


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_ccxt_through_the_gateway(
    venue: str, world: World, tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    if venue == "okx":
        world = _okx_world(tmp_path, emulator, gateway)
    credential, symbol = ("bn", "BTC/USDT") if venue == "binance" else ("ox", "BTC/USDT")
    client = connect_ccxt(
        credential,
        exchange=venue,
        gateway_url=world.gateway.url,
        token=world.gateway.token,
        config=SPOT_ONLY,
    )
    _trade(client, symbol)

    journal = world.exchange.journal()
    assert all(entry["code"] is None for entry in journal), [e for e in journal if e["code"]]
    assert sum(len(entry["orders"]) for entry in journal) == 1
    # The exchange saw the vault's key, never ccxt's placeholder.
    keys = {entry["api_key"] for entry in journal if entry.get("api_key")}
    assert keys and keybroker.client.config.PLACEHOLDER_API_KEY not in keys
    intents = [row for row in world.gateway.audit() if row.row.kind == "intent"]
    assert {row.row.bot for row in intents} == {"bot1"}
    assert any(row.row.request_kind == "order_place" for row in intents)


def test_ccxt_binance_unchanged_loads_its_markets_and_trades_through_the_gateway(
    world: World,
) -> None:
    # The README's one changed line, with ccxt's own defaults: load_markets (the first
    # thing create_order does) must not ask /dapi, which the gateway does not speak.
    client = connect_ccxt("bn", gateway_url=world.gateway.url, token=world.gateway.token)
    client.load_markets()
    assert "BTC/USDT" in client.markets
    placed = client.create_order("BTC/USDT", "limit", "buy", 0.001, 59000)
    assert placed["id"]
    assert not [row for row in world.gateway.audit() if row.row.kind == "denied"]
    own = connect_ccxt(
        "bn",
        exchange="binance",
        gateway_url=world.gateway.url,
        token=world.gateway.token,
        config={"options": {"fetchMarkets": {"types": ["inverse"]}}},
    )
    assert own.options["fetchMarkets"]["types"] == ["inverse"]  # the caller's choice stands


def test_ccxt_pro_binance_unchanged_watches_a_spot_ticker(world: World) -> None:
    # The README's `await exchange.watch_ticker("BTC/USDT")`, no config: it must return,
    # not wait forever with every update filed under a futures symbol.
    async def watch() -> dict[str, Any]:
        exchange = connect_ccxt(
            "bn", gateway_url=world.gateway.url, token=world.gateway.token, pro=True
        )
        try:
            return await asyncio.wait_for(exchange.watch_ticker("BTC/USDT"), 15)
        finally:
            await exchange.close()

    ticker = asyncio.run(watch())
    assert ticker["symbol"] == "BTC/USDT" and ticker["last"] > 0


def test_a_ccxt_withdrawal_is_denied_and_never_reaches_the_exchange(world: World) -> None:
    client = connect_ccxt(
        "bn",
        exchange="binance",
        gateway_url=world.gateway.url,
        token=world.gateway.token,
        config=SPOT_ONLY,
    )
    client.load_markets()
    with pytest.raises(ccxt.PermissionDenied) as caught:
        client.withdraw("BTC", 1, "bc1qexampleexampleexampleexampleexample0")
    assert "never_withdraw" in str(caught.value)
    assert world.exchange.requests_to("/sapi/v1/capital/withdraw/apply") == []
    assert all(entry["kind"] != "withdraw" for entry in world.exchange.journal())
    denied = [row for row in world.gateway.audit() if row.row.kind == "denied"]
    assert [row.row.rule for row in denied] == ["never_withdraw"]


def test_ccxt_without_a_token_gets_401(world: World) -> None:
    client = connect_ccxt(
        "bn",
        exchange="binance",
        gateway_url=world.gateway.url,
        token="kb_not-a-real-token",
        config=SPOT_ONLY,
    )
    with pytest.raises(ccxt.AuthenticationError):
        client.fetch_balance()


def test_the_adapter_through_the_gateway(world: World) -> None:
    config = gateway_config("bn", exchange="binance", token=world.gateway.token,
                            gateway_url=world.gateway.url)  # fmt: skip
    assert world.gateway.token not in repr(config)
    with BinanceAdapter(config) as adapter:
        assert adapter.balances()["USDT"].free == 100000
        assert adapter.ticker("BTCUSDT").last == 60000
        order = adapter.place_order("BTCUSDT", "buy", "limit", "0.001", "50000")
        assert [o.order_id for o in adapter.open_orders("BTCUSDT")] == [order.order_id]
        assert adapter.cancel_order("BTCUSDT", order_id=order.order_id).status == "canceled"
        with pytest.raises(ExchangeError) as caught:
            adapter.place_order("BTCUSDT", "buy", "limit", "1", "50000")  # 50,000 > 5,000
        assert caught.value.code == "PolicyDenied"
        assert "max_notional" in str(caught.value)
    (placed,) = world.exchange.orders()
    assert placed["client_order_id"] == order.client_order_id


def test_the_okx_adapter_through_the_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _okx_world(tmp_path, emulator, gateway)
    config = gateway_config("ox", exchange="okx", token=world.gateway.token,
                            gateway_url=world.gateway.url)  # fmt: skip
    with OKXAdapter(config) as adapter:
        order = adapter.place_order("BTC-USDT", "buy", "limit", "0.001", "50000")
        assert adapter.get_order("BTC-USDT", order_id=order.order_id).is_open
        adapter.cancel_order("BTC-USDT", order_id=order.order_id)
    assert len(world.exchange.orders()) == 1


def test_no_secret_on_the_bot_side(world: World) -> None:
    client = connect_ccxt(
        "bn",
        exchange="binance",
        gateway_url=world.gateway.url,
        token=world.gateway.token,
        config=SPOT_ONLY,
    )
    client.fetch_balance()
    assert_no_secret(repr(vars(client)), *(str(value) for value in vars(client).values()))
    assert all(secret not in repr(client.urls) for secret in SECRETS)


def test_bad_bridge_arguments_are_named(world: World) -> None:
    with pytest.raises(keybroker.KeybrokerError, match="takes no exchange credentials"):
        connect_ccxt("bn", exchange="binance", token="kb_x", config={"secret": "nope"})
    with pytest.raises(keybroker.KeybrokerError, match="ccxt has no exchange"):
        connect_ccxt("bn", exchange="no-such-exchange", token="kb_x")
    with pytest.raises(keybroker.KeybrokerError, match="no bot token"):
        connect_ccxt("bn", exchange="binance", token="")
    with pytest.raises(ExchangeError, match="only loopback"):
        gateway_config("bn", exchange="binance", token="kb_x", gateway_url="http://example.com")
    config = connect_ccxt("bn", exchange="kraken", token="kb_x", gateway_url="http://127.0.0.1:1")
    assert all(url.startswith("http://127.0.0.1:1/bn") for url in config.urls["api"].values())
