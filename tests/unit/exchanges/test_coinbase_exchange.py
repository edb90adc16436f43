"""Coinbase Exchange: oracle vectors and twins, byte preservation, catalogue, intents, errors."""

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
from keybroker.exchanges import get_profile
from keybroker.exchanges.base import DANGEROUS_KINDS, METHOD_OVERRIDE_HEADERS, OrderIntent
from keybroker.exchanges.coinbase_exchange import ENDPOINTS
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("coinbase-exchange")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "coinbase-exchange.json").read_text(
        "utf-8"
    )
)
BY_ID = {vector["id"]: vector for vector in VECTORS["vectors"]}
FAKE = BY_ID["cbx-ccxt-place-order"]["credential"]
HOST = "https://api.exchange.coinbase.com"


def credential(
    secret: str = FAKE["secret"], passphrase: str | None = FAKE["passphrase"]
) -> Credential:
    return Credential(
        "c",
        "coinbase-exchange",
        FAKE["api_key"],
        Secret(secret),
        passphrase=Secret(passphrase) if passphrase is not None else None,
    )


def request_of(vector: dict[str, Any]) -> httpx.Request:
    spec = vector["request"]
    return httpx.Request(
        spec["method"], spec["url"], headers=spec.get("headers", {}), content=spec["body"].encode()
    )


def coinbase_verifies(secret_b64: str, request: httpx.Request) -> bool:
    """Coinbase Exchange's check from its docs, independent of our signer:
    base64(HMAC-SHA256(b64decode(secret), timestamp + METHOD + path?query + body))."""
    prehash = (
        request.headers["CB-ACCESS-TIMESTAMP"].encode()
        + request.method.encode()
        + request.url.raw_path
        + request.read()
    )
    expected = base64.b64encode(
        hmac.new(base64.b64decode(secret_b64), prehash, hashlib.sha256).digest()
    )
    return hmac.compare_digest(expected, request.headers["CB-ACCESS-SIGN"].encode())


def full_bytes(request: httpx.Request) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    return request.method, str(request.url), list(request.headers.raw), request.read()


# -- vectors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda vector: vector["id"])
def test_vector_signature_matches_exactly(vector: dict[str, Any]) -> None:
    signed = PROFILE.sign(request_of(vector), credential(), now_ms=vector["now_ms"])
    for name, value in vector["expected"].items():
        assert signed.headers[name] == value
    assert signed.headers["CB-ACCESS-PASSPHRASE"] == FAKE["passphrase"]
    assert signed.read() == vector["request"]["body"].encode()
    assert str(signed.url) == vector["request"]["url"]
    assert coinbase_verifies(FAKE["secret"], signed)


@pytest.mark.parametrize("twin", VECTORS["must_fail"], ids=lambda twin: twin["id"])
def test_must_fail_twin_does_not_give_the_expected_signature(twin: dict[str, Any]) -> None:
    original = BY_ID[twin["twin_of"]]
    vector = json.loads(json.dumps(original))
    vector["request"].update(twin.get("request", {}))
    now_ms = twin.get("now_ms", vector["now_ms"])
    secret = twin.get("credential", {}).get("secret", FAKE["secret"])
    signed = PROFILE.sign(request_of(vector), credential(secret), now_ms=now_ms)
    assert signed.headers["CB-ACCESS-SIGN"] != original["expected"]["CB-ACCESS-SIGN"]
    # And the expected signature does not verify the changed inputs under Coinbase's rule.
    forged = PROFILE.sign(request_of(vector), credential(secret), now_ms=now_ms)
    forged.headers["CB-ACCESS-SIGN"] = original["expected"]["CB-ACCESS-SIGN"]
    assert not coinbase_verifies(secret, forged)


def test_query_and_body_bytes_are_signed_as_sent_and_kept() -> None:
    request = httpx.Request(
        "DELETE",
        HOST + "/orders/abc?product_id=BTC%20USD+x&y=%2F",
        headers={"CB-ACCESS-SIGN": "old", "cb-access-key": "placeholder", "X-Trace": "1"},
    )
    signed = PROFILE.sign(request, credential(), now_ms=1_700_000_000_999)
    assert signed.url.query == b"product_id=BTC%20USD+x&y=%2F"
    assert signed.headers["CB-ACCESS-TIMESTAMP"] == "1700000000"
    assert signed.headers.get_list("cb-access-key") == [FAKE["api_key"]]
    assert len(signed.headers.get_list("cb-access-sign")) == 1
    assert signed.headers["X-Trace"] == "1"
    assert "Content-Type" not in signed.headers  # nothing to describe
    assert coinbase_verifies(FAKE["secret"], signed)


