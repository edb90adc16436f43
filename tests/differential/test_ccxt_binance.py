"""Binance: our signer against ccxt's, used as an oracle.

ccxt signs with a throwaway secret and a frozen clock; our signer gets the
request ccxt built with PLACEHOLDER credentials and must produce ccxt's real
signature and otherwise the same request, byte for byte (timestamp replaced
in place, recvWindow and every other parameter kept, signature last).

Deliberate differences, each shown to verify under Binance's own rule (the
``binance_verifies`` below, written from Binance's docs, not from our signer):

* ccxt puts ``batchOrders`` JSON into the form body without encoding it, and
  signs SAPI sub-account requests over the un-encoded values (``rawencode``).
  Since 2026-01-15 Binance verifies the percent-encoded payload, so we encode
  what is not valid in a query (quotes, brackets, braces, spaces, non-ASCII)
  and sign that. For the sub-account case ccxt's own request does not even
  verify: httpx encodes the URL it is given, so the bytes sent are not the
  bytes ccxt signed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from typing import Any
from urllib.parse import parse_qsl

import ccxt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from keybroker.exchanges import binance
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = binance.PROFILE
API_KEY = "keybroker-test-binance-key-not-real"
SECRET = "FAKEkeybrokerBinanceSecret0123456789abcdefNOTREAL0123456789abcd"
PLACEHOLDER_KEY = "placeholder-key"
PLACEHOLDER_SECRET = "placeholder-secret"
NOW = 1_700_000_000_123


def ccxt_sign(
    api: str, path: str, method: str, params: dict[str, Any], *, api_key: str, secret: str
) -> dict[str, Any]:
    exchange = ccxt.binance({"apiKey": api_key, "secret": secret})
    exchange.nonce = lambda: NOW
    exchange.milliseconds = lambda: NOW
    signed: dict[str, Any] = exchange.sign(path, [api], method, copy.deepcopy(params))
    return signed


def as_request(signed: dict[str, Any]) -> httpx.Request:
    body = signed["body"]
    return httpx.Request(
        signed["method"],
        signed["url"],
        headers=signed["headers"] or {},
        content=body.encode("utf-8") if body is not None else b"",
    )


def credential(secret: str = SECRET, key_type: str = "hmac") -> Credential:
    return Credential("b", "binance", API_KEY, Secret(secret), key_type=key_type)  # type: ignore[arg-type]


def ours(
    api: str, path: str, method: str, params: dict[str, Any], cred: Credential
) -> httpx.Request:
    placeholder = ccxt_sign(
        api, path, method, params, api_key=PLACEHOLDER_KEY, secret=PLACEHOLDER_SECRET
    )
    return PROFILE.sign(as_request(placeholder), cred, now_ms=NOW)


_PERCENT_ENCODED = re.compile(rb"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$")


def payload_and_signature(request: httpx.Request) -> tuple[bytes, bytes]:
    query, body = request.url.query, request.read()
    last = body if body else query
    head, sep, signature = last.rpartition(b"signature=")
    assert sep and (not head or head.endswith(b"&")), "signature must be the last parameter"
    head = head[:-1] if head else head
    return (query + head, signature) if body else (head, signature)


def binance_verifies(secret: str, request: httpx.Request) -> bool:
    """Binance's server-side rule, from its docs: HMAC-SHA256 hex over the percent-encoded
    query string followed by the form body as received, minus the signature parameter."""
    payload, signature = payload_and_signature(request)
    if not _PERCENT_ENCODED.match(payload):
        return False
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.decode().lower())


def decoded(request: httpx.Request) -> list[tuple[str, str]]:
    pairs = parse_qsl(request.url.query.decode(), keep_blank_values=True)
    pairs += parse_qsl(request.read().decode("utf-8"), keep_blank_values=True)
    return [pair for pair in pairs if pair[0] != "signature"]


SAME_AS_CCXT = [
    pytest.param(
        "private",
        "order",
        "POST",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.00150000",
            "price": "30000.01",
            "newClientOrderId": "kb-0001",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        },
        id="spot-order-several-params",
    ),
    pytest.param(
        "private",
        "order",
        "POST",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "1",
            "price": "31000",
            "newClientOrderId": "a b/c:d~é&x=y",
        },
        id="spot-order-value-needing-encoding",
    ),
    pytest.param(
        "private",
        "order",
        "POST",
        {
            "symbol": "１２３４５６",
            "side": "BUY",
            "type": "MARKET",
            "quoteOrderQty": "10",
            "newClientOrderId": "kb-2",
        },
        id="spot-order-non-ascii-symbol",
    ),
    pytest.param(
        "private",
        "allOrders",
        "GET",
        {"symbol": "BTCUSDT", "limit": 5, "startTime": 1},
        id="spot-get-query",
    ),
    pytest.param(
        "private", "order", "DELETE", {"symbol": "BTCUSDT", "orderId": "123456"}, id="spot-cancel"
    ),
    pytest.param("private", "openOrders", "DELETE", {"symbol": "ETHUSDT"}, id="spot-cancel-all"),
    pytest.param(
        "private",
        "orderList/oco",
        "POST",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "quantity": "1",
            "aboveType": "LIMIT_MAKER",
            "abovePrice": "40000",
            "belowType": "STOP_LOSS",
            "belowStopPrice": "29000",
            # Given, so that ccxt does not draw random broker ids.
            "listClientOrderId": "kb-list-1",
            "aboveClientOrderId": "kb-above-1",
            "belowClientOrderId": "kb-below-1",
        },
        id="spot-oco",
    ),
    pytest.param("sapi", "account/apiRestrictions", "GET", {}, id="permission-endpoint"),
    pytest.param(
        "fapiPrivate",
        "order",
        "POST",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "positionSide": "BOTH",
            "type": "LIMIT",
            "timeInForce": "GTX",
            "quantity": "0.010",
            "price": "35000.5",
            "reduceOnly": "true",
            "newClientOrderId": "kb:fut/1",
        },
        id="usdm-order",
    ),
    pytest.param("fapiPrivateV2", "positionRisk", "GET", {"symbol": "BTCUSDT"}, id="usdm-get"),
    pytest.param(
        "fapiPrivate",
        "order",
        "DELETE",
        {"symbol": "BTCUSDT", "origClientOrderId": "kb:fut/1"},
        id="usdm-cancel",
    ),
]


@pytest.mark.parametrize(("api", "path", "method", "params"), SAME_AS_CCXT)
def test_hmac_signature_is_ccxts(api: str, path: str, method: str, params: dict[str, Any]) -> None:
    theirs = as_request(ccxt_sign(api, path, method, params, api_key=API_KEY, secret=SECRET))
    signed = ours(api, path, method, params, credential())
    assert signed.method == theirs.method
    assert signed.url == theirs.url
    assert signed.url.raw_path == theirs.url.raw_path
    assert signed.read() == theirs.read()
    assert signed.headers.get_list("X-MBX-APIKEY") == [API_KEY]
    assert binance_verifies(SECRET, signed)
    # And signing ccxt's real request again changes nothing.
    assert PROFILE.sign(signed, credential(), now_ms=NOW).read() == signed.read()


def _pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@pytest.fixture(scope="module")
def rsa_secret() -> str:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ed25519_secret() -> str:
    return _pem(ed25519.Ed25519PrivateKey.generate())


@pytest.mark.parametrize(("api", "path", "method", "params"), SAME_AS_CCXT[:5])
def test_rsa_and_ed25519_signatures_are_ccxts(
    api: str,
    path: str,
    method: str,
    params: dict[str, Any],
    rsa_secret: str,
    ed25519_secret: str,
) -> None:
    # RSASSA-PKCS1-v1_5 and Ed25519 are deterministic: the bytes must match.
    for secret, key_type in ((rsa_secret, "rsa"), (ed25519_secret, "ed25519")):
        theirs = as_request(ccxt_sign(api, path, method, params, api_key=API_KEY, secret=secret))
        signed = ours(api, path, method, params, credential(secret, key_type))
        assert signed.url == theirs.url, key_type
        assert signed.read() == theirs.read(), key_type


def test_batch_orders_deliberately_encoded_and_verifying() -> None:
    params = {
        "batchOrders": [
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.01",
                "price": "30000",
                "timeInForce": "GTC",
                "newClientOrderId": "kb-b1",
            },
            {
                "symbol": "ETHUSDT",
                "side": "SELL",
                "type": "MARKET",
                "quantity": "0.5",
                "reduceOnly": "true",
                "newClientOrderId": "kb-b2",
            },
        ]
    }
    theirs = as_request(
        ccxt_sign("fapiPrivate", "batchOrders", "POST", params, api_key=API_KEY, secret=SECRET)
    )
    signed = ours("fapiPrivate", "batchOrders", "POST", params, credential())
    # ccxt sends the JSON raw: not the percent-encoded form the 2026 rule verifies.
    assert b'batchOrders=[{"symbol"' in theirs.read()
    assert not binance_verifies(SECRET, theirs)
    # Ours sends the same parameters, percent-encoded, and verifies.
    assert b"batchOrders=%5B%7B%22symbol%22" in signed.read()
    assert binance_verifies(SECRET, signed)
    assert decoded(signed) == decoded(theirs)
    assert [intent.symbol for intent in PROFILE.parse_order(signed)] == ["BTCUSDT", "ETHUSDT"]


def test_sub_account_values_deliberately_encoded_and_verifying() -> None:
    params = {"email": "bot ü@example.com"}
    raw = ccxt_sign("sapiV3", "sub-account/assets", "GET", params, api_key=API_KEY, secret=SECRET)
    assert "email=bot ü@example.com" in raw["url"]  # what ccxt signed: un-encoded
    theirs = as_request(raw)
    # httpx encodes the URL it is given, so ccxt's request carries other bytes than it signed.
    assert b"email=bot%20%C3%BC@example.com" in theirs.url.query
    assert not binance_verifies(SECRET, theirs)
    signed = ours("sapiV3", "sub-account/assets", "GET", params, credential())
    assert signed.url.query.startswith(
        b"timestamp=%d&email=bot%%20%%C3%%BC@example.com&recvWindow=10000&signature=" % NOW
    )
    assert binance_verifies(SECRET, signed)
    assert decoded(signed) == decoded(theirs)
