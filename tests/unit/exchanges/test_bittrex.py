"""Bittrex v3 (closed December 2023): vector, signer, catalogue, small parser and error map."""

from __future__ import annotations

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
)
from keybroker.exchanges import bittrex, get_profile
from keybroker.exchanges.base import METHOD_OVERRIDE_HEADERS
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("bittrex")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "bittrex.json").read_text("utf-8")
)["vectors"]
SECRET = "keybroker-test-secret-not-real-0001"
API_KEY = "keybroker-test-key-not-real"
TS = 1600000000123
HOST = "https://api.bittrex.com"
EMPTY_HASH = hashlib.sha512(b"").hexdigest()


def credential(secret: str = SECRET) -> Credential:
    return Credential("test", "bittrex", API_KEY, Secret(secret), environment="production")


def wire(request: httpx.Request) -> tuple[str, bytes, list[tuple[str, str]], bytes]:
    return (
        request.method,
        bytes(str(request.url), "ascii"),
        request.headers.multi_items(),
        request.read(),
    )


def documented_signature(secret: str, ts: int, url: str, method: str, body: bytes, sub: str) -> str:
    # §11, written out independently of the signer.
    content_hash = hashlib.sha512(body).hexdigest()
    presign = f"{ts}{url}{method}{content_hash}{sub}"
    return hmac.new(secret.encode(), presign.encode(), hashlib.sha512).hexdigest()


# -- vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_published_empty_content_hash(vector: dict[str, Any]) -> None:
    request = httpx.Request(vector["request"]["method"], vector["request"]["url"])
    signed = PROFILE.sign(request, credential(), now_ms=TS)
    assert signed.headers["Api-Content-Hash"] == vector["expected"]["Api-Content-Hash"]
    twin = PROFILE.sign(
        httpx.Request("POST", vector["request"]["url"], content=b" "), credential(), now_ms=TS
    )
    assert twin.headers["Api-Content-Hash"] != vector["expected"]["Api-Content-Hash"]


# -- signer ------------------------------------------------------------------------------


def test_get_signs_the_full_url_with_its_query() -> None:
    url = f"{HOST}/v3/orders/closed?marketSymbol=BTC-USDT&pageSize=10"
    signed = PROFILE.sign(httpx.Request("GET", url), credential(), now_ms=TS)
    assert signed.headers["Api-Key"] == API_KEY
    assert signed.headers["Api-Timestamp"] == str(TS)
    assert signed.headers["Api-Content-Hash"] == EMPTY_HASH
    assert signed.headers["Api-Signature"] == documented_signature(SECRET, TS, url, "GET", b"", "")
    assert str(signed.url) == url


def test_post_hashes_the_exact_body() -> None:
    body = b'{"marketSymbol":"BTC-USDT","direction":"BUY","type":"LIMIT","quantity":"0.1"}'
    request = httpx.Request("POST", HOST + "/v3/orders", content=body)
    signed = PROFILE.sign(request, credential(), now_ms=TS)
    assert signed.headers["Api-Content-Hash"] == hashlib.sha512(body).hexdigest()
    assert signed.headers["Api-Signature"] == documented_signature(
        SECRET, TS, HOST + "/v3/orders", "POST", body, ""
    )
    assert signed.read() == body


def test_subaccount_header_is_signed_and_kept() -> None:
    request = httpx.Request(
        "DELETE", HOST + "/v3/orders/abc", headers={"api-subaccount-id": "sub-1"}
    )
    signed = PROFILE.sign(request, credential(), now_ms=TS)
    assert signed.headers["Api-Subaccount-Id"] == "sub-1"
    assert signed.headers["Api-Signature"] == documented_signature(
        SECRET, TS, HOST + "/v3/orders/abc", "DELETE", b"", "sub-1"
    )


def test_existing_auth_headers_are_replaced() -> None:
    request = httpx.Request(
        "GET",
        HOST + "/v3/balances",
        headers={
            "API-KEY": "placeholder",
            "api-timestamp": "1",
            "Api-Content-Hash": "0",
            "api-signature": "0",
        },
    )
    signed = PROFILE.sign(request, credential(), now_ms=TS)
    names = [name.lower() for name, _ in signed.headers.multi_items()]
    for name in ("api-key", "api-timestamp", "api-content-hash", "api-signature"):
        assert names.count(name) == 1
    assert signed.headers["Api-Key"] == API_KEY


@settings(max_examples=50, deadline=None)
@given(
    query=st.dictionaries(st.sampled_from(["marketSymbol", "pageSize", "x"]), st.text(max_size=6)),
    body=st.binary(max_size=40),
    ts=st.integers(1, 2**45),
    verb=st.sampled_from(["GET", "POST", "DELETE"]),
)
def test_signing_is_deterministic_and_idempotent(
    query: dict[str, str], body: bytes, ts: int, verb: str
) -> None:
    request = httpx.Request(verb, HOST + "/v3/orders/open", params=query, content=body)
    once = PROFILE.sign(request, credential(), now_ms=ts)
    assert wire(once) == wire(PROFILE.sign(request, credential(), now_ms=ts))
    assert wire(PROFILE.sign(once, credential(), now_ms=ts)) == wire(once)
    assert once.url.query == request.url.query and once.read() == body
    assert once.headers["Api-Signature"] == documented_signature(
        SECRET, ts, str(request.url), verb, body, ""
    )


def test_profile_is_closed_and_has_only_production() -> None:
    assert PROFILE.is_closed
    assert PROFILE.base_url("/v3/orders", "production") == HOST
    with pytest.raises(InvalidInput):
        PROFILE.base_url("/v3/orders", "testnet")


