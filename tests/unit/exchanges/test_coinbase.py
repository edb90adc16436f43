"""Coinbase Advanced Trade: JWT layout and verification (ES256, Ed25519), catalogue, errors."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
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
from keybroker.exchanges.coinbase import ENDPOINTS
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("coinbase")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "coinbase.json").read_text("utf-8")
)
HOST = "https://api.coinbase.com"
V3 = HOST + "/api/v3/brokerage"
KEY_NAME = "organizations/keybroker-test-org/apiKeys/keybroker-test-key-not-real"
KEY_ID = "00000000-0000-4000-8000-00000000beef"
NOW_MS = 1_700_000_000_999

# Throwaway keys, generated for this test run only.
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PEM = EC_KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL,
    serialization.NoEncryption(),
).decode()
ED_KEY = ed25519.Ed25519PrivateKey.generate()
ED_SEED = ED_KEY.private_bytes(
    serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
)
ED_PUBLIC = ED_KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)
ED_CDP_SECRET = base64.b64encode(ED_SEED + ED_PUBLIC).decode()
ED_PEM = ED_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def es256() -> Credential:
    return Credential("c", "coinbase", KEY_NAME, Secret(EC_PEM), key_type="es256")


def ed(secret: str = ED_CDP_SECRET) -> Credential:
    return Credential("c", "coinbase", KEY_ID, Secret(secret), key_type="ed25519")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_jwt(request: httpx.Request) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    scheme, token = request.headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    header, claims, signature = token.split(".")
    return (
        json.loads(b64url_decode(header)),
        json.loads(b64url_decode(claims)),
        f"{header}.{claims}".encode(),
        b64url_decode(signature),
    )


def jwt_verifies(request: httpx.Request) -> bool:
    """What Coinbase checks, with the public keys only, independent of our signer."""
    header, _, signing_input, signature = decode_jwt(request)
    try:
        if header["alg"] == "ES256":
            assert len(signature) == 64  # JWS wants raw r||s, not DER
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            EC_KEY.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            assert header["alg"] == "EdDSA"
            ED_KEY.public_key().verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True


# -- signer --------------------------------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda vector: vector["id"])
@pytest.mark.parametrize("make", [es256, ed], ids=["es256", "ed25519"])
def test_jwt_layout_and_uri_claim(vector: dict[str, Any], make: Any) -> None:
    cred = make()
    request = httpx.Request(vector["request"]["method"], vector["request"]["url"])
    signed = PROFILE.sign(request, cred, now_ms=NOW_MS)
    header, claims, _, _ = decode_jwt(signed)
    layout = VECTORS["expected_layout"]
    assert sorted(header) == layout["header_keys"] and sorted(claims) == layout["claim_keys"]
    assert claims["uri"] == vector["expected_uri"]
    assert claims["iss"] == layout["iss"]
    assert claims["nbf"] == NOW_MS // 1000
    assert claims["exp"] - claims["nbf"] == layout["lifetime_seconds"]
    assert claims["sub"] == header["kid"] == cred.api_key
    assert header["alg"] == ("ES256" if cred.key_type == "es256" else "EdDSA")
    assert len(header["nonce"]) == 64
    assert jwt_verifies(signed)


def test_random_jwt_nonce_unless_given() -> None:
    request = httpx.Request("GET", V3 + "/accounts")
    nonces = {decode_jwt(PROFILE.sign(request, ed(), now_ms=NOW_MS))[0]["nonce"] for _ in range(3)}
    assert len(nonces) == 3
    given_nonce = decode_jwt(PROFILE.sign(request, ed(), now_ms=NOW_MS, nonce=255))[0]["nonce"]
    assert given_nonce == "0" * 62 + "ff"


@pytest.mark.parametrize("secret", [ED_CDP_SECRET, ED_PEM], ids=["cdp-base64", "pem"])
def test_ed25519_secret_forms_give_the_same_token(secret: str) -> None:
    request = httpx.Request("GET", V3 + "/accounts")
    reference = PROFILE.sign(request, ed(ED_CDP_SECRET), now_ms=NOW_MS, nonce=1)
    signed = PROFILE.sign(request, ed(secret), now_ms=NOW_MS, nonce=1)
    assert signed.headers["Authorization"] == reference.headers["Authorization"]


def test_wrong_key_does_not_verify() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    seed = other.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = other.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    signed = PROFILE.sign(
        httpx.Request("GET", V3 + "/accounts"),
        ed(base64.b64encode(seed + public).decode()),
        now_ms=NOW_MS,
    )
    assert not jwt_verifies(signed)


def test_tampered_claims_do_not_verify() -> None:
    signed = PROFILE.sign(httpx.Request("GET", V3 + "/accounts"), es256(), now_ms=NOW_MS)
    _, claims, _, _ = decode_jwt(signed)
    claims["uri"] = "POST api.coinbase.com/v2/accounts/BTC/transactions"
    forged_claims = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    token = signed.headers["Authorization"].split(" ")[1].split(".")
    token[1] = forged_claims
    signed.headers["Authorization"] = "Bearer " + ".".join(token)
    assert not jwt_verifies(signed)


def test_url_body_and_other_headers_are_kept_and_old_auth_replaced() -> None:
    body = b'{"product_id":"BTC-USD","client_order_id":"a\\"b\xc3\xa9"}'
    request = httpx.Request(
        "POST",
        V3 + "/orders?x=a%20b+c",
        headers={
            "Authorization": "Bearer placeholder",
            "CB-ACCESS-KEY": "old",
            "CB-VERSION": "2024-01-01",
        },
        content=body,
    )
    signed = PROFILE.sign(request, es256(), now_ms=NOW_MS)
    assert signed.url.raw_path == request.url.raw_path and signed.url.query == b"x=a%20b+c"
    assert signed.read() == body
    assert signed.headers["Content-Length"] == str(len(body))
    assert signed.headers["Content-Type"] == "application/json"
    assert signed.headers["CB-VERSION"] == "2024-01-01"
    assert "CB-ACCESS-KEY" not in signed.headers
    assert len(signed.headers.get_list("authorization")) == 1
    assert decode_jwt(signed)[1]["uri"] == "POST api.coinbase.com/api/v3/brokerage/orders"


def full_bytes(request: httpx.Request) -> tuple[str, str, list[tuple[bytes, bytes]], bytes]:
    return request.method, str(request.url), list(request.headers.raw), request.read()


def without_signature(request: httpx.Request) -> tuple[Any, ...]:
    method, url, headers, body = full_bytes(request)
    stripped = [
        (name, value.rsplit(b".", 1)[0] if name.lower() == b"authorization" else value)
        for name, value in headers
    ]
    return method, url, stripped, body


@settings(max_examples=40, deadline=None)
@given(
    body=st.dictionaries(st.sampled_from(["product_id", "side", "client_order_id"]), st.text()),
    now_ms=st.integers(min_value=0, max_value=2**42),
    nonce=st.integers(min_value=0, max_value=2**128),
)
def test_signing_is_deterministic_and_resigning_is_idempotent(
    body: dict[str, str], now_ms: int, nonce: int
) -> None:
    request = httpx.Request("POST", V3 + "/orders", json=body)
    # Ed25519 is deterministic: every byte repeats.
    once = PROFILE.sign(request, ed(), now_ms=now_ms, nonce=nonce)
    assert full_bytes(once) == full_bytes(PROFILE.sign(request, ed(), now_ms=now_ms, nonce=nonce))
    assert full_bytes(PROFILE.sign(once, ed(), now_ms=now_ms, nonce=nonce)) == full_bytes(once)
    # ES256 signatures are randomized: everything but the signature repeats, and both verify.
    first = PROFILE.sign(request, es256(), now_ms=now_ms, nonce=nonce)
    again = PROFILE.sign(first, es256(), now_ms=now_ms, nonce=nonce)
    assert without_signature(first) == without_signature(again)
    assert jwt_verifies(first) and jwt_verifies(again)


def test_only_jwt_key_types_sign() -> None:
    hmac_credential = Credential("c", "coinbase", KEY_NAME, Secret("c2VjcmV0"), key_type="hmac")
    with pytest.raises(SigningError):
        PROFILE.sign(httpx.Request("GET", V3 + "/accounts"), hmac_credential, now_ms=NOW_MS)


# -- credentials -----------------------------------------------------------------------------------
def test_secret_shapes() -> None:
    PROFILE.check_credential(KEY_NAME, Secret(EC_PEM), None, "es256")
    # A PEM pasted from the CDP JSON key file keeps its "\n" escapes; it still works.
    PROFILE.check_credential(KEY_NAME, Secret(EC_PEM.replace("\n", "\\n")), None, "es256")
    PROFILE.check_credential(KEY_ID, Secret(ED_CDP_SECRET), None, "ed25519")
    PROFILE.check_credential(KEY_ID, Secret(ED_PEM), None, "ed25519")
    wrong_half = base64.b64encode(ED_SEED + bytes(32)).decode()
    bad = [
        ("es256", ED_PEM),
        ("es256", "not a pem at all"),
        ("ed25519", EC_PEM),
        ("ed25519", base64.b64encode(ED_SEED).decode()),
        ("ed25519", wrong_half),
        ("hmac", "c2VjcmV0"),
    ]
    for key_type, secret in bad:
        with pytest.raises(InvalidInput) as caught:
            PROFILE.check_credential(KEY_ID, Secret(secret), None, key_type)
        assert secret not in str(caught.value)


def test_environments() -> None:
    assert PROFILE.base_url("/api/v3/brokerage/orders", "production") == HOST
    assert PROFILE.base_url("/api/v3/brokerage/orders", "testnet") == (
        "https://api-sandbox.coinbase.com"
    )
    with pytest.raises(InvalidInput):
        PROFILE.base_url("/api/v3/brokerage/orders", "demo")


# -- catalogue -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/api/v3/brokerage/orders", "order_place"),
        ("POST", "/api/v3/brokerage/orders/edit", "order_place"),
        ("POST", "/api/v3/brokerage/orders/preview", "order_read"),
        ("POST", "/api/v3/brokerage/orders/batch_cancel", "order_cancel"),
        ("GET", "/api/v3/brokerage/orders/historical/abc-123", "order_read"),
        ("GET", "/api/v3/brokerage/orders/historical/batch", "order_read"),
        ("GET", "/api/v3/brokerage/accounts", "account_read"),
        ("GET", "/api/v3/brokerage/key_permissions", "account_read"),
        ("GET", "/api/v3/brokerage/market/products", "public"),
        ("GET", "/api/v3/brokerage/time", "public"),
        ("POST", "/api/v3/brokerage/portfolios/move_funds", "transfer"),
        ("POST", "/api/v3/brokerage/convert/quote", "transfer"),
        ("DELETE", "/api/v3/brokerage/portfolios/p-1", "transfer"),
        ("GET", "/v2/accounts/BTC/transactions", "account_read"),
        ("POST", "/v2/accounts/BTC/transactions", "withdraw"),
        ("POST", "/v2/accounts/BTC/withdrawals/w-1/commit", "withdraw"),
        ("POST", "/v2/accounts/BTC/buys", "transfer"),
        ("DELETE", "/v2/accounts/BTC", "key_management"),
        ("POST", "/api/v3/brokerage/something_new", "unknown_private"),
        ("GET", "/v2/prices/BTC-USD/spot", "public"),
    ],
)
def test_classification(method: str, path: str, kind: str) -> None:
    assert PROFILE.classify(httpx.Request(method, HOST + path)).kind == kind


def test_override_header_cannot_make_a_send_look_like_a_read() -> None:
    # The signer signs POST (the JWT's uri says so); Coinbase would act on the POST.
    request = httpx.Request(
        "POST",
        HOST + "/v2/accounts/BTC/transactions",
        headers={"X-HTTP-Method-Override": "GET"},
        json={"type": "send", "to": "bc1q-somewhere", "amount": "1"},
    )
    assert PROFILE.classify(request).kind == "withdraw"


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
def order(body: dict[str, Any], path: str = "/orders") -> httpx.Request:
    return httpx.Request("POST", V3 + path, json=body)


def test_limit_order_intent() -> None:
    request = order(
        {
            "client_order_id": "kb-1",
            "product_id": "BTC-USD",
            "side": "BUY",
            "leverage": "3",
            "order_configuration": {
                "limit_limit_gtc": {
                    "base_size": "0.015",
                    "limit_price": "43210.5",
                    "post_only": True,
                }
            },
        }
    )
    assert PROFILE.parse_order(request) == [
        OrderIntent(
            symbol="BTC-USD",
            side="buy",
            type="limit",
            quantity=Decimal("0.015"),
            price=Decimal("43210.5"),
            client_order_id="kb-1",
            leverage=Decimal("3"),
        )
    ]


def test_market_stop_limit_close_and_edit_intents() -> None:
    (market,) = PROFILE.parse_order(
        order(
            {
                "product_id": "ETH-USD",
                "side": "SELL",
                "order_configuration": {"market_market_ioc": {"quote_size": "100.25"}},
            }
        )
    )
    assert (market.type, market.quote_quantity, market.quantity) == (
        "market",
        Decimal("100.25"),
        None,
    )
    (stop,) = PROFILE.parse_order(
        order(
            {
                "product_id": "BTC-PERP-INTX",
                "side": "SELL",
                "order_configuration": {
                    "stop_limit_stop_limit_gtc": {
                        "base_size": "1",
                        "limit_price": "2000",
                        "stop_price": "2005",
                        "reduce_only": True,
                    }
                },
            }
        )
    )
    assert (stop.type, stop.price, stop.reduce_only) == ("stop_limit", Decimal("2000"), True)
    (close,) = PROFILE.parse_order(
        order(
            {"client_order_id": "c", "product_id": "BIT-28JUL23-CDE", "size": "2"},
            "/orders/close_position",
        )
    )
    assert (close.symbol, close.type, close.quantity, close.reduce_only) == (
        "BIT-28JUL23-CDE",
        "market",
        Decimal("2"),
        True,
    )
    (edit,) = PROFILE.parse_order(
        order({"order_id": "o", "price": "10", "size": "3"}, "/orders/edit")
    )
    assert (edit.symbol, edit.price, edit.quantity) == ("", Decimal("10"), Decimal("3"))


@pytest.mark.parametrize(
    "body",
    [
        b'{"product_id":"BTC-USD","order_configuration":{}}',
        b'{"product_id":"BTC-USD","order_configuration":{"market_market_ioc":{"base_size":"1"},'
        b'"limit_limit_gtc":{"base_size":"9","limit_price":"1"}}}',
        b'{"product_id":"BTC-USD","product_id":"ETH-USD","order_configuration":'
        b'{"market_market_ioc":{"base_size":"1"}}}',
        b'{"product_id":"BTC-USD","order_configuration":{"market_market_ioc":{"base_size":"x"}}}',
        b"[]",
    ],
)
def test_ambiguous_orders_are_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(httpx.Request("POST", V3 + "/orders", content=body))


def test_non_orders_have_no_intents() -> None:
    assert PROFILE.parse_order(order({"order_ids": ["a"]}, "/orders/batch_cancel")) == []
    assert PROFILE.parse_order(httpx.Request("GET", V3 + "/accounts")) == []


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (401, b"Unauthorized\n", AuthenticationFailed, "401"),
        (
            401,
            b'{"error":"unauthorized","message":"invalid jwt"}',
            AuthenticationFailed,
            "unauthorized",
        ),
        (
            401,
            b'{"errors":[{"id":"expired_token","message":"expired"}]}',
            TimestampOutsideWindow,
            "expired_token",
        ),
        (
            403,
            b'{"error":"PERMISSION_DENIED","message":"no"}',
            AuthenticationFailed,
            "PERMISSION_DENIED",
        ),
        (429, b'{"error":"rate_limit_exceeded"}', RateLimitedUpstream, "rate_limit_exceeded"),
        (400, b'{"error":"INVALID_ARGUMENT","message":"bad"}', OrderRejected, "INVALID_ARGUMENT"),
        (
            404,
            b'{"errors":[{"id":"not_found","message":"Not found"}]}',
            ExchangeRejected,
            "not_found",
        ),
        (503, b"<html>", ExchangeUnavailable, "503"),
        (
            200,
            b'{"success":false,"error_response":{"error":"INSUFFICIENT_FUND","message":"x"}}',
            InsufficientBalance,
            "INSUFFICIENT_FUND",
        ),
        (
            200,
            b'{"success":false,"error_response":{"error":"UNKNOWN_FAILURE_REASON",'
            b'"preview_failure_reason":"PREVIEW_INVALID_LIMIT_PRICE"}}',
            OrderRejected,
            "PREVIEW_INVALID_LIMIT_PRICE",
        ),
    ],
)
def test_errors_map_to_typed_errors(status: int, body: bytes, kind: type, code: str) -> None:
    error = PROFILE.map_error(status, body, {"Retry-After": "2"})
    assert type(error) is kind
    assert error is not None and error.code == code and error.exchange == "coinbase"
    if isinstance(error, RateLimitedUpstream):
        assert error.retry_after == 2.0


def test_successes_are_not_errors() -> None:
    assert PROFILE.map_error(200, b'{"success":true,"success_response":{"order_id":"o"}}') is None
    # A batch cancel reports per-order failures; the answer itself is a success.
    body = b'{"results":[{"success":false,"failure_reason":"UNKNOWN_CANCEL_ORDER","order_id":"o"}]}'
    assert PROFILE.map_error(200, body) is None


# -- key permissions -----------------------------------------------------------------------------
def test_permission_request_and_answer() -> None:
    assert PROFILE.permission_request is not None
    request = PROFILE.permission_request("production")
    assert (request.method, str(request.url)) == ("GET", V3 + "/key_permissions")
    signed = PROFILE.sign(request, es256(), now_ms=NOW_MS)
    assert decode_jwt(signed)[1]["uri"] == "GET api.coinbase.com/api/v3/brokerage/key_permissions"
    assert PROFILE.classify(signed).kind == "account_read"
    body = (
        b'{"can_view":true,"can_trade":true,"can_transfer":false,'
        b'"portfolio_uuid":"p","portfolio_type":"DEFAULT"}'
    )
    permissions = PROFILE.permissions(body)
    assert (permissions.can_read, permissions.can_trade, permissions.can_withdraw) == (
        True,
        True,
        False,
    )
    assert permissions.ip_restricted is None
    assert PROFILE.permissions(
        body.replace(b'"can_transfer":false', b'"can_transfer":true')
    ).can_withdraw
    with pytest.raises(InvalidInput):
        PROFILE.permissions(b'{"can_view":true,"can_trade":true}')
