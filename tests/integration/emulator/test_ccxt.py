"""The real-client check: ccxt 4.5.90's own classes trade against the emulator unchanged.

Only ``urls['api']`` is pointed at the emulator (and OKX is put in sandbox mode,
which adds ``x-simulated-trading: 1``). ccxt signs with its own code, so every
call below also proves the emulator verifies the exchanges' real wire format.
"""

from __future__ import annotations

from typing import Any

import ccxt
import pytest
from emulator_testkit import (
    BINANCE_KEY,
    BINANCE_SECRET,
    OKX_KEY,
    OKX_PASSPHRASE,
    OKX_SECRET,
    Serve,
    journal,
)

BINANCE_HOSTS = ("https://api.binance.com", "https://fapi.binance.com", "https://dapi.binance.com")


def _binance(cls: type[Any], base_url: str) -> Any:
    exchange = cls({"apiKey": BINANCE_KEY.api_key, "secret": BINANCE_SECRET})
    for name, url in list(exchange.urls["api"].items()):
        for host in BINANCE_HOSTS:
            if isinstance(url, str) and url.startswith(host):
                exchange.urls["api"][name] = base_url + url[len(host) :]
    return exchange


def _okx(base_url: str) -> Any:
    exchange = ccxt.okx(
        {"apiKey": OKX_KEY.api_key, "secret": OKX_SECRET, "password": OKX_PASSPHRASE}
    )
    exchange.set_sandbox_mode(True)
    exchange.urls["api"] = {"rest": base_url}
    return exchange


CASES = {
    "binance": ("binance", lambda url: _binance(ccxt.binance, url), "BTC/USDT", 0.01),
    "binanceusdm": ("binance", lambda url: _binance(ccxt.binanceusdm, url), "BTC/USDT:USDT", 0.01),
    "okx": ("okx", _okx, "BTC/USDT", 0.01),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ccxt_trades_against_the_emulator(serve: Serve, case: str) -> None:
    venue, build, symbol, amount = CASES[case]
    http = serve(venue)
    exchange = build(str(http.base_url).rstrip("/"))

    balance = exchange.fetch_balance()
    assert balance["total"]["USDT"] == 100000
    ticker = exchange.fetch_ticker(symbol)
    assert ticker["last"] == 60000
    book = exchange.fetch_order_book(symbol)
    assert book["bids"][0][0] < ticker["last"] < book["asks"][0][0]
    candles = exchange.fetch_ohlcv(symbol, "1h", limit=5)
    assert len(candles) == 5 and candles[-1][4] == 60000

    resting = exchange.create_order(symbol, "limit", "buy", amount, 50000)
    assert resting["id"]
    fetched = exchange.fetch_order(resting["id"], symbol)
    assert (fetched["status"], fetched["amount"], fetched["price"]) == ("open", amount, 50000)
    assert [o["id"] for o in exchange.fetch_open_orders(symbol)] == [resting["id"]]
    exchange.cancel_order(resting["id"], symbol)
    assert exchange.fetch_order(resting["id"], symbol)["status"] == "canceled"
    assert exchange.fetch_open_orders(symbol) == []

    taken = exchange.create_order(symbol, "market", "buy", amount)
    filled = exchange.fetch_order(taken["id"], symbol)
    assert filled["status"] == "closed"
    assert filled["filled"] == amount
    assert filled["average"] == book["asks"][0][0]

    entries = journal(http)
    assert all(e["code"] is None for e in entries), [e for e in entries if e["code"]]
    assert sum(len(e["orders"]) for e in entries) == 2
    assert all(e["kind"] != "withdraw" for e in entries)


def test_ccxt_sees_the_exchanges_errors(serve: Serve) -> None:
    http = serve("binance")
    exchange = _binance(ccxt.binance, str(http.base_url).rstrip("/"))
    exchange.secret = "not-the-right-secret"
    with pytest.raises(ccxt.AuthenticationError):
        exchange.fetch_balance()
    okx = _okx(str(serve("okx").base_url).rstrip("/"))
    okx.password = "wrong-passphrase"
    with pytest.raises(ccxt.AuthenticationError):
        okx.fetch_balance()
