"""The gateway's one-read way to add a client order id equals adding it and reading the order again.

For every exchange with ``OrderTools.with_client_order_id``, over orders in
several spellings (form and JSON, body and query, blank and null ids, escaped
keys, the field's name inside a value, batches, odd ids): when the fast way
answers, the request it built is byte for byte the one ``add_client_order_id``
builds from the same id, and its intents are the ones ``parse_order`` reads
from that request (classified afresh, not reused). When it declines (None),
the gateway takes that slow way itself. Plain orders must take the fast way,
or the gateway pays for the second read after all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import httpx
import pytest

from keybroker.clock import FixedClock
from keybroker.errors import InvalidInput
from keybroker.exchanges import bitfinex, get_profile
from keybroker.exchanges.base import PLAIN_CLIENT_ID, OrderTools
from keybroker.gateway import pipeline
from keybroker.gateway.pipeline import new_client_order_id, read_orders

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
ODD_ID = 'id with spaces & a "quote", more than thirty-six characters'


def order(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return (method, url, body, headers or {})


BINANCE = "https://api.binance.com"
OKX = "https://www.okx.com"
BYBIT = "https://api.bybit.com"
KRAKEN = "https://api.kraken.com"
COINBASE = "https://api.coinbase.com"
COINBASE_EXCHANGE = "https://api.exchange.coinbase.com"
BITFINEX = "https://api.bitfinex.com"
POLONIEX = "https://api.poloniex.com"
LIMIT = b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000"

# exchange -> (orders that take the fast way, orders that may go either way)
PLAIN: dict[str, list[tuple[str, str, bytes, dict[str, str]]]] = {
    "binance": [
        order("POST", f"{BINANCE}/api/v3/order", LIMIT, FORM),
        order("POST", f"{BINANCE}/api/v3/order?{LIMIT.decode()}"),
        order("POST", f"{BINANCE}/fapi/v1/order", LIMIT + b"&reduceOnly=true", FORM),
        order("POST", f"{BINANCE}/API/v3//order/", LIMIT, FORM),
    ],
    "okx": [
        order(
            "POST",
            f"{OKX}/api/v5/trade/order",
            b'{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit",'
            b'"sz":"0.001","px":"50000"}',
            JSON,
        ),
        order(
            "POST",
            f"{OKX}/api/v5/trade/order",
            b' { "instId" : "BTC-USDT", "side":"sell","ordType":"market","sz":"1"}',
            JSON,
        ),
    ],
    "bybit": [
        order(
            "POST",
            f"{BYBIT}/v5/order/create",
            b'{"category":"linear", "symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
            b'"qty":"0.010","price":"25000.50"}',
            JSON,
        ),
    ],
    "kraken": [
        order(
            "POST",
            f"{KRAKEN}/0/private/AddOrder",
            b"pair=XBTUSD&type=buy&ordertype=limit&price=25000.5&volume=0.0100",
            FORM,
        ),
        order(
            "POST",
            f"{KRAKEN}/0/private/AddOrder",
            b'{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"25000.5",'
            b'"volume":"0.0100"}',
            JSON,
        ),
    ],
    "coinbase": [
        order(
            "POST",
            f"{COINBASE}/api/v3/brokerage/orders",
            b'{"product_id":"BTC-USD","side":"BUY","order_configuration":'
            b'{"limit_limit_gtc":{"base_size":"0.010","limit_price":"25000.50"}}}',
            JSON,
        ),
        order(
            "POST",
            f"{COINBASE}/api/v3/brokerage/orders/close_position",
            b'{"product_id":"BTC-USD","size":"0.5"}',
            JSON,
        ),
    ],
    "coinbase-exchange": [
        order(
            "POST",
            f"{COINBASE_EXCHANGE}/orders",
            b'{"product_id":"BTC-USD","side":"buy","type":"limit","size":"0.010",'
            b'"price":"25000.50"}',
            JSON,
        ),
    ],
    "bitfinex": [
        order(
            "POST",
            f"{BITFINEX}/v2/auth/w/order/submit",
            b'{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"-0.010","price":"25000.5"}',
            JSON,
        ),
    ],
    "poloniex": [
        order(
            "POST",
            f"{POLONIEX}/orders",
            b'{"symbol":"BTC_USDT","side":"BUY","type":"LIMIT","quantity":"0.010",'
            b'"price":"25000.50"}',
            JSON,
        ),
    ],
}

EITHER: dict[str, list[tuple[str, str, bytes, dict[str, str]]]] = {
    "binance": [
        order("POST", f"{BINANCE}/api/v3/order", LIMIT + b"&newClientOrderId=", FORM),
        order("POST", f"{BINANCE}/api/v3/order", LIMIT + b"&newClient%4FrderId=", FORM),
        order("POST", f"{BINANCE}/api/v3/order?newClientOrderId=", LIMIT, FORM),
        order("POST", f"{BINANCE}/api/v3/order", LIMIT + b"&newClientOrderId=mine", FORM),
        order("POST", f"{BINANCE}/api/v3/order/oco", LIMIT + b"&stopPrice=1", FORM),
        order("PUT", f"{BINANCE}/fapi/v1/order", LIMIT, FORM),
        order(
            "POST",
            f"{BINANCE}/fapi/v1/batchOrders",
            b"batchOrders=%5B%7B%22symbol%22%3A%22BTCUSDT%22%7D%5D",
            FORM,
        ),
    ],
    "okx": [
        order(
            "POST",
            f"{OKX}/api/v5/trade/order",
            b'{"instId":"BTC-USDT","sz":"1","clOrdId":""}',
            JSON,
        ),
        order(
            "POST",
            f"{OKX}/api/v5/trade/order",
            b'{"instId":"BTC-USDT","sz":"1","\\u0063lOrdId":""}',
            JSON,
        ),
        order(
            "POST",
            f"{OKX}/api/v5/trade/order",
            b'{"instId":"BTC-USDT","sz":"1","tag":"clOrdId"}',
            JSON,
        ),
        order(
            "POST",
            f"{OKX}/api/v5/trade/order",
            b'{"instId":"BTC-USDT","sz":"1","algoClOrdId":"a1"}',
            JSON,
        ),
        order(
            "POST",
            f"{OKX}/api/v5/trade/batch-orders",
            b'[{"instId":"BTC-USDT","sz":"1"},{"instId":"BTC-USDT","sz":"2","clOrdId":"x"},'
            b'{"instId":"ETH-USDT","sz":"3"}]',
            JSON,
        ),
    ],
    "bybit": [
        order(
            "POST",
            f"{BYBIT}/v5/order/create",
            b'{"category":"spot","symbol":"BTCUSDT","qty":"1","orderLinkId":null}',
            JSON,
        ),
        order(
            "POST",
            f"{BYBIT}/v5/order/create",
            b'{"category":"spot","symbol":"BTCUSDT","qty":"1","orderLinkId":""}',
            JSON,
        ),
        order(
            "POST",
            f"{BYBIT}/v5/order/create-batch",
            b'{"category":"spot","request":[{"symbol":"BTCUSDT","qty":"1"}]}',
            JSON,
        ),
    ],
    "kraken": [
        order(
            "POST",
            f"{KRAKEN}/0/private/AddOrder",
            b"pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=1&userref=",
            FORM,
        ),
        order(
            "POST",
            f"{KRAKEN}/0/private/AddOrder",
            b"pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=1&cl%5Ford%5Fid=",
            FORM,
        ),
        order(
            "POST",
            f"{KRAKEN}/0/private/AddOrder",
            b'{"pair":"XBTUSD","type":"buy","volume":"1","userref":null}',
            JSON,
        ),
        order(
            "POST",
            f"{KRAKEN}/0/private/AddOrder",
            b"pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=1&userref=42",
            FORM,
        ),
    ],
    "coinbase": [
        order(
            "POST",
            f"{COINBASE}/api/v3/brokerage/orders",
            b'{"product_id":"BTC-USD","side":"BUY","client_order_id":"",'
            b'"order_configuration":{"market_market_ioc":{"base_size":"1"}}}',
            JSON,
        ),
        order(
            "POST",
            f"{COINBASE}/api/v3/brokerage/orders/edit",
            b'{"order_id":"1","size":"1","price":"2"}',
            JSON,
        ),
    ],
    "coinbase-exchange": [
        order(
            "POST",
            f"{COINBASE_EXCHANGE}/orders",
            b'{"product_id":"BTC-USD","side":"buy","size":"1","client_oid":null}',
            JSON,
        ),
    ],
    "bitfinex": [
        order(
            "POST",
            f"{BITFINEX}/v2/auth/w/order/submit",
            b'{"symbol":"tBTCUSD","amount":"1","cid":null}',
            JSON,
        ),
        order("POST", f"{BITFINEX}/v2/auth/w/order/submit", b"", JSON),
        order(
            "POST",
            f"{BITFINEX}/v2/auth/w/order/update",
            b'{"id":1,"amount":"1"}',
            JSON,
        ),
    ],
    "poloniex": [
        order(
            "POST",
            f"{POLONIEX}/orders",
            b'{"symbol":"BTC_USDT","side":"BUY","quantity":"1","clientOrderId":""}',
            JSON,
        ),
        order(
            "POST",
            f"{POLONIEX}/orders/batch",
            b'[{"symbol":"BTC_USDT","side":"BUY","quantity":"1"}]',
            JSON,
        ),
    ],
}


@pytest.fixture(autouse=True)
def _bitfinex_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bitfinex, "CID_CLOCK", FixedClock(1_715_256_000_000))


def build(spec: tuple[str, str, bytes, dict[str, str]]) -> httpx.Request:
    method, url, body, headers = spec
    return httpx.Request(method, url, content=body, headers=headers)


def the_ids(*values: str) -> Callable[[], str]:
    """The same ids, in the same order, for the fast way and the slow way."""
    source: Iterator[str] = itertools.cycle(values)
    return lambda: next(source)


def seen(request: httpx.Request) -> tuple[object, ...]:
    return (request.method, str(request.url), list(request.headers.raw), request.read())


def tools(name: str) -> OrderTools:
    found = get_profile(name).orders
    assert found is not None and found.with_client_order_id is not None, name
    return found


def slow(name: str, request: httpx.Request, new_id: Callable[[], str]):  # type: ignore[no-untyped-def]
    """What the gateway did before: add the id, then read the order again from scratch."""
    added = tools(name).add_client_order_id(request, new_id)
    return added, get_profile(name).parse_order(added)


def fast(name: str, request: httpx.Request, new_id: Callable[[], str]):  # type: ignore[no-untyped-def]
    profile = get_profile(name)
    classified = profile.classify(request)
    intents = profile.parse_order(request, classified=classified)
    writer = tools(name).with_client_order_id
    assert writer is not None
    return writer(request, new_id, classified, intents)


CASES = [(name, spec, True) for name, specs in PLAIN.items() for spec in specs] + [
    (name, spec, False) for name, specs in EITHER.items() for spec in specs
]


@pytest.mark.parametrize(("name", "spec", "plain"), CASES)
@pytest.mark.parametrize("gateway_id", ["kb0123456789abcdef0123456789abcd", ODD_ID])
def test_the_fast_way_builds_and_reads_what_the_slow_way_does(
    name: str, spec: tuple[str, str, bytes, dict[str, str]], plain: bool, gateway_id: str
) -> None:
    try:
        expected = slow(name, build(spec), the_ids(gateway_id))
    except InvalidInput:
        expected = None
    try:
        got = fast(name, build(spec), the_ids(gateway_id))
    except InvalidInput:
        # Refused before any id was written (the order itself is unreadable): so was the slow way.
        assert expected is None
        return
    if got is None:
        # Declined: the gateway adds and reads again. A plain order with the gateway's id never is.
        assert not (plain and gateway_id.startswith("kb")), spec
        return
    assert expected is not None, "the fast way took an order the slow way refuses"
    request, intents = got
    assert seen(request) == seen(expected[0])
    assert intents == expected[1]
    if plain:
        assert seen(request) != seen(build(spec))  # an id was really added
        assert intents[0].client_order_id is not None


@pytest.mark.parametrize(("name", "spec", "plain"), CASES)
def test_the_gateway_reads_an_order_as_before(
    name: str,
    spec: tuple[str, str, bytes, dict[str, str]],
    plain: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``read_orders`` (one classification, the fast way or the slow one) against the old
    sequence: classify, parse, add, parse again, each from scratch."""
    profile = get_profile(name)
    ids = [f"kb{n:030x}" for n in range(10)]
    try:
        before = profile.parse_order(build(spec))
        added = build(spec)
        if profile.classify(added).kind == "order_place" and any(
            intent.client_order_id is None for intent in before
        ):
            added = tools(name).add_client_order_id(added, the_ids(*ids))
        old: object = (seen(added), profile.parse_order(added))
    except InvalidInput as refused:
        old = type(refused)
    request = build(spec)
    monkeypatch.setattr(pipeline, "new_client_order_id", the_ids(*ids))
    try:
        new_request, intents = read_orders(profile, request, profile.classify(request))
        new: object = (seen(new_request), list(intents))
    except InvalidInput as refused:
        new = type(refused)
    assert new == old


def test_the_gateways_ids_are_plain() -> None:
    # The fast way writes an id as it is only when no encoding could change it.
    assert all(PLAIN_CLIENT_ID.fullmatch(new_client_order_id()) for _ in range(100))