@settings(max_examples=50, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(["product_id", "side", "client_oid", "size"]), st.text()),
    query=st.dictionaries(st.sampled_from(["status", "product_id"]), st.text(max_size=8)),
    now_ms=st.integers(min_value=0, max_value=2**42),
)
def test_signing_is_deterministic_and_resigning_is_idempotent(
    body: dict[str, str], query: dict[str, str], now_ms: int
) -> None:
    request = httpx.Request("POST", HOST + "/orders", params=query, json=body)
    once = PROFILE.sign(request, credential(), now_ms=now_ms)
    assert full_bytes(once) == full_bytes(PROFILE.sign(request, credential(), now_ms=now_ms))
    assert full_bytes(PROFILE.sign(once, credential(), now_ms=now_ms)) == full_bytes(once)
    assert coinbase_verifies(FAKE["secret"], once)


def test_passphrase_is_required() -> None:
    with pytest.raises(SigningError):
        PROFILE.sign(
            httpx.Request("GET", HOST + "/accounts"), credential(passphrase=None), now_ms=1
        )
    with pytest.raises(InvalidInput):
        PROFILE.check_credential("key", Secret(FAKE["secret"]), None, "hmac")
    PROFILE.check_credential("key", Secret(FAKE["secret"]), Secret("phrase"), "hmac")


def test_secret_must_be_base64_and_is_never_echoed() -> None:
    with pytest.raises(InvalidInput) as caught:
        PROFILE.check_credential("key", Secret("not*base64"), Secret("phrase"), "hmac")
    assert "not*base64" not in str(caught.value)


def test_environments_and_permission_note() -> None:
    assert PROFILE.base_url("/orders", "production") == HOST
    assert (
        PROFILE.base_url("/orders", "testnet") == "https://api-public.sandbox.exchange.coinbase.com"
    )
    with pytest.raises(InvalidInput):
        PROFILE.base_url("/orders", "demo")
    assert PROFILE.permission_request is None and "Transfer" in PROFILE.permission_note
    with pytest.raises(InvalidInput):
        PROFILE.permissions(b"{}")


# -- catalogue -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/orders", "order_place"),
        ("DELETE", "/orders/abc", "order_cancel"),
        ("DELETE", "/orders/client:my-id", "order_cancel"),
        ("DELETE", "/orders", "order_cancel"),
        ("GET", "/orders", "order_read"),
        ("GET", "/fills", "order_read"),
        ("GET", "/accounts/a-1/ledger", "account_read"),
        ("GET", "/products/BTC-USD/book", "public"),
        ("GET", "/products/BTC-USD/something-new", "public"),
        ("GET", "/time", "public"),
        ("POST", "/withdrawals/crypto", "withdraw"),
        ("GET", "/withdrawals/fee-estimate", "withdraw"),
        ("POST", "/address-book", "withdraw"),
        ("POST", "/profiles/transfer", "transfer"),
        ("POST", "/conversions", "transfer"),
        ("POST", "/loans/open", "transfer"),
        ("PUT", "/profiles/p-1/deactivate", "key_management"),
        ("POST", "/profiles", "key_management"),
        ("POST", "/something-new", "unknown_private"),
    ],
)
def test_classification(method: str, path: str, kind: str) -> None:
    assert PROFILE.classify(httpx.Request(method, HOST + path)).kind == kind


def test_override_header_cannot_make_a_transfer_look_like_a_read() -> None:
    # GET /profiles/transfer would match GET /profiles/{profile_id}; the signed verb is POST.
    request = httpx.Request(
        "POST", HOST + "/profiles/transfer", headers={"X-HTTP-Method-Override": "GET"}
    )
    assert PROFILE.classify(request).kind == "transfer"


DANGEROUS = sorted(
    (method, path, endpoint.kind)
    for (method, path), endpoint in ENDPOINTS.items()
    if endpoint.kind in DANGEROUS_KINDS
)


