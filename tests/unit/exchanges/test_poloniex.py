"""Poloniex spot: vectors, signer, catalogue, order intents and errors (no permission query)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.errors import (
    AuthenticationFailed,
    ExchangeRejected,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidInput,
    OrderRejected,
    RateLimitedUpstream,
    SigningError,
    TimestampOutsideWindow,
)
from keybroker.exchanges import get_profile, poloniex
from keybroker.exchanges.base import METHOD_OVERRIDE_HEADERS
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("poloniex")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "poloniex.json").read_text("utf-8")
)["vectors"]
SECRET = "keybroker-test-secret-not-real-0001"
API_KEY = "keybroker-test-key-not-real"
TS = 1659259836247
HOST = "https://api.poloniex.com"


def credential(secret: str = SECRET, api_key: str = API_KEY) -> Credential:
    return Credential("test", "poloniex", api_key, Secret(secret), environment="production")


def wire(request: httpx.Request) -> tuple[str, bytes, list[tuple[str, str]], bytes]:
    return (
        request.method,
        bytes(str(request.url), "ascii"),
        request.headers.multi_items(),
        request.read(),
    )


def vector_request(vector: dict[str, Any]) -> httpx.Request:
    body = vector["request"]["body"]
    return httpx.Request(
        vector["request"]["method"],
        vector["request"]["url"],
        content=body.encode("utf-8") if body is not None else None,
    )


def b64_hmac(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# -- vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector_string_to_sign_matches(vector: dict[str, Any]) -> None:
    assert (
        poloniex.string_to_sign(vector_request(vector), vector["timestamp_ms"])
        == vector["string_to_sign"]
    )


ORACLE = [v for v in VECTORS if v["kind"] == "oracle"]


@pytest.mark.parametrize("vector", ORACLE, ids=lambda v: v["id"])
def test_vector_signature_matches(vector: dict[str, Any]) -> None:
    signed = PROFILE.sign(
        vector_request(vector),
        credential(vector["secret"], vector["api_key"]),
        now_ms=vector["timestamp_ms"],
    )
    assert signed.headers["signature"] == vector["expected"]["signature"]
    assert signed.headers["signTimestamp"] == vector["expected"]["signTimestamp"]
    assert signed.headers["key"] == vector["api_key"]
    assert b64_hmac(vector["secret"], vector["string_to_sign"]) == vector["expected"]["signature"]


@pytest.mark.parametrize("vector", ORACLE, ids=lambda v: v["id"])
def test_vector_twins_must_fail(vector: dict[str, Any]) -> None:
    request = vector_request(vector)
    expected = vector["expected"]["signature"]
    ts = vector["timestamp_ms"]
    assert PROFILE.sign(request, credential(SECRET + "x"), now_ms=ts).headers["signature"] != (
        expected
    )
    assert PROFILE.sign(request, credential(), now_ms=ts + 1).headers["signature"] != expected
    url = vector["request"]["url"]
    changed_url = url[:-1] + ("0" if url[-1] != "0" else "1")
    body = vector["request"]["body"]
    changed = httpx.Request(
        vector["request"]["method"],
        changed_url,
        content=body.encode() if body is not None else None,
    )
    assert PROFILE.sign(changed, credential(), now_ms=ts).headers["signature"] != expected


# -- signer ------------------------------------------------------------------------------


def test_get_query_is_sorted_with_the_timestamp_and_sent_as_it_came() -> None:
    request = httpx.Request("GET", f"{HOST}/orders?symbol=ETH_USDT&limit=5&from=1")
    assert poloniex.string_to_sign(request, TS) == (
        f"GET\n/orders\nfrom=1&limit=5&signTimestamp={TS}&symbol=ETH_USDT"
    )
    signed = PROFILE.sign(request, credential(), now_ms=TS)
    assert signed.url.raw_path == b"/orders?symbol=ETH_USDT&limit=5&from=1"
    assert signed.url.query == request.url.query


def test_query_values_are_signed_in_rfc3986_form_however_they_were_sent() -> None:
    # httpx writes a space as "+", ccxt as "%20"; the server decodes both to a
    # space, so both are signed as %20. Non-ASCII is signed as its UTF-8 escapes.
    plus = httpx.Request("GET", HOST + "/trades", params={"q": "a b/c", "s": "索拉拉_USDT"})
    assert plus.url.query == b"q=a+b%2Fc&s=%E7%B4%A2%E6%8B%89%E6%8B%89_USDT"
    percent = httpx.Request("GET", HOST + "/trades?q=a%20b%2Fc&s=%E7%B4%A2%E6%8B%89%E6%8B%89_USDT")
    expected = f"GET\n/trades\nq=a%20b%2Fc&s=%E7%B4%A2%E6%8B%89%E6%8B%89_USDT&signTimestamp={TS}"
    assert poloniex.string_to_sign(plus, TS) == expected
    assert poloniex.string_to_sign(percent, TS) == expected
    assert PROFILE.sign(plus, credential(), now_ms=TS).url.query == plus.url.query


def test_body_verbs_sign_request_body_then_timestamp() -> None:
    body = b'{"symbol":"BTC_USDT","side":"BUY","clientOrderId":"\xc3\xa9\\"1"}'
    request = httpx.Request("POST", HOST + "/orders", content=body)
    assert poloniex.string_to_sign(request, TS) == (
        f"POST\n/orders\nrequestBody={body.decode()}&signTimestamp={TS}"
    )
    bare = httpx.Request("DELETE", HOST + "/orders/123")
    assert poloniex.string_to_sign(bare, TS) == f"DELETE\n/orders/123\nsignTimestamp={TS}"


@pytest.mark.parametrize(
    "request_",
    [
        httpx.Request("GET", HOST + "/orders", content=b"{}"),
        httpx.Request("DELETE", HOST + "/orders?symbol=BTC_USDT"),
        httpx.Request("GET", HOST + "/orders?signTimestamp=1"),
        httpx.Request("GET", HOST + "/orders?symbol=%FF"),
    ],
    ids=["get-with-body", "delete-with-query", "timestamp-in-query", "not-utf8"],
)
def test_shapes_the_rule_does_not_cover_are_refused(request_: httpx.Request) -> None:
    with pytest.raises(SigningError):
        PROFILE.sign(request_, credential(), now_ms=TS)


def test_signer_replaces_auth_headers_and_keeps_optional_ones() -> None:
    request = httpx.Request(
        "GET",
        HOST + "/accounts",
        headers={
            "KEY": "placeholder",
            "signtimestamp": "1",
            "Signature": "x",
            "signatureMethod": "hmacSHA256",
            "signatureVersion": "2",
            "recvWindow": "1500",
        },
    )
    signed = PROFILE.sign(request, credential(), now_ms=TS)
    names = [name.lower() for name, _ in signed.headers.multi_items()]
    for name in ("key", "signtimestamp", "signature"):
        assert names.count(name) == 1
    assert signed.headers["key"] == API_KEY
    assert signed.headers["signTimestamp"] == str(TS)
    assert signed.headers["signatureMethod"] == "hmacSHA256"
    assert signed.headers["signatureVersion"] == "2"
    assert signed.headers["recvWindow"] == "1500"


query_values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8
)


@settings(max_examples=60, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["symbol", "limit", "from", "to", "side"]), query_values
    ),
    body=st.dictionaries(st.text(max_size=5), st.text(max_size=8), max_size=3),
    ts=st.integers(1, 2**45),
    verb=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
)
def test_signing_is_deterministic_and_idempotent(
    params: dict[str, str], body: dict[str, str], ts: int, verb: str
) -> None:
    if verb == "GET":
        request = httpx.Request(verb, HOST + "/orders", params=params, headers={"key": "ph"})
    else:
        content = json.dumps(body, ensure_ascii=False).encode()
        request = httpx.Request(verb, HOST + "/orders", content=content)
    once = PROFILE.sign(request, credential(), now_ms=ts)
    assert wire(once) == wire(PROFILE.sign(request, credential(), now_ms=ts))
    assert wire(PROFILE.sign(once, credential(), now_ms=ts)) == wire(once)
    assert once.url.raw_path == request.url.raw_path and once.read() == request.read()


# -- base URLs -------------------------------------------------------------------------------


def test_base_urls() -> None:
    assert PROFILE.base_url("/orders", "production") == HOST
    assert PROFILE.base_url("/orders", "testnet") == "https://sand-spot-api-gateway.poloniex.com"


# -- catalogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/orders", "order_place"),
        ("POST", "/orders/batch", "order_place"),
        ("PUT", "/orders/123", "order_place"),
        ("POST", "/smartorders", "order_place"),
        ("DELETE", "/orders/123", "order_cancel"),
        ("DELETE", "/orders/cid:my-1", "order_cancel"),
        ("DELETE", "/orders/cancelByIds", "order_cancel"),
        ("DELETE", "/orders", "order_cancel"),
        ("POST", "/orders/killSwitch", "order_cancel"),
        ("GET", "/orders", "order_read"),
        ("GET", "/orders/123", "order_read"),
        ("GET", "/orders/history", "order_read"),
        ("GET", "/orders/killSwitchStatus", "order_read"),
        ("GET", "/accounts/balances", "account_read"),
        ("GET", "/accounts/transfer", "account_read"),
        ("POST", "/wallets/withdraw", "withdraw"),
        ("POST", "/v2/wallets/withdraw", "withdraw"),
        ("PUT", "/wallets/withdraw", "withdraw"),
        ("POST", "/accounts/transfer", "transfer"),
        ("POST", "/subaccounts/transfer", "transfer"),
        ("POST", "/wallets/address", "transfer"),
        ("GET", "/markets/BTC_USDT/orderBook", "public"),
        ("GET", "/currencies", "public"),
        ("GET", "/timestamp", "public"),
        ("POST", "/margin/borrow", "unknown_private"),
        ("POST", "/v3/trade/order", "unknown_private"),
    ],
)
def test_catalogue(method: str, path: str, kind: str) -> None:
    assert PROFILE.classify(httpx.Request(method, HOST + path)).kind == kind


def test_legacy_trading_api_withdrawal_is_recorded_as_one() -> None:
    request = httpx.Request(
        "POST", HOST + "/tradingApi", content=b"command=withdraw&currency=BTC&nonce=1"
    )
    assert PROFILE.classify(request).kind == "withdraw"
    other = httpx.Request("POST", HOST + "/tradingApi", content=b"command=returnBalances")
    assert PROFILE.classify(other).kind == "unknown_private"


MUST_REFUSE = [
    (method, path, endpoint.kind)
    for (method, path), endpoint in poloniex.ENDPOINTS.items()
    if endpoint.kind in ("withdraw", "transfer", "key_management")
]


def test_every_must_refuse_endpoint_of_the_spec_is_catalogued() -> None:
    spec_10_5 = {
        ("POST", "/wallets/withdraw"),
        ("POST", "/v2/wallets/withdraw"),
        ("POST", "/accounts/transfer"),
        ("POST", "/subaccounts/transfer"),
        ("POST", "/wallets/address"),
    }
    assert spec_10_5 <= {(method, path) for method, path, _ in MUST_REFUSE}


@st.composite
def spellings(draw: st.DrawFn, path: str) -> str:
    """Any spelling of ``path`` a lenient server might route to the same endpoint."""
    out = ["/"]  # a request target must start with a literal slash
    for c in path[1:]:
        c = c.upper() if draw(st.booleans()) else c.lower()
        how = draw(st.sampled_from(["plain", "plain", "encode", "double"]))
        if how == "encode":
            hexed = f"%{ord(c):02X}"
            out.append(hexed if draw(st.booleans()) else hexed.lower())
        elif how == "double":
            out.append(f"%25{ord(c):02X}")
        else:
            out.append(c)
    spelled = "".join(out)
    if draw(st.booleans()):
        spelled = spelled.replace("/", "//", 1)
    if draw(st.booleans()):
        spelled = "/junk/.." + spelled
    if draw(st.booleans()):
        spelled = spelled.replace("/", "/./", 1)
    if draw(st.booleans()):
        spelled += "/"
    return spelled


@settings(max_examples=40, deadline=None)
@given(data=st.data(), target=st.sampled_from(MUST_REFUSE))
def test_no_spelling_disguises_a_dangerous_endpoint(
    data: st.DataObject, target: tuple[str, str, str]
) -> None:
    method, path, kind = target
    raw_path = data.draw(spellings(path)).encode("ascii")
    headers = {}
    if data.draw(st.booleans()):
        # Sent as something harmless, with a header that turns it back into the real verb.
        headers[data.draw(st.sampled_from(METHOD_OVERRIDE_HEADERS))] = method.lower()
        method = "GET"
    elif data.draw(st.booleans()):
        # Another verb the catalogue does not know for this path (GET /accounts/transfer
        # is a legitimate read of past transfers) must not slip through either.
        others = [
            verb
            for verb in ("GET", "PUT", "DELETE", "PATCH")
            if (verb, path) not in poloniex.ENDPOINTS
        ]
        method = data.draw(st.sampled_from(others))
    url = httpx.URL(HOST).copy_with(raw_path=raw_path)
    request = httpx.Request(method, url, headers=headers, content=b"{}")
    assert PROFILE.classify(request).kind == kind


# -- order intents ---------------------------------------------------------------------------


def test_place_order_yields_one_intent() -> None:
    body = (
        b'{"symbol":"BTC_USDT","side":"BUY","type":"LIMIT","timeInForce":"GTC",'
        b'"price":"30000.1","quantity":0.0015,"clientOrderId":"kb-1"}'
    )
    [intent] = PROFILE.parse_order(httpx.Request("POST", HOST + "/orders", content=body))
    assert intent.symbol == "BTC_USDT" and intent.side == "buy" and intent.type == "LIMIT"
    assert intent.price == Decimal("30000.1")
    assert intent.quantity == Decimal("0.0015") and isinstance(intent.quantity, Decimal)
    assert intent.client_order_id == "kb-1" and intent.quote_quantity is None


def test_market_buy_by_quote_amount() -> None:
    body = b'{"symbol":"BTC_USDT","side":"BUY","type":"MARKET","amount":"100"}'
    [intent] = PROFILE.parse_order(httpx.Request("POST", HOST + "/orders", content=body))
    assert intent.quote_quantity == Decimal(100) and intent.quantity is None


def test_batch_yields_one_intent_per_order() -> None:
    body = json.dumps(
        [
            {"symbol": "BTC_USDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "2"},
            {"symbol": "ETH_USDT", "side": "SELL", "type": "MARKET", "quantity": "3"},
        ]
    ).encode()
    intents = PROFILE.parse_order(httpx.Request("POST", HOST + "/orders/batch", content=body))
    assert [(i.symbol, i.side, i.quantity) for i in intents] == [
        ("BTC_USDT", "buy", Decimal(1)),
        ("ETH_USDT", "sell", Decimal(3)),
    ]


def test_replace_has_no_symbol_so_allowlists_refuse_it() -> None:
    request = httpx.Request("PUT", HOST + "/orders/123", content=b'{"price":"2","quantity":"1"}')
    [intent] = PROFILE.parse_order(request)
    assert intent.symbol == "" and intent.price == Decimal(2)


def test_non_orders_have_no_intents() -> None:
    assert PROFILE.parse_order(httpx.Request("DELETE", HOST + "/orders/1")) == []
    assert PROFILE.parse_order(httpx.Request("GET", HOST + "/orders")) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/orders", b"[]"),
        ("/orders", b'{"symbol":"BTC_USDT","quantity":"much"}'),
        ("/orders", b'{"symbol":"BTC_USDT","symbol":"ETH_USDT"}'),
        ("/orders/batch", b'{"symbol":"BTC_USDT"}'),
    ],
)
def test_malformed_orders_are_refused(path: str, body: bytes) -> None:
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(httpx.Request("POST", HOST + path, content=body))


# -- error map ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (400, {"code": 21709, "message": "Low available balance"}, InsufficientBalance, 21709),
        (400, {"code": 21721, "message": "x"}, InsufficientBalance, 21721),
        (400, {"code": 21314, "message": "Max open orders"}, OrderRejected, 21314),
        (400, {"code": 21330, "message": "Quantity too small"}, OrderRejected, 21330),
        (400, {"code": 10040, "message": "Invalid symbol"}, OrderRejected, 10040),
        (403, {"code": 25010, "message": "Unauthorized"}, AuthenticationFailed, 25010),
        (401, {"code": 401, "message": "Invalid signature"}, AuthenticationFailed, 401),
        (400, {"code": 21340, "message": "Maintenance"}, ExchangeUnavailable, 21340),
        (429, {"code": 429, "message": "Too many requests"}, RateLimitedUpstream, 429),
        (408, {"code": 408, "message": "Request timeout"}, TimestampOutsideWindow, 408),
        (400, {"code": 400, "message": "signTimestamp expired"}, TimestampOutsideWindow, 400),
        (400, {"code": 601, "message": "Invalid Parameter"}, ExchangeRejected, 601),
        (503, "", ExchangeUnavailable, None),
        (200, {"code": 21709, "message": "Low available balance"}, InsufficientBalance, 21709),
    ],
)
def test_error_map(status: int, body: Any, error: type, code: int | None) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    mapped = PROFILE.map_error(status, raw, {"Retry-After": "3"})
    assert type(mapped) is error
    assert mapped is not None and mapped.code == code and mapped.exchange == "poloniex"
    if isinstance(mapped, RateLimitedUpstream):
        assert mapped.retry_after == 3.0


@pytest.mark.parametrize(
    "body",
    [
        b'{"id":"1","clientOrderId":""}',
        b'{"orderId":"1","state":"PENDING_CANCEL","code":200,"message":""}',
        b'[{"id":"1"},{"code":21709,"message":"Low available balance"}]',
    ],
)
def test_successes_map_to_none(body: bytes) -> None:
    assert PROFILE.map_error(200, body) is None


# -- key permissions ------------------------------------------------------------------------------


def test_there_is_no_permission_query_and_the_note_says_so() -> None:
    assert PROFILE.permission_request is None
    assert "no endpoint" in PROFILE.permission_note
    with pytest.raises(InvalidInput, match="no key-permission query"):
        PROFILE.permissions(b"{}")
