"""OrderTools of Bybit, Kraken, Coinbase, Coinbase Exchange, Bitfinex and Poloniex.

For each: the client order id the gateway adds follows the exchange's own
format rule (written here from its documentation, not from the module),
every other byte of the order is kept, the order then reads back with that
id, the signature made afterwards covers it, and the lookup asks for the
order by that id (never by sending the order again). Bittrex is closed since
2023: signer and catalogue only, no order tools.
"""

from __future__ import annotations

import datetime
import json
import re
from decimal import Decimal

import httpx
import pytest

from keybroker.clock import FixedClock
from keybroker.exchanges import bitfinex, get_profile
from keybroker.exchanges.base import OrderIntent, OrderTools
from keybroker.model import Credential
from keybroker.secret import Secret

JSON = {"content-type": "application/json"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
GATEWAY_ID = "kb0123456789abcdef0123456789abcd"  # the gateway's form: "kb" + 30 hex
FAKE_B64 = "dGVzdC1zZWNyZXQtbm90LXJlYWwtb3JkZXItdG9vbHMtMTIzNDU2Nzg5MA=="

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
# Each exchange's documented rule for a client order id.
RULES = {
    "bybit": re.compile(r"[A-Za-z0-9_-]{1,36}"),  # orderLinkId
    "kraken": re.compile(UUID),  # cl_ord_id: long UUID (or short UUID / 18-char text)
    "coinbase": re.compile(UUID),  # client_order_id: any string; UUIDs in Coinbase's examples
    "coinbase-exchange": re.compile(UUID),  # client_oid: a UUID
    "poloniex": re.compile(r"[A-Za-z0-9_-]{1,64}"),  # clientOrderId
}
FIELD = {
    "bybit": "orderLinkId",
    "kraken": "cl_ord_id",
    "coinbase": "client_order_id",
    "coinbase-exchange": "client_oid",
    "bitfinex": "cid",
    "poloniex": "clientOrderId",
}
SIGNATURE_HEADER = {
    "bybit": "X-BAPI-SIGN",
    "kraken": "API-Sign",
    "coinbase-exchange": "CB-ACCESS-SIGN",
    "bitfinex": "bfx-signature",
    "poloniex": "signature",
}

ORDERS: dict[str, httpx.Request] = {
    "bybit": httpx.Request(
        "POST",
        "https://api.bybit.com/v5/order/create",
        content=b'{"category":"linear", "symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
        b'"qty":"0.010","price":"25000.50"}',
        headers=JSON,
    ),
    "kraken": httpx.Request(
        "POST",
        "https://api.kraken.com/0/private/AddOrder",
        content=b"pair=XBTUSD&type=buy&ordertype=limit&price=25000.5&volume=0.0100",
        headers=FORM,
    ),
    "coinbase": httpx.Request(
        "POST",
        "https://api.coinbase.com/api/v3/brokerage/orders",
        content=b'{"product_id":"BTC-USD","side":"BUY","order_configuration":'
        b'{"limit_limit_gtc":{"base_size":"0.010","limit_price":"25000.50"}}}',
        headers=JSON,
    ),
    "coinbase-exchange": httpx.Request(
        "POST",
        "https://api.exchange.coinbase.com/orders",
        content=b'{"product_id":"BTC-USD","side":"buy","type":"limit","size":"0.010",'
        b'"price":"25000.50"}',
        headers=JSON,
    ),
    "bitfinex": httpx.Request(
        "POST",
        "https://api.bitfinex.com/v2/auth/w/order/submit",
        content=b'{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"-0.010","price":"25000.5"}',
        headers=JSON,
    ),
    "poloniex": httpx.Request(
        "POST",
        "https://api.poloniex.com/orders",
        content=b'{"symbol":"BTC_USDT","side":"BUY","type":"LIMIT","quantity":"0.010",'
        b'"price":"25000.50"}',
        headers=JSON,
    ),
}


def tools(name: str) -> OrderTools:
    found = get_profile(name).orders
    assert found is not None
    return found


def ids(*values: str):  # type: ignore[no-untyped-def]
    return iter(values).__next__


def credential(name: str) -> Credential:
    passphrase = Secret("test-passphrase-not-real") if name == "coinbase-exchange" else None
    return Credential(
        "t", name, "test-key-not-real", Secret(FAKE_B64), passphrase, environment="production"
    )


def copy(request: httpx.Request, body: bytes | None = None) -> httpx.Request:
    return httpx.Request(
        request.method,
        request.url,
        headers=[(k, v) for k, v in request.headers.items() if k != "content-length"],
        content=request.read() if body is None else body,
    )


@pytest.fixture(autouse=True)
def _bitfinex_day(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2024-05-09 12:00 UTC: day 19852.
    monkeypatch.setattr(bitfinex, "CID_CLOCK", FixedClock(1_715_256_000_000))


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_the_added_id_follows_the_exchange_rule_and_every_other_byte_stays(name: str) -> None:
    order = ORDERS[name]
    added = tools(name).add_client_order_id(copy(order), ids(GATEWAY_ID))
    (intent,) = get_profile(name).parse_order(added)
    assert intent.client_order_id is not None
    if name == "bitfinex":
        cid = int(intent.client_order_id)
        assert 0 < cid < 2**45  # int45
        assert cid // 10**9 == 19852  # the day it was made, read back for cid_date
    else:
        assert RULES[name].fullmatch(intent.client_order_id), intent.client_order_id
    body = added.read()
    assert added.headers["content-length"] == str(len(body))
    if name == "kraken":
        assert body == order.read() + b"&cl_ord_id=" + intent.client_order_id.encode()
    else:
        value = intent.client_order_id if name == "bitfinex" else f'"{intent.client_order_id}"'
        member = f'"{FIELD[name]}":{value},'.encode()
        assert body == b"{" + member + order.read()[1:]  # one member first, the rest unchanged
    # The order itself reads the same: only the id is new.
    (before,) = get_profile(name).parse_order(copy(order))
    assert before.client_order_id is None
    assert (intent.symbol, intent.side, intent.quantity, intent.price) == (
        before.symbol,
        before.side,
        before.quantity,
        before.price,
    )


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_an_order_that_has_an_id_is_left_alone(name: str) -> None:
    once = tools(name).add_client_order_id(copy(ORDERS[name]), ids(GATEWAY_ID))
    assert tools(name).add_client_order_id(once, ids()) is once
    read = httpx.Request("GET", ORDERS[name].url.copy_with(path="/v5/account/wallet-balance"))
    assert tools(name).add_client_order_id(read, ids()) is read


def test_an_id_the_gateway_made_that_an_exchange_refuses_is_reshaped() -> None:
    odd = "id with spaces & more than thirty-six characters"
    for name in ("bybit", "poloniex"):
        added = tools(name).add_client_order_id(copy(ORDERS[name]), ids(odd))
        (intent,) = get_profile(name).parse_order(added)
        assert intent.client_order_id and RULES[name].fullmatch(intent.client_order_id)
    # Kraken takes the gateway's own 32-character id only as a UUID.
    (intent,) = get_profile("kraken").parse_order(
        tools("kraken").add_client_order_id(copy(ORDERS["kraken"]), ids(GATEWAY_ID))
    )
    assert intent.client_order_id != GATEWAY_ID


@pytest.mark.parametrize("name", sorted(SIGNATURE_HEADER))
def test_the_signature_made_after_adding_covers_the_id(name: str) -> None:
    profile = get_profile(name)
    one = tools(name).add_client_order_id(copy(ORDERS[name]), ids(GATEWAY_ID))
    other = tools(name).add_client_order_id(copy(ORDERS[name]), ids(GATEWAY_ID[:-1] + "e"))
    signed_one = profile.sign(one, credential(name), now_ms=1_715_256_000_000, nonce=7)
    signed_other = profile.sign(other, credential(name), now_ms=1_715_256_000_000, nonce=7)
    (intent,) = profile.parse_order(signed_one)
    assert str(intent.client_order_id).encode() in signed_one.read()
    # Same order, same time, same nonce, another id: another signature.
    header = SIGNATURE_HEADER[name]
    assert signed_one.headers[header] != signed_other.headers[header]


def test_kraken_json_orders_get_the_id_in_the_json() -> None:
    order = httpx.Request(
        "POST",
        "https://api.kraken.com/0/private/AddOrder",
        content=b'{"pair":"XBTUSD","type":"buy","ordertype":"limit","price":"1","volume":"2"}',
        headers=JSON,
    )
    added = tools("kraken").add_client_order_id(order, ids(GATEWAY_ID))
    assert (
        json.loads(added.read())["cl_ord_id"]
        == get_profile("kraken").parse_order(added)[0].client_order_id
    )
    with_ref = copy(ORDERS["kraken"], ORDERS["kraken"].read() + b"&userref=42")
    assert tools("kraken").add_client_order_id(with_ref, ids()) is with_ref


# -- lookups -----------------------------------------------------------------------------------


def lookup_for(name: str) -> tuple[httpx.Request, OrderIntent]:
    added = tools(name).add_client_order_id(copy(ORDERS[name]), ids(GATEWAY_ID))
    (intent,) = get_profile(name).parse_order(added)
    query = tools(name).lookup_request(added, intent)
    assert query is not None
    # A read the catalogue knows: the gateway budgets and signs it like any order read.
    assert get_profile(name).classify(query).kind == "order_read"
    return query, intent


def test_bybit_looks_the_order_up_by_order_link_id() -> None:
    query, intent = lookup_for("bybit")
    assert query.method == "GET" and query.url.path == "/v5/order/realtime"
    assert dict(query.url.params) == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderLinkId": str(intent.client_order_id),
    }
    outcome = tools("bybit").lookup_outcome
    assert outcome(200, b'{"retCode":0,"result":{"list":[{"orderId":"1"}]}}') == "found"
    assert outcome(200, b'{"retCode":0,"result":{"list":[]}}') == "unknown"  # may have filled
    assert outcome(200, b'{"retCode":10006,"retMsg":"x"}') == "unknown"


def test_kraken_looks_the_order_up_among_open_orders() -> None:
    query, intent = lookup_for("kraken")
    assert (query.method, query.url.path) == ("POST", "/0/private/OpenOrders")
    assert query.read() == f"cl_ord_id={intent.client_order_id}".encode()
    by_ref = tools("kraken").lookup_request(
        ORDERS["kraken"], OrderIntent("XBTUSD", client_order_id="42")
    )
    assert by_ref is not None and by_ref.read() == b"userref=42"
    outcome = tools("kraken").lookup_outcome
    assert outcome(200, b'{"error":[],"result":{"open":{"OQCLML-BW3P3-BUCMWZ":{}}}}') == "found"
    assert outcome(200, b'{"error":[],"result":{"open":{}}}') == "unknown"
    assert outcome(200, b'{"error":["EAPI:Invalid nonce"]}') == "unknown"


def test_coinbase_exchange_looks_the_order_up_by_client_oid() -> None:
    query, intent = lookup_for("coinbase-exchange")
    assert query.method == "GET" and query.url.path == f"/orders/client:{intent.client_order_id}"
    outcome = tools("coinbase-exchange").lookup_outcome
    assert outcome(200, b'{"id":"d0c5340b-6d6c-49d9-b567-48c4bfca13d2","status":"open"}') == "found"
    assert outcome(404, b'{"message":"NotFound"}') == "absent"
    assert outcome(500, b"") == "unknown"


def test_bitfinex_looks_the_order_up_by_cid_and_the_date_it_carries() -> None:
    query, intent = lookup_for("bitfinex")
    assert (query.method, query.url.path) == ("POST", "/v2/auth/r/orders/tBTCUSD")
    assert json.loads(query.read()) == {
        "cid": int(str(intent.client_order_id)),
        "cid_date": "2024-05-09",
    }
    # A cid the bot chose (a millisecond time, as Bitfinex's examples do) carries no date.
    assert (
        tools("bitfinex").lookup_request(
            ORDERS["bitfinex"], OrderIntent("tBTCUSD", client_order_id="1715256000000")
        )
        is None
    )
    outcome = tools("bitfinex").lookup_outcome
    assert outcome(200, b'[[1,null,5,"tBTCUSD"]]') == "found"
    assert outcome(200, b"[]") == "unknown"
    assert outcome(500, b'["error",10020,"x"]') == "unknown"


def test_bitfinex_cid_date_is_the_utc_day_of_the_clock() -> None:
    day = (datetime.date(2024, 5, 9) - datetime.date(1970, 1, 1)).days
    assert day == 19852
    assert bitfinex.cid_date(day * 10**9 + 123) == "2024-05-09"
    assert bitfinex.cid_date(2**45) is None


def test_poloniex_looks_the_order_up_by_client_order_id() -> None:
    query, intent = lookup_for("poloniex")
    assert query.method == "GET" and query.url.path == f"/orders/cid:{intent.client_order_id}"
    outcome = tools("poloniex").lookup_outcome
    assert outcome(200, b'{"id":"29772698821328896","clientOrderId":"x"}') == "found"
    assert outcome(400, b'{"code":21603,"message":"x"}') == "unknown"


def test_coinbase_has_no_lookup_by_client_order_id() -> None:
    added = tools("coinbase").add_client_order_id(copy(ORDERS["coinbase"]), ids(GATEWAY_ID))
    (intent,) = get_profile("coinbase").parse_order(added)
    assert intent.client_order_id is not None
    assert tools("coinbase").lookup_request(added, intent) is None


def test_bittrex_is_closed_and_has_no_order_tools() -> None:
    assert get_profile("bittrex").is_closed and get_profile("bittrex").orders is None


# -- last prices ---------------------------------------------------------------------------------

PRICES = {
    "bybit": (
        "BTCUSDT",
        "/v5/market/tickers",
        b'{"retCode":0,"result":{"list":[{"lastPrice":"25001.5"}]}}',
    ),
    "kraken": (
        "XBTUSD",
        "/0/public/Ticker",
        b'{"error":[],"result":{"XXBTZUSD":{"c":["25001.5","0.1"]}}}',
    ),
    "coinbase": (
        "BTC-USD",
        "/api/v3/brokerage/market/products/BTC-USD",
        b'{"product_id":"BTC-USD","price":"25001.5"}',
    ),
    "coinbase-exchange": ("BTC-USD", "/products/BTC-USD/ticker", b'{"price":"25001.5","size":"1"}'),
    "bitfinex": (
        "tBTCUSD",
        "/v2/ticker/tBTCUSD",
        b"[25000,1,25002,1,10,0.01,25001.5,100,26000,24000]",
    ),
    "poloniex": ("BTC_USDT", "/markets/BTC_USDT/price", b'{"symbol":"BTC_USDT","price":"25001.5"}'),
}


@pytest.mark.parametrize("name", sorted(PRICES))
def test_last_price_is_a_public_request_and_reads_back(name: str) -> None:
    symbol, path, body = PRICES[name]
    ticker = tools(name).price_request(ORDERS[name], symbol)
    assert ticker is not None and ticker.url.path == path and ticker.method == "GET"
    assert ticker.url.host == ORDERS[name].url.host
    assert get_profile(name).classify(ticker).kind == "public"
    assert tools(name).parse_price(body) == Decimal("25001.5")
    assert tools(name).parse_price(b"not json") is None