# -- catalogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/v3/orders", "order_place"),
        ("POST", "/v3/conditional-orders", "order_place"),
        ("DELETE", "/v3/orders/abc-123", "order_cancel"),
        ("DELETE", "/v3/orders/open", "order_cancel"),
        ("GET", "/v3/orders/open", "order_read"),
        ("GET", "/v3/orders/abc-123", "order_read"),
        ("GET", "/v3/balances", "account_read"),
        ("GET", "/v3/withdrawals/closed", "account_read"),
        ("GET", "/v3/withdrawals/abc", "account_read"),
        ("POST", "/v3/withdrawals", "withdraw"),
        ("DELETE", "/v3/withdrawals/abc", "withdraw"),
        ("PUT", "/v3/withdrawals", "withdraw"),
        ("POST", "/v3/transfers", "transfer"),
        ("POST", "/v3/addresses", "transfer"),
        ("POST", "/v3/subaccounts", "unknown_private"),
        ("GET", "/v3/markets/BTC-USDT/ticker", "public"),
        ("GET", "/v3/ping", "public"),
    ],
)
def test_catalogue(method: str, path: str, kind: str) -> None:
    assert PROFILE.classify(httpx.Request(method, HOST + path)).kind == kind


MUST_REFUSE = [
    (method, path.replace("{withdrawalId}", "0a1b-2c"), endpoint.kind)
    for (method, path), endpoint in bittrex.ENDPOINTS.items()
    if endpoint.kind in ("withdraw", "transfer", "key_management")
]


def test_every_must_refuse_endpoint_of_the_spec_is_catalogued() -> None:
    spec_11 = {
        ("POST", "/v3/withdrawals"),
        ("DELETE", "/v3/withdrawals/{withdrawalId}"),
        ("POST", "/v3/transfers"),
        ("POST", "/v3/addresses"),
    }
    assert spec_11 <= {key for key, e in bittrex.ENDPOINTS.items() if e.kind != "account_read"}


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
        headers[data.draw(st.sampled_from(METHOD_OVERRIDE_HEADERS))] = method.lower()
        method = "GET"
    url = httpx.URL(HOST).copy_with(raw_path=raw_path)
    assert PROFILE.classify(httpx.Request(method, url, headers=headers)).kind == kind


# -- batch: operations in the body ---------------------------------------------------------------

PLACE = {
    "resource": "order",
    "operation": "post",
    "payload": {"marketSymbol": "BTC-USDT", "direction": "SELL", "type": "LIMIT", "quantity": "1"},
}
CANCEL = {"resource": "order", "operation": "delete", "payload": {"id": "abc"}}


@pytest.mark.parametrize(
    ("items", "kind"),
    [
        ([PLACE, CANCEL], "order_place"),
        ([CANCEL], "order_cancel"),
        (
            [PLACE, {"resource": "withdrawal", "operation": "post", "payload": {}}],
            "unknown_private",
        ),
        ([], "unknown_private"),
    ],
)
def test_batch_is_classified_by_its_operations(items: list[Any], kind: str) -> None:
    request = httpx.Request("POST", HOST + "/v3/batch", content=json.dumps(items).encode())
    assert PROFILE.classify(request).kind == kind


# -- order intents ---------------------------------------------------------------------------


def test_order_intent() -> None:
    body = (
        b'{"marketSymbol":"ETH-BTC","direction":"BUY","type":"CEILING_LIMIT","limit":"0.05",'
        b'"ceiling":0.5,"timeInForce":"IMMEDIATE_OR_CANCEL","clientOrderId":"c-1"}'
    )
    [intent] = PROFILE.parse_order(httpx.Request("POST", HOST + "/v3/orders", content=body))
    assert (intent.symbol, intent.side, intent.type) == ("ETH-BTC", "buy", "CEILING_LIMIT")
    assert intent.price == Decimal("0.05") and intent.quote_quantity == Decimal("0.5")
    assert intent.client_order_id == "c-1"


def test_conditional_and_batch_intents() -> None:
    conditional = json.dumps({"marketSymbol": "BTC-USDT", "orderToCreate": PLACE["payload"]})
    [intent] = PROFILE.parse_order(
        httpx.Request("POST", HOST + "/v3/conditional-orders", content=conditional.encode())
    )
    assert intent.side == "sell" and intent.quantity == Decimal(1)
    batch = json.dumps([PLACE, CANCEL, PLACE]).encode()
    intents = PROFILE.parse_order(httpx.Request("POST", HOST + "/v3/batch", content=batch))
    assert len(intents) == 2


def test_malformed_order_is_refused() -> None:
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(httpx.Request("POST", HOST + "/v3/orders", content=b"[1]"))


# -- error map ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"code": "INVALID_SIGNATURE"}, AuthenticationFailed),
        (401, {"code": "APIKEY_INVALID"}, AuthenticationFailed),
        (403, {"code": "WHITELIST_VIOLATION_IP"}, AuthenticationFailed),
        (409, {"code": "INSUFFICIENT_FUNDS"}, InsufficientBalance),
        (400, {"code": "MIN_TRADE_REQUIREMENT_NOT_MET"}, OrderRejected),
        (400, {"code": "BAD_REQUEST"}, ExchangeRejected),
        (429, {}, RateLimitedUpstream),
        (503, {}, ExchangeUnavailable),
    ],
)
def test_error_map(status: int, body: dict[str, str], error: type) -> None:
    mapped = PROFILE.map_error(status, json.dumps(body).encode())
    assert type(mapped) is error and mapped is not None and mapped.exchange == "bittrex"
    assert PROFILE.map_error(200, b"{}") is None


def test_no_permission_query() -> None:
    assert PROFILE.permission_request is None
    assert "no endpoint" in PROFILE.permission_note
