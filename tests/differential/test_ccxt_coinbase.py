"""Coinbase Advanced Trade: our JWT signer against ccxt's, used as an oracle.

ccxt builds each request with PLACEHOLDER credentials; our signer re-signs it
with the throwaway test key. ECDSA signatures are randomized and the claim
layouts differ on purpose, so tokens are not compared as strings: the URL,
method and body must be ccxt's byte for byte, both tokens must verify with the
test key's public half, and the claims that mean the same thing (subject, key
id, JWT nonce, validity window, URI) must be equal.

Where we differ on purpose (exchange-auth.md §7.1, §13.4): we follow the
official SDK layout, ``iss: "cdp"``, a single ``uri`` claim and no ``aud`` or
``iat``; ccxt sends ``iss: "coinbase-cloud"`` and ``aud:
["retail_rest_api_proxy"]`` for ES256 keys, and ``aud: ["cdp_service"]`` with a
``uris`` list for Ed25519 keys. ``coinbase_accepts`` below writes down what
Coinbase checks (signature by the key, the URI, the time window) without our
signer, and our requests pass it.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any, cast

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keybroker.exchanges import get_profile
from keybroker.model import Credential, KeyType
from keybroker.secret import Secret

ccxt = pytest.importorskip("ccxt")

PROFILE = get_profile("coinbase")
NOW_S = 1_700_000_000
NONCE = 0xC0FFEE
JWT_NONCE = f"{NONCE:064x}"


def ec_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def cdp_ed25519_secret(key: ed25519.Ed25519PrivateKey) -> str:
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(seed + public).decode()


# Throwaway keys generated for this run; the placeholders are other throwaway keys.
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
KEYS = {
    "es256": (
        "organizations/keybroker-test-org/apiKeys/keybroker-test-key-not-real",
        ec_pem(EC_KEY),
        "organizations/placeholder/apiKeys/placeholder",
        ec_pem(ec.generate_private_key(ec.SECP256R1())),
    ),
    "ed25519": (
        "00000000-0000-4000-8000-00000000beef",
        cdp_ed25519_secret(ED_KEY),
        "00000000-0000-4000-8000-000000000000",
        cdp_ed25519_secret(ed25519.Ed25519PrivateKey.generate()),
    ),
}


def ccxt_sign(
    path: str, method: str, params: dict[str, Any], *, api_key: str, secret: str, jwt_nonce: str
) -> dict[str, Any]:
    exchange = ccxt.coinbase({"apiKey": api_key, "secret": secret})
    exchange.seconds = lambda: NOW_S
    exchange.random_bytes = lambda length: jwt_nonce
    version = "v2" if path.startswith("v2:") else "v3"
    signed: dict[str, Any] = exchange.sign(
        path.removeprefix("v2:"), [version, "private"], method, copy.deepcopy(params)
    )
    return signed


def to_request(signed: dict[str, Any]) -> httpx.Request:
    body = signed["body"]
    return httpx.Request(
        signed["method"],
        signed["url"],
        headers=signed["headers"],
        content=body.encode("utf-8") if body is not None else None,
    )


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_parts(request: httpx.Request) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    token = request.headers["Authorization"].removeprefix("Bearer ")
    header, claims, signature = token.split(".")
    return (
        json.loads(b64url_decode(header)),
        json.loads(b64url_decode(claims)),
        f"{header}.{claims}".encode(),
        b64url_decode(signature),
    )


def signature_valid(request: httpx.Request) -> bool:
    header, _, signing_input, signature = token_parts(request)
    try:
        if header["alg"] == "ES256":
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            der = encode_dss_signature(r, s)
            EC_KEY.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            ED_KEY.public_key().verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True


def coinbase_accepts(request: httpx.Request, key_name: str, now_s: int) -> bool:
    """What Coinbase checks of a CDP JWT, written from its docs and the SDK, not from our code."""
    header, claims, _, _ = token_parts(request)
    uri = f"{request.method} {request.url.host}{request.url.path}"
    uris = claims.get("uris", [claims.get("uri")])
    return (
        signature_valid(request)
        and header["kid"] == claims["sub"] == key_name
        and uri in uris
        and claims["nbf"] <= now_s < claims["exp"]
        and claims["exp"] - claims["nbf"] <= 120
    )


CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "create-order-json-escaping": (
        "brokerage/orders",
        "POST",
        {
            "client_order_id": 'kb-"1"\\é',
            "product_id": "BTC-USD",
            "side": "BUY",
            "order_configuration": {
                "limit_limit_gtc": {
                    "base_size": "0.015",
                    "limit_price": "43210.5",
                    "post_only": True,
                }
            },
        },
    ),
    "get-with-query-and-url-encoding": (
        "brokerage/orders/historical/batch",
        "GET",
        {"product_ids": ["BTC-USD", "ETH-USD"], "order_status": "OPEN", "cursor": "a b/é&c"},
    ),
    "cancel": ("brokerage/orders/batch_cancel", "POST", {"order_ids": ["o-1", "o-2"]}),
    "permission-endpoint": ("brokerage/key_permissions", "GET", {}),
    "v2-read": ("v2:accounts/{account_id}/transactions", "GET", {"account_id": "BTC", "limit": 5}),
}


@pytest.mark.parametrize("key_type", ["es256", "ed25519"])
@pytest.mark.parametrize(("path", "method", "params"), CASES.values(), ids=list(CASES))
def test_same_request_and_equivalent_token(
    key_type: str, path: str, method: str, params: dict[str, Any]
) -> None:
    key_name, secret, placeholder_name, placeholder_secret = KEYS[key_type]
    placeholder = ccxt_sign(
        path, method, params, api_key=placeholder_name, secret=placeholder_secret, jwt_nonce="00"
    )
    theirs = to_request(
        ccxt_sign(path, method, params, api_key=key_name, secret=secret, jwt_nonce=JWT_NONCE)
    )
    credential = Credential(
        "c", "coinbase", key_name, Secret(secret), key_type=cast(KeyType, key_type)
    )
    ours = PROFILE.sign(to_request(placeholder), credential, now_ms=NOW_S * 1000 + 999, nonce=NONCE)

    assert (ours.method, str(ours.url), ours.read()) == (
        theirs.method,
        str(theirs.url),
        theirs.read(),
    )
    assert ours.headers.get("Content-Type") == theirs.headers.get("Content-Type")
    our_header, our_claims, _, _ = token_parts(ours)
    their_header, their_claims, _, _ = token_parts(theirs)
    for name in ("alg", "kid", "nonce", "typ"):
        assert our_header[name] == their_header[name]
    for name in ("sub", "nbf", "exp"):
        assert our_claims[name] == their_claims[name]
    assert [our_claims["uri"]] == their_claims.get("uris", [their_claims.get("uri")])
    assert signature_valid(ours) and signature_valid(theirs)
    # The deliberate difference, and that our form is what Coinbase accepts.
    assert sorted(our_claims) == ["exp", "iss", "nbf", "sub", "uri"]
    assert our_claims["iss"] == "cdp"
    assert "aud" in their_claims and "iat" in their_claims
    assert coinbase_accepts(ours, key_name, NOW_S)
    assert coinbase_accepts(theirs, key_name, NOW_S)


def test_accept_rule_rejects_what_it_should() -> None:
    key_name, secret, _, _ = KEYS["ed25519"]
    credential = Credential("c", "coinbase", key_name, Secret(secret), key_type="ed25519")
    signed = PROFILE.sign(
        httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/accounts"),
        credential,
        now_ms=NOW_S * 1000,
    )
    assert coinbase_accepts(signed, key_name, NOW_S)
    assert not coinbase_accepts(signed, key_name, NOW_S + 120)  # expired
    replayed = httpx.Request(
        "GET",
        "https://api.coinbase.com/v2/accounts",
        headers={"Authorization": signed.headers["Authorization"]},
    )
    assert not coinbase_accepts(replayed, key_name, NOW_S)  # bound to another URI