@st.composite
def disguised_path(draw: st.DrawFn, path: str) -> str:
    """One spelling of ``path`` (placeholders filled) a lenient server would still route to it."""
    parts = []
    for segment in path.split("/"):
        if segment.startswith("{"):
            segment = draw(st.text("abcdef0123456789-", min_size=1, max_size=10))
        parts.append(segment)
    out = []
    for char in "/".join(parts):
        if char == "/":
            out.append(
                draw(st.sampled_from(["/", "//", "/./", "/%2F", "/%2f", "/zz/../", "/%2e/"]))
            )
            continue
        encoded = f"%{ord(char):02X}"
        choices = [char, char.swapcase(), encoded, encoded.lower(), "%25" + encoded[1:]]
        out.append(draw(st.sampled_from(choices)))
    return "".join(out) + draw(st.sampled_from(["", "/", "/.", "//"]))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_no_spelling_disguises_a_dangerous_endpoint(data: st.DataObject) -> None:
    method, path, kind = data.draw(st.sampled_from(DANGEROUS))
    sent_as = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    headers = {}
    if sent_as != method or data.draw(st.booleans()):
        header = data.draw(st.sampled_from(METHOD_OVERRIDE_HEADERS))
        verb = method if sent_as != method else data.draw(st.sampled_from(["GET", "HEAD"]))
        headers[header] = data.draw(st.sampled_from([verb, verb.lower(), f" {verb} "]))
    request = httpx.Request(sent_as, HOST + data.draw(disguised_path(path)), headers=headers)
    assert PROFILE.classify(request).kind == kind


# -- order intents ------------------------------------------------------------------------------
def test_order_intents() -> None:
    limit = httpx.Request(
        "POST",
        HOST + "/orders",
        json={
            "product_id": "BTC-USD",
            "side": "buy",
            "type": "limit",
            "price": "43210.5",
            "size": "0.015",
            "client_oid": "6b7e1a3c-0000-4000-8000-000000000001",
            "post_only": True,
        },
    )
    assert PROFILE.parse_order(limit) == [
        OrderIntent(
            symbol="BTC-USD",
            side="buy",
            type="limit",
            quantity=Decimal("0.015"),
            price=Decimal("43210.5"),
            client_order_id="6b7e1a3c-0000-4000-8000-000000000001",
        )
    ]
    market = httpx.Request(
        "POST",
        HOST + "/orders",
        json={"product_id": "ETH-USD", "side": "SELL", "type": "market", "funds": 10},
    )
    (intent,) = PROFILE.parse_order(market)
    assert (intent.side, intent.quote_quantity, intent.quantity) == ("sell", Decimal("10"), None)


@pytest.mark.parametrize(
    "body",
    [
        b'{"product_id":"BTC-USD","product_id":"ETH-USD","side":"buy","size":"1"}',
        b'{"product_id":"BTC-USD","side":"buy","size":"lots"}',
        b'{"product_id":"BTC-USD","side":"buy","size":NaN}',
        b"not json",
    ],
)
def test_ambiguous_orders_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(httpx.Request("POST", HOST + "/orders", content=body))


def test_non_orders_have_no_intents() -> None:
    assert PROFILE.parse_order(httpx.Request("DELETE", HOST + "/orders/abc")) == []
    assert PROFILE.parse_order(httpx.Request("GET", HOST + "/orders?status=open")) == []


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "message", "kind", "code"),
    [
        (401, "invalid signature", AuthenticationFailed, "invalid signature"),
        (401, "Invalid API Key", AuthenticationFailed, "invalid api key"),
        (401, "Invalid Passphrase", AuthenticationFailed, "invalid passphrase"),
        (400, "request timestamp expired", TimestampOutsideWindow, "request timestamp expired"),
        (401, "request timestamp expired", TimestampOutsideWindow, "request timestamp expired"),
        (429, "Private rate limit exceeded", RateLimitedUpstream, "private rate limit exceeded"),
        (400, "Insufficient funds", InsufficientBalance, "insufficient funds"),
        (400, "size is too small. Minimum size is 0.001", OrderRejected, "size is too small"),
        (400, "price too precise", OrderRejected, "price too precise"),
        (403, "Forbidden", AuthenticationFailed, 403),
        (404, "NotFound", ExchangeRejected, 404),
        (503, "service unavailable", ExchangeUnavailable, 503),
    ],
)
def test_errors_map_to_typed_errors(status: int, message: str, kind: type, code: object) -> None:
    error = PROFILE.map_error(
        status, json.dumps({"message": message}).encode(), {"Retry-After": "1"}
    )
    assert type(error) is kind
    assert error is not None and error.code == code and error.exchange == "coinbase-exchange"


def test_successes_and_non_json_answers() -> None:
    assert PROFILE.map_error(200, b'{"id":"o","status":"pending"}') is None
    assert isinstance(PROFILE.map_error(502, b"<html>bad gateway</html>"), ExchangeUnavailable)
    limited = PROFILE.map_error(429, b"", {"retry-after": "4"})
    assert isinstance(limited, RateLimitedUpstream) and limited.retry_after == 4.0
