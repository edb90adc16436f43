"""Binance: published vectors and twins, wire rules, catalogue, intents, errors, permissions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.crypto.signing import ed25519_b64
from keybroker.errors import (
    AuthenticationFailed,
    ExchangeRejected,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidInput,
    IPBanned,
    OrderRejected,
    RateLimitedUpstream,
    SigningError,
    TimestampOutsideWindow,
)
from keybroker.exchanges import binance, get_profile
from keybroker.exchanges._wire import HTTPX_INTERNALS_MATCH
from keybroker.exchanges.base import DANGEROUS_KINDS, METHOD_OVERRIDE_HEADERS, OrderIntent
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("binance")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "binance.json").read_text("utf-8")
)
BY_ID = {vector["id"]: vector for vector in VECTORS["vectors"]}
PUBLISHED = [vector for vector in VECTORS["vectors"] if vector["kind"] == "published"]
# Throwaway key: Binance's documented example key pair.
API_KEY = BY_ID["binance-spot-rest-hmac-ascii-body"]["credential"]["api_key"]
SECRET = BY_ID["binance-spot-rest-hmac-ascii-body"]["credential"]["secret"]
SPOT = "https://api.binance.com"
FAPI = "https://fapi.binance.com"
NOW = 1_700_000_000_123
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def credential(secret: str = SECRET, api_key: str = API_KEY, key_type: str = "hmac") -> Credential:
    return Credential("b", "binance", api_key, Secret(secret), key_type=key_type)  # type: ignore[arg-type]


def request_of(spec: dict[str, Any]) -> httpx.Request:
    return httpx.Request(
        spec["method"],
        spec["url"],
        headers=spec.get("headers", {}),
        content=spec.get("body", "").encode("utf-8"),
    )


def split_signed(request: httpx.Request) -> tuple[bytes, bytes]:
    """(payload, signature value) as Binance reads them: the signature is the last parameter."""
    query = request.url.query
    body = request.read()
    if body:
        head, _, signature = body.rpartition(b"&signature=")
        if not _:
            head, signature = b"", body.removeprefix(b"signature=")
        return query + head, signature
    head, sep, signature = query.rpartition(b"&signature=")
    if not sep:
        head, signature = b"", query.removeprefix(b"signature=")
    return head, signature


_PERCENT_ENCODED = re.compile(rb"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$")


def binance_verifies(secret: str, request: httpx.Request) -> bool:
    """Binance's server-side check, from its docs and independent of our signer.

    The payload is the query string followed by the form body, exactly as
    received, without the signature parameter; it must be in percent-encoded
    form (2026 rule); the signature is the hex HMAC-SHA256 of it (any case),
    carried by exactly one ``signature`` parameter; the API key comes in
    ``X-MBX-APIKEY`` exactly once.
    """
    payload, signature = split_signed(request)
    everything = request.url.query + b"&" + request.read()
    if everything.count(b"signature=") != 1 or not _PERCENT_ENCODED.match(payload):
        return False
    if len(request.headers.get_list("x-mbx-apikey")) != 1:
        return False
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.decode().lower())


def params_of(request: httpx.Request) -> list[tuple[str, str]]:
    """Decoded parameters as Binance's server sees them (query, then body)."""
    return parse_qsl(request.url.query.decode(), keep_blank_values=True) + parse_qsl(
        request.read().decode(), keep_blank_values=True
    )


def wire(request: httpx.Request) -> tuple[str, bytes, list[tuple[bytes, bytes]], bytes]:
    return request.method, request.url.raw_path, request.headers.raw, request.read()


# -- published vectors ------------------------------------------------------------------
@pytest.mark.parametrize("vector", PUBLISHED, ids=lambda v: v["id"])
def test_published_vector_matches_exactly(vector: dict[str, Any]) -> None:
    cred = credential(vector["credential"]["secret"], vector["credential"]["api_key"])
    signed = PROFILE.sign(request_of(vector["request"]), cred, now_ms=vector["now_ms"])
    payload, signature = split_signed(signed)
    assert payload.decode() == vector["expected"]["payload"]
    assert signature.decode() == vector["expected"]["signature"]
    if "url" in vector["expected"]:
        assert str(signed.url) == vector["expected"]["url"]
        assert signed.read().decode() == vector["expected"]["body"]
    assert signed.headers["X-MBX-APIKEY"] == vector["credential"]["api_key"]
    assert binance_verifies(vector["credential"]["secret"], signed)


@pytest.mark.parametrize("vector", PUBLISHED, ids=lambda v: v["id"])
def test_published_vector_twins_fail(vector: dict[str, Any]) -> None:
    secret = vector["credential"]["secret"]
    wrong_secret = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    signed = PROFILE.sign(
        request_of(vector["request"]), credential(wrong_secret), now_ms=vector["now_ms"]
    )
    assert split_signed(signed)[1].decode() != vector["expected"]["signature"]
    assert not binance_verifies(secret, signed)
    # One byte of the payload changed (the last digit of the timestamp).
    signed = PROFILE.sign(
        request_of(vector["request"]), credential(secret), now_ms=vector["now_ms"] + 1
    )
    assert split_signed(signed)[1].decode() != vector["expected"]["signature"]


def test_unencoded_payload_is_the_published_counter_example() -> None:
    vector = BY_ID["binance-spot-rest-hmac-nonascii-percent-encoded"]
    counter = vector["counter_example"]
    raw = counter["payload_signed_without_percent_encoding"].encode("utf-8")
    assert hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest() == counter["signature"]
    signed = PROFILE.sign(request_of(vector["request"]), credential(), now_ms=vector["now_ms"])
    assert split_signed(signed)[1].decode() != counter["signature"]


def test_fix_ed25519_vector_pins_the_primitive() -> None:
    vector = BY_ID["binance-fix-logon-ed25519"]
    payload = vector["separator"].join(vector["payload_fields"]).encode("ascii")
    pem = vector["private_key_pem"].encode("ascii")
    assert ed25519_b64(pem, payload) == vector["expected"]["signature_base64"]
    assert ed25519_b64(pem, payload[:-1] + b"4") != vector["expected"]["signature_base64"]


def test_unreproducible_rsa_vector_is_rsa_2048_shaped() -> None:
    signature = BY_ID["binance-spot-rest-rsa-ascii"]["expected"]["signature_base64"]
    assert len(base64.b64decode(signature)) == 256


# -- signer: where things go ----------------------------------------------------------------
def test_foreign_auth_fields_are_replaced_and_everything_else_kept_in_order() -> None:
    # What ccxt sends when given placeholder credentials: timestamp first, a
    # stale signature last, its own recvWindow, the placeholder key twice.
    body = (
        b"timestamp=1&symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.5&price=30000"
        b"&newClientOrderId=a/b:c&recvWindow=10000&signature=deadbeef"
    )
    request = httpx.Request(
        "POST",
        f"{SPOT}/api/v3/order",
        content=body,
        headers=[
            ("X-MBX-APIKEY", "placeholder"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("x-mbx-apikey", "placeholder-2"),
            ("User-Agent", "bot/1"),
        ],
    )
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    sent = signed.read()
    assert sent.startswith(b"timestamp=%d&symbol=BTCUSDT&side=BUY" % NOW)
    assert b"&newClientOrderId=a/b:c&recvWindow=10000&signature=" in sent
    assert sent.count(b"signature=") == 1 and b"deadbeef" not in sent
    assert signed.headers.get_list("X-MBX-APIKEY") == [API_KEY]
    assert signed.headers["User-Agent"] == "bot/1"
    assert signed.headers["Content-Length"] == str(len(sent))
    assert binance_verifies(SECRET, signed)


def test_query_only_requests_get_timestamp_and_signature_in_the_query() -> None:
    request = httpx.Request("DELETE", f"{SPOT}/api/v3/order?symbol=BTCUSDT&orderId=42")
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    assert signed.read() == b""
    assert signed.url.query.startswith(b"symbol=BTCUSDT&orderId=42&timestamp=%d&signature=" % NOW)
    assert "content-length" not in signed.headers
    assert binance_verifies(SECRET, signed)


def test_empty_post_gets_its_timestamp_in_the_body() -> None:
    signed = PROFILE.sign(
        httpx.Request("POST", f"{SPOT}/sapi/v1/asset/get-funding-asset"), credential(), now_ms=NOW
    )
    assert signed.url.query == b""
    assert signed.read().startswith(b"timestamp=%d&signature=" % NOW)
    assert signed.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert binance_verifies(SECRET, signed)


def test_timestamp_in_query_wins_and_the_body_copy_goes() -> None:
    request = httpx.Request(
        "POST",
        f"{SPOT}/api/v3/order?symbol=BTCUSDT&timestamp=5",
        content=b"side=SELL&timestamp=6&quantity=1",
        headers=FORM,
    )
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    assert signed.url.query == b"symbol=BTCUSDT&timestamp=%d" % NOW
    assert signed.read().startswith(b"side=SELL&quantity=1&signature=")
    assert binance_verifies(SECRET, signed)


def test_percent_encoded_auth_names_are_auth_fields_too() -> None:
    request = httpx.Request(
        "GET", f"{SPOT}/api/v3/account?%73ignature=abc&omitZeroBalances=true&%74imestamp=9"
    )
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    query = signed.url.query
    assert b"%73ignature" not in query and b"%74imestamp" not in query
    assert query.startswith(b"omitZeroBalances=true&timestamp=%d&signature=" % NOW)
    assert binance_verifies(SECRET, signed)


def test_bytes_that_are_not_percent_encoded_get_encoded_and_valid_ones_stay() -> None:
    body = 'symbol=BTCUSDT&newClientOrderId=x/y:z@w!&note=a b"{é}%zz&ok=%2F%41'.encode()
    request = httpx.Request("POST", f"{SPOT}/api/v3/order", content=body, headers=FORM)
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    sent = signed.read()
    assert sent.startswith(
        b"symbol=BTCUSDT&newClientOrderId=x/y:z@w!&note=a%20b%22%7B%C3%A9%7D%25zz&ok=%2F%41&"
    )
    assert binance_verifies(SECRET, signed)
    # Decoded, the parameters are what the bot meant.
    assert ("note", 'a b"{é}%zz') in params_of(signed)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=64))
def test_percent_encoding_is_idempotent_and_keeps_the_meaning(raw: bytes) -> None:
    once = binance.percent_encode_payload(raw)
    assert binance.percent_encode_payload(once) == once
    assert _PERCENT_ENCODED.match(once)
    assert unquote_to_bytes(once) == unquote_to_bytes(raw)


def test_signed_query_bytes_are_the_bytes_httpx_sends() -> None:
    request = httpx.Request(
        "GET", f"{SPOT}/api/v3/allOrders?symbol=１２３&limit=5&x=[a]|b^c`d\\e{{f}}"
    )
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    payload, _ = split_signed(signed)
    # The URL carries exactly the signed payload, and httpx does not re-encode
    # it when it builds a request from that URL again.
    assert signed.url.query.startswith(payload + b"&signature=")
    again = httpx.Request("GET", str(signed.url))
    assert again.url.query == signed.url.query
    assert again.url.raw_path == signed.url.raw_path
    assert binance_verifies(SECRET, signed)


def test_fast_request_builder_matches_httpx_constructors() -> None:
    assert HTTPX_INTERNALS_MATCH  # the fast path is the one under test
    request = httpx.Request(
        "POST",
        f"{SPOT}/api/v3/order?symbol=BTCUSDT",
        content=b"side=BUY",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Extra": "1"},
        extensions={"timeout": {"connect": 1.0}},
    )
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    public = httpx.Request(
        signed.method,
        str(signed.url),
        headers=signed.headers.raw,
        content=signed.read(),
        extensions=signed.extensions,
    )
    assert set(vars(signed)) == set(vars(public))
    assert wire(signed) == wire(public)
    assert b"".join(signed.stream) == public.read()  # type: ignore[arg-type]
    assert signed.extensions == {"timeout": {"connect": 1.0}}


_NAME = st.text(alphabet="abcdefgXYZ", min_size=1, max_size=6)
# Any text but separators and what a URL cannot carry at all (controls, "#").
_VALUE = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="#&="),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    params=st.lists(st.tuples(_NAME, _VALUE), max_size=6),
    in_body=st.lists(st.booleans(), min_size=6, max_size=6),
    method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]),
    stale=st.sampled_from(["none", "timestamp", "signature", "both"]),
    now_ms=st.integers(min_value=1, max_value=2**53),
)
def test_signing_is_deterministic_idempotent_and_verifies(
    params: list[tuple[str, str]],
    in_body: list[bool],
    method: str,
    stale: str,
    now_ms: int,
) -> None:
    pairs = [(name, value) for name, value in params]
    if stale in ("timestamp", "both"):
        pairs.insert(len(pairs) // 2, ("timestamp", "123"))
    if stale in ("signature", "both"):
        pairs.append(("signature", "stale"))
    query = [f"{n}={v}" for (n, v), b in zip(pairs, in_body + [False] * 2, strict=False) if not b]
    body = [f"{n}={v}" for (n, v), b in zip(pairs, in_body + [False] * 2, strict=False) if b]
    url = f"{SPOT}/api/v3/order" + ("?" + "&".join(query) if query else "")
    request = httpx.Request(method, url, content="&".join(body).encode("utf-8"), headers=FORM)
    signed = PROFILE.sign(request, credential(), now_ms=now_ms)
    assert wire(PROFILE.sign(request, credential(), now_ms=now_ms)) == wire(signed)
    assert wire(PROFILE.sign(signed, credential(), now_ms=now_ms)) == wire(signed)
    assert binance_verifies(SECRET, signed)
    decoded = params_of(signed)
    assert [pair for pair in decoded if pair[0] == "timestamp"] == [("timestamp", str(now_ms))]


def test_public_and_key_only_endpoints_carry_the_key_but_no_signature() -> None:
    depth = PROFILE.sign(
        httpx.Request("GET", f"{SPOT}/api/v3/depth?symbol=BTCUSDT&signature=old"),
        credential(),
        now_ms=NOW,
    )
    assert depth.url.query == b"symbol=BTCUSDT"
    assert depth.headers["X-MBX-APIKEY"] == API_KEY
    stream = PROFILE.sign(
        httpx.Request("POST", f"{FAPI}/fapi/v1/listenKey"), credential(), now_ms=NOW
    )
    assert (stream.url.query, stream.read()) == (b"", b"")
    assert stream.headers["X-MBX-APIKEY"] == API_KEY
    assert stream.headers["Content-Length"] == "0"


def test_json_bodies_and_unusable_keys_are_refused() -> None:
    json_request = httpx.Request("POST", f"{SPOT}/api/v3/order", json={"symbol": "BTCUSDT"})
    with pytest.raises(SigningError, match="form bodies"):
        PROFILE.sign(json_request, credential(), now_ms=NOW)
    with pytest.raises(SigningError, match="ASCII"):
        PROFILE.sign(
            httpx.Request("GET", f"{SPOT}/api/v3/account"), credential(api_key="clé"), now_ms=NOW
        )
    with pytest.raises(SigningError, match="es256"):
        PROFILE.sign(
            httpx.Request("GET", f"{SPOT}/api/v3/account"),
            credential(secret="x", key_type="es256"),
            now_ms=NOW,
        )


# -- RSA and Ed25519 keys ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def ed25519_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_rsa_signature_is_percent_encoded_base64_and_verifies(rsa_pem: bytes) -> None:
    request = httpx.Request(
        "POST", f"{SPOT}/api/v3/order", content=b"symbol=BTCUSDT&side=SELL&quantity=1", headers=FORM
    )
    signed = PROFILE.sign(request, credential(rsa_pem.decode(), key_type="rsa"), now_ms=NOW)
    payload, signature = split_signed(signed)
    assert not re.search(rb"[+/=]", signature)  # base64 specials are escaped
    raw = base64.b64decode(unquote(signature.decode()))
    public = serialization.load_pem_private_key(rsa_pem, None).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
    assert wire(
        PROFILE.sign(signed, credential(rsa_pem.decode(), key_type="rsa"), now_ms=NOW)
    ) == wire(signed)


def test_ed25519_signature_is_percent_encoded_base64_and_verifies(ed25519_pem: bytes) -> None:
    request = httpx.Request("GET", f"{FAPI}/fapi/v2/account?recvWindow=5000")
    signed = PROFILE.sign(request, credential(ed25519_pem.decode(), key_type="ed25519"), now_ms=NOW)
    payload, signature = split_signed(signed)
    raw = base64.b64decode(unquote(signature.decode()))
    assert len(raw) == 64
    key = serialization.load_pem_private_key(ed25519_pem, None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    key.public_key().verify(raw, payload)
    assert payload == b"recvWindow=5000&timestamp=%d" % NOW


# -- credentials and base URLs ------------------------------------------------------------------
def test_credential_shapes(rsa_pem: bytes, ed25519_pem: bytes) -> None:
    PROFILE.check_credential(API_KEY, Secret(SECRET), None, "hmac")
    PROFILE.check_credential(API_KEY, Secret(rsa_pem), None, "rsa")
    PROFILE.check_credential(API_KEY, Secret(ed25519_pem), None, "ed25519")
    with pytest.raises(InvalidInput, match="ASCII") as info:
        PROFILE.check_credential(API_KEY, Secret("sécret"), None, "hmac")
    assert "sécret" not in str(info.value)
    with pytest.raises(InvalidInput, match="rsa private key"):
        PROFILE.check_credential(API_KEY, Secret(ed25519_pem), None, "rsa")
    with pytest.raises(InvalidInput, match="not take es256"):
        PROFILE.check_credential(API_KEY, Secret("x"), None, "es256")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(  # noqa: S505
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidInput, match="2048"):
        PROFILE.check_credential(API_KEY, Secret(small), None, "rsa")
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidInput):
        PROFILE.check_credential(API_KEY, Secret(ec_key), None, "ed25519")


@pytest.mark.parametrize(
    ("path", "environment", "expected"),
    [
        ("/api/v3/order", "production", "https://api.binance.com"),
        ("/api/v3/order", "testnet", "https://testnet.binance.vision"),
        ("/api/v3/order", "demo", "https://demo-api.binance.com"),
        ("/sapi/v1/account/apiRestrictions", "production", "https://api.binance.com"),
        ("/fapi/v1/order", "production", "https://fapi.binance.com"),
        ("/fapi/v2/account", "testnet", "https://demo-fapi.binance.com"),
        ("/FAPI//v1/order", "demo", "https://demo-fapi.binance.com"),
        ("/papi/v1/bnb-transfer", "production", "https://papi.binance.com"),
    ],
)
def test_base_url_routes_by_product(path: str, environment: str, expected: str) -> None:
    assert PROFILE.base_url(path, environment) == expected


def test_base_url_refuses_what_does_not_exist() -> None:
    with pytest.raises(InvalidInput, match="only in: production"):
        PROFILE.base_url("/sapi/v1/capital/config/getall", "testnet")
    with pytest.raises(InvalidInput, match="/dapi"):
        PROFILE.base_url("/dapi/v1/order", "production")


# -- catalogue ---------------------------------------------------------------------------------
# §2.7 of the spec, the "must refuse" list, with the kind each must get.
MUST_REFUSE = [
    ("POST", "/sapi/v1/capital/withdraw/apply", "withdraw"),
    ("POST", "/sapi/v1/localentity/withdraw/apply", "withdraw"),
    ("POST", "/sapi/v1/managed-subaccount/withdraw", "withdraw"),
    ("POST", "/sapi/v1/account/enableFastWithdrawSwitch", "withdraw"),
    ("POST", "/sapi/v1/account/disableFastWithdrawSwitch", "withdraw"),
    ("POST", "/sapi/v1/asset/transfer", "transfer"),
    ("POST", "/sapi/v1/futures/transfer", "transfer"),
    ("POST", "/sapi/v1/margin/transfer", "transfer"),
    ("POST", "/sapi/v1/margin/isolated/transfer", "transfer"),
    ("POST", "/sapi/v1/asset/convert-transfer", "transfer"),
    ("POST", "/sapi/v1/sub-account/universalTransfer", "transfer"),
    ("POST", "/sapi/v1/sub-account/transfer/subToMaster", "transfer"),
    ("POST", "/sapi/v1/sub-account/transfer/subToSub", "transfer"),
    ("POST", "/sapi/v1/sub-account/futures/transfer", "transfer"),
    ("POST", "/sapi/v1/sub-account/futures/internalTransfer", "transfer"),
    ("POST", "/sapi/v1/sub-account/margin/transfer", "transfer"),
    ("POST", "/sapi/v1/broker/transfer", "transfer"),
    ("POST", "/sapi/v1/broker/transfer/futures", "transfer"),
    ("POST", "/sapi/v1/broker/universalTransfer", "transfer"),
    ("POST", "/sapi/v1/portfolio/bnb-transfer", "transfer"),
    ("POST", "/papi/v1/bnb-transfer", "transfer"),
    ("POST", "/sapi/v1/giftcard/createCode", "withdraw"),
    ("POST", "/sapi/v1/giftcard/buyCode", "withdraw"),
    ("POST", "/sapi/v1/giftcard/redeemCode", "transfer"),
    ("POST", "/sapi/v1/margin/loan", "transfer"),
    ("POST", "/sapi/v1/margin/borrow-repay", "transfer"),
    ("POST", "/sapi/v1/simple-earn/flexible/subscribe", "transfer"),
    ("POST", "/sapi/v1/staking/purchase", "transfer"),
    ("POST", "/sapi/v1/asset/dust", "transfer"),
    ("POST", "/sapi/v1/convert/acceptQuote", "transfer"),
    ("POST", "/sapi/v1/sub-account/subAccountApi/ipRestriction", "key_management"),
    ("GET", "/sapi/v1/sub-account/subAccountApi/ipRestriction", "key_management"),
    ("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction", "key_management"),
    ("DELETE", "/sapi/v1/sub-account/subAccountApi/ipRestriction/ipList", "key_management"),
    ("POST", "/sapi/v3/sub-account/subAccountApi/some-future-thing", "key_management"),
    ("POST", "/sapi/v1/broker/subAccountApi", "key_management"),
    ("DELETE", "/sapi/v1/broker/subAccountApi", "key_management"),
    ("POST", "/sapi/v1/broker/subAccountApi/permission", "key_management"),
    ("POST", "/sapi/v2/broker/subAccountApi/ipRestriction", "key_management"),
    ("POST", "/sapi/v1/account/apiRestrictions/ipRestriction", "key_management"),
]


@pytest.mark.parametrize(("method", "path", "kind"), MUST_REFUSE, ids=lambda x: str(x))
def test_every_must_refuse_endpoint_is_dangerous(method: str, path: str, kind: str) -> None:
    assert PROFILE.classify(httpx.Request(method, SPOT + path)).kind == kind


@pytest.mark.parametrize(
    ("method", "url", "kind", "weight"),
    [
        ("GET", f"{SPOT}/api/v3/time", "public", 1),
        ("GET", f"{SPOT}/api/v3/exchangeInfo", "public", 20),
        ("GET", f"{SPOT}/api/v3/depth?symbol=BTCUSDT", "public", 5),
        ("GET", f"{SPOT}/api/v3/depth?symbol=BTCUSDT&limit=500", "public", 25),
        ("GET", f"{SPOT}/api/v3/depth?symbol=BTCUSDT&limit=5000", "public", 250),
        ("GET", f"{SPOT}/api/v3/klines?symbol=BTCUSDT&interval=1m", "public", 2),
        ("GET", f"{SPOT}/api/v3/ticker/24hr?symbol=BTCUSDT", "public", 2),
        ("GET", f"{SPOT}/api/v3/ticker/24hr", "public", 80),
        (
            "GET",
            f"{SPOT}/api/v3/ticker/24hr?symbols=" + json.dumps([f"S{i}" for i in range(30)]),
            "public",
            40,
        ),
        ("GET", f"{SPOT}/api/v3/ticker/price", "public", 4),
        ("GET", f"{SPOT}/api/v3/ticker?symbols=%5B%22A%22,%22B%22%5D", "public", 8),
        ("GET", f"{SPOT}/api/v3/ticker/somethingNew", "public", None),
        ("GET", f"{SPOT}/api/v3/account", "account_read", 20),
        ("GET", f"{SPOT}/api/v3/openOrders?symbol=BTCUSDT", "order_read", 6),
        ("GET", f"{SPOT}/api/v3/openOrders", "order_read", 80),
        ("POST", f"{SPOT}/api/v3/order", "order_place", 1),
        ("POST", f"{SPOT}/api/v3/order/cancelReplace", "order_place", 1),
        ("POST", f"{SPOT}/api/v3/orderList/otoco", "order_place", 1),
        ("DELETE", f"{SPOT}/api/v3/order", "order_cancel", 1),
        ("DELETE", f"{SPOT}/api/v3/openOrders", "order_cancel", 1),
        ("DELETE", f"{SPOT}/api/v3/orderList", "order_cancel", 1),
        ("GET", f"{SPOT}/sapi/v1/account/apiRestrictions", "account_read", 1),
        ("GET", f"{SPOT}/sapi/v1/capital/withdraw/history", "account_read", 18000),
        ("GET", f"{SPOT}/sapi/v1/asset/transfer", "account_read", 1),
        ("GET", f"{FAPI}/fapi/v1/depth?symbol=BTCUSDT", "public", 10),
        ("GET", f"{FAPI}/fapi/v1/depth?symbol=BTCUSDT&limit=1000", "public", 20),
        ("GET", f"{FAPI}/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=1500", "public", 10),
        ("GET", f"{FAPI}/fapi/v1/ticker/bookTicker", "public", 5),
        ("GET", f"{FAPI}/fapi/v3/account", "account_read", 5),
        ("POST", f"{FAPI}/fapi/v1/order", "order_place", 0),
        ("POST", f"{FAPI}/fapi/v1/batchOrders", "order_place", 5),
        ("POST", f"{FAPI}/fapi/v1/leverage", "order_place", 1),
        ("POST", f"{FAPI}/fapi/v1/positionMargin", "transfer", 1),
        ("DELETE", f"{FAPI}/fapi/v1/batchOrders", "order_cancel", 1),
        ("DELETE", f"{FAPI}/fapi/v1/allOpenOrders", "order_cancel", 1),
        ("GET", f"{SPOT}/sapi/v1/some/new/thing", "unknown_private", None),
        ("GET", f"{SPOT}/dapi/v1/account", "unknown_private", None),
        ("POST", f"{SPOT}/sapi/v2/earn/withdrawNow", "withdraw", None),
        ("POST", f"{SPOT}/sapi/v1/lending/daily/transferOut", "transfer", None),
    ],
)
def test_classification_and_weights(method: str, url: str, kind: str, weight: int | None) -> None:
    result = PROFILE.classify(httpx.Request(method, url))
    assert result.kind == kind
    if weight is None:
        assert result.endpoint is None
    else:
        assert result.endpoint is not None and result.endpoint.weight == weight


def test_order_counts_and_batches() -> None:
    oco = PROFILE.classify(httpx.Request("POST", f"{SPOT}/api/v3/orderList/oco")).endpoint
    assert oco is not None and (oco.order_count, oco.is_batch) == (2, True)
    batch = PROFILE.classify(httpx.Request("POST", f"{FAPI}/fapi/v1/batchOrders")).endpoint
    assert batch is not None and batch.is_batch and batch.order_count == 5


def test_method_override_header_can_only_make_a_request_look_riskier() -> None:
    # Disagreeing readings are denied (unknown_private) or the riskier one wins.
    request = httpx.Request(
        "GET", f"{SPOT}/api/v3/order?symbol=BTCUSDT", headers={"X-HTTP-Method-Override": "delete"}
    )
    assert PROFILE.classify(request).kind in ("order_cancel", "unknown_private")
    # The signer signs the POST: an override saying GET must not make it a read.
    request = httpx.Request(
        "POST",
        f"{SPOT}/api/v3/order",
        content=b"symbol=BTCUSDT",
        headers={"X-Method-Override": "GET"},
    )
    assert PROFILE.classify(request).kind in ("order_place", "unknown_private")


def _spell(path: str, draw: st.DrawFn) -> str:
    out: list[str] = ["/"]  # the first slash ends the host; everything after it may vary
    for char in path[1:]:
        choice = draw(st.integers(0, 9))
        if char == "/" and choice == 0:
            out.append("//")
        elif char == "/" and choice == 1:
            out.append("/./")
        elif char == "/" and choice == 2:
            out.append("/zz/../")
        elif choice == 3:
            out.append("%" + format(ord(char), "02x"))
        elif choice == 4:
            out.append("%" + format(ord(char), "02X"))
        elif choice == 5:
            out.append("%25" + format(ord(char), "02X"))
        elif choice in (6, 7):
            out.append(char.swapcase())
        else:
            out.append(char)
    if draw(st.booleans()):
        out.append("/")
    return "".join(out)


@st.composite
def _spelled(draw: st.DrawFn, path: str) -> str:
    return _spell(path, draw)


@st.composite
def _disguised(draw: st.DrawFn) -> tuple[httpx.Request, str]:
    """A must-refuse endpoint, randomly spelled, sent with its verb or hidden behind another."""
    method, path, kind = draw(st.sampled_from(MUST_REFUSE))
    spelled = _spell(path, draw)
    headers = {}
    shown = method
    if draw(st.booleans()):
        # Sent as another verb, with an override header naming the real one.
        shown = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH"]))
        name = draw(st.sampled_from(METHOD_OVERRIDE_HEADERS))
        headers[name] = draw(st.sampled_from([method, method.lower(), f" {method} "]))
    query = draw(st.sampled_from(["", "?asset=USDT&amount=1", "?type=MAIN_UMFUTURE"]))
    return httpx.Request(shown, SPOT + spelled + query, headers=headers), kind


@settings(max_examples=400, deadline=None)
@given(case=_disguised())
def test_no_spelling_of_a_dangerous_path_is_anything_else(case: tuple[httpx.Request, str]) -> None:
    request, kind = case
    assert PROFILE.classify(request).kind == kind


# GET reads that share a path with a dangerous POST: the history of transfers.
_READS_ON_DANGEROUS_PATHS = {("GET", "/sapi/v1/asset/transfer")}


@settings(max_examples=200, deadline=None)
@given(
    endpoint=st.sampled_from(MUST_REFUSE),
    verb=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    data=st.data(),
)
def test_another_verb_does_not_make_a_dangerous_path_safe(
    endpoint: tuple[str, str, str], verb: str, data: st.DataObject
) -> None:
    _, path, _ = endpoint
    result = PROFILE.classify(httpx.Request(verb, SPOT + data.draw(_spelled(path))))
    if (verb, path) in _READS_ON_DANGEROUS_PATHS:
        assert result.kind == "account_read"
    else:
        assert result.kind in DANGEROUS_KINDS


# -- order intents -----------------------------------------------------------------------------
def intents(method: str, url: str, body: str = "") -> list[OrderIntent]:
    return PROFILE.parse_order(httpx.Request(method, url, content=body.encode(), headers=FORM))


def test_spot_limit_order_intent() -> None:
    [intent] = intents(
        "POST",
        f"{SPOT}/api/v3/order",
        "symbol=BTCUSDT&side=buy&type=LIMIT&timeInForce=GTC&quantity=0.00100000"
        "&price=30000.10&newClientOrderId=my%2Fid&timestamp=1&signature=x",
    )
    assert intent == OrderIntent(
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        quantity=Decimal("0.00100000"),
        price=Decimal("30000.10"),
        client_order_id="my/id",
    )
    assert isinstance(intent.quantity, Decimal)


def test_market_order_by_quote_quantity_and_query_wins_over_body() -> None:
    [intent] = intents(
        "POST",
        f"{SPOT}/api/v3/order?symbol=ETHUSDT&quoteOrderQty=100",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quoteOrderQty=5",
    )
    assert intent == OrderIntent(
        symbol="ETHUSDT", side="SELL", type="MARKET", quote_quantity=Decimal(100)
    )


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(InvalidInput, match="'symbol' appears twice"):
        intents("POST", f"{SPOT}/api/v3/order", "symbol=BTCUSDT&side=BUY&symbol=DOGEUSDT")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "1e", "abc", "0x10"])
def test_malformed_amounts_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="quantity"):
        intents("POST", f"{SPOT}/api/v3/order", f"symbol=BTCUSDT&side=BUY&quantity={bad}")


def test_order_without_symbol_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no symbol"):
        intents("POST", f"{FAPI}/fapi/v1/order", "side=BUY&quantity=1")


def test_futures_order_reduce_only_and_close_position() -> None:
    [reduce] = intents(
        "POST",
        f"{FAPI}/fapi/v1/order",
        "symbol=BTCUSDT&side=SELL&type=MARKET&quantity=2&reduceOnly=true",
    )
    assert reduce.reduce_only is True and reduce.quantity == Decimal(2)
    [close] = intents(
        "POST",
        f"{FAPI}/fapi/v1/order",
        "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&closePosition=true",
    )
    assert close.reduce_only is True and close.quantity is None
    [modify] = intents(
        "PUT", f"{FAPI}/fapi/v1/order", "symbol=BTCUSDT&side=BUY&quantity=1&price=99"
    )
    assert modify.price == Decimal(99)


def test_batch_orders_give_one_intent_per_order_with_decimal_amounts() -> None:
    orders = (
        '[{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"0.010","price":"30000.5",'
        '"timeInForce":"GTC","newClientOrderId":"a1"},'
        '{"symbol":"ETHUSDT","side":"SELL","type":"MARKET","quantity":0.1,"reduceOnly":"true"}]'
    )
    encoded = str(httpx.QueryParams({"batchOrders": orders}))
    raw = "batchOrders=" + orders  # as ccxt sends it: the JSON not encoded at all
    for method, url, body in [
        ("POST", f"{FAPI}/fapi/v1/batchOrders", encoded),
        ("POST", f"{FAPI}/fapi/v1/batchOrders", raw),
        ("PUT", f"{FAPI}/fapi/v1/batchOrders?{encoded}", ""),
    ]:
        request = httpx.Request(method, url, content=body.encode(), headers=FORM)
        first, second = PROFILE.parse_order(request)
        assert first == OrderIntent(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            quantity=Decimal("0.010"),
            price=Decimal("30000.5"),
            client_order_id="a1",
        )
        assert second.quantity == Decimal("0.1") and isinstance(second.quantity, Decimal)
        assert second.reduce_only is True


@pytest.mark.parametrize(
    "orders",
    ['{"symbol":"BTCUSDT"}', "[1, 2]", "[]", '[{"symbol":"A","symbol":"B"}]', "not json"],
)
def test_malformed_batches_are_refused(orders: str) -> None:
    request = httpx.Request(
        "POST", f"{FAPI}/fapi/v1/batchOrders?" + str(httpx.QueryParams({"batchOrders": orders}))
    )
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(request)


def test_order_lists_give_one_intent_per_leg() -> None:
    above, below = intents(
        "POST",
        f"{SPOT}/api/v3/orderList/oco",
        "symbol=BTCUSDT&side=SELL&quantity=1&aboveType=LIMIT_MAKER&abovePrice=40000"
        "&belowType=STOP_LOSS_LIMIT&belowStopPrice=29000&belowPrice=28900&belowTimeInForce=GTC",
    )
    assert above == OrderIntent(
        symbol="BTCUSDT", side="SELL", type="LIMIT_MAKER", quantity=Decimal(1), price=Decimal(40000)
    )
    assert (below.type, below.price, below.quantity) == (
        "STOP_LOSS_LIMIT",
        Decimal(28900),
        Decimal(1),
    )
    limit, stop = intents(
        "POST",
        f"{SPOT}/api/v3/order/oco",
        "symbol=BTCUSDT&side=SELL&quantity=1&price=40000&stopPrice=29000&stopLimitPrice=28900",
    )
    assert (limit.type, limit.price, stop.type, stop.price) == (
        "LIMIT_MAKER",
        Decimal(40000),
        "STOP_LOSS_LIMIT",
        Decimal(28900),
    )
    working, pending = intents(
        "POST",
        f"{SPOT}/api/v3/orderList/oto",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=30000&workingQuantity=1"
        "&pendingType=LIMIT_MAKER&pendingSide=SELL&pendingPrice=31000&pendingQuantity=1",
    )
    assert working == OrderIntent(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=Decimal(1), price=Decimal(30000)
    )
    assert pending == OrderIntent(
        symbol="BTCUSDT", side="SELL", type="LIMIT_MAKER", quantity=Decimal(1), price=Decimal(31000)
    )
    legs = intents(
        "POST",
        f"{SPOT}/api/v3/orderList/otoco",
        "symbol=BTCUSDT&workingType=LIMIT&workingSide=BUY&workingPrice=30000&workingQuantity=1"
        "&pendingSide=SELL&pendingQuantity=1&pendingAboveType=LIMIT_MAKER&pendingAbovePrice=31000"
        "&pendingBelowType=STOP_LOSS&pendingBelowStopPrice=29000",
    )
    assert [leg.price for leg in legs] == [Decimal(30000), Decimal(31000), Decimal(29000)]


def test_cancel_replace_leverage_and_cancels() -> None:
    [new] = intents(
        "POST",
        f"{SPOT}/api/v3/order/cancelReplace",
        "symbol=BTCUSDT&side=BUY&type=LIMIT&cancelReplaceMode=STOP_ON_FAILURE&cancelOrderId=1"
        "&quantity=2&price=10&timeInForce=GTC",
    )
    assert (new.quantity, new.price) == (Decimal(2), Decimal(10))
    [leverage] = intents("POST", f"{FAPI}/fapi/v1/leverage", "symbol=BTCUSDT&leverage=20")
    assert leverage == OrderIntent(symbol="BTCUSDT", leverage=Decimal(20))
    [cancel] = PROFILE.parse_order(
        httpx.Request("DELETE", f"{SPOT}/api/v3/order?symbol=BTCUSDT&origClientOrderId=abc")
    )
    assert cancel == OrderIntent(symbol="BTCUSDT", client_order_id="abc")
    assert PROFILE.parse_order(httpx.Request("GET", f"{SPOT}/api/v3/account")) == []


# -- errors -----------------------------------------------------------------------------------
def error(
    status: int, code: int | None, msg: str = "", headers: dict[str, str] | None = None
) -> Any:
    body = json.dumps({"code": code, "msg": msg}).encode() if code is not None else b"<html>"
    return PROFILE.map_error(status, body, headers or {})


@pytest.mark.parametrize(
    ("status", "code", "msg", "expected"),
    [
        (400, -1022, "Signature for this request is not valid.", AuthenticationFailed),
        (401, -2015, "Invalid API-key, IP, or permissions for action.", AuthenticationFailed),
        (400, -2014, "API-key format invalid.", AuthenticationFailed),
        (401, -1002, "You are not authorized to execute this request.", AuthenticationFailed),
        (
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
            TimestampOutsideWindow,
        ),
        (400, -2010, "Account has insufficient balance for requested action.", InsufficientBalance),
        (400, -2019, "Margin is insufficient.", InsufficientBalance),
        (400, -2018, "Balance is insufficient.", InsufficientBalance),
        (400, -2010, "Order would immediately match and take.", OrderRejected),
        (400, -1013, "Filter failure: LOT_SIZE", OrderRejected),
        (400, -2011, "Unknown order sent.", OrderRejected),
        (400, -2021, "Order cancel-replace partially failed.", OrderRejected),
        (400, -4164, "Order's notional must be no smaller than 100", OrderRejected),
        (400, -1003, "Too many requests.", RateLimitedUpstream),
        (400, -1015, "Too many new orders.", RateLimitedUpstream),
        (503, -1008, "Server is currently overloaded.", ExchangeUnavailable),
        (502, None, "", ExchangeUnavailable),
        (408, None, "", ExchangeUnavailable),
        (400, -1121, "Invalid symbol.", ExchangeRejected),
        (403, None, "", ExchangeRejected),
    ],
)
def test_error_map(status: int, code: int | None, msg: str, expected: type) -> None:
    mapped = error(status, code, msg)
    assert type(mapped) is expected
    assert mapped.code == code and mapped.status == status and mapped.exchange == "binance"


def test_rate_limit_and_ban_carry_their_times() -> None:
    limited = error(429, -1003, "Too much request weight used.", {"Retry-After": "17"})
    assert isinstance(limited, RateLimitedUpstream) and limited.retry_after == 17
    banned = error(
        418,
        -1003,
        "Way too many requests; IP(1.2.3.4) banned until 1659146001238. Please use websockets.",
        {"Retry-After": "120"},
    )
    assert isinstance(banned, IPBanned)
    assert (banned.ban_until_ms, banned.retry_after) == (1659146001238, 120)
    from_date = error(418, None, "", {"retry-after": "60", "date": "Sun, 22 Nov 2026 10:00:00 GMT"})
    date_ms = int(datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp() * 1000)
    assert isinstance(from_date, IPBanned) and from_date.ban_until_ms == date_ms + 60_000


def test_successes_and_batches() -> None:
    assert PROFILE.map_error(200, b'{"orderId": 1}', {}) is None
    partial = b'[{"orderId": 1}, {"code": -2019, "msg": "Margin is insufficient."}]'
    assert PROFILE.map_error(200, partial, {}) is None
    failed = b'[{"code": -2019, "msg": "Margin is insufficient."}, {"code": -1013, "msg": "x"}]'
    assert isinstance(PROFILE.map_error(200, failed, {}), InsufficientBalance)


def test_error_messages_carry_no_request_or_extra_body_content() -> None:
    body = json.dumps(
        {"code": -1022, "msg": "Signature for this request is not valid.", "echo": SECRET}
    ).encode()
    mapped = PROFILE.map_error(400, body, {})
    assert mapped is not None and SECRET not in str(mapped)
    long = PROFILE.map_error(400, json.dumps({"code": -1100, "msg": "x" * 1000}).encode(), {})
    assert long is not None and len(str(long)) < 260


# -- key permissions -----------------------------------------------------------------------------
RESTRICTIONS = {
    "ipRestrict": True,
    "createTime": 1698645219000,
    "enableReading": True,
    "enableWithdrawals": False,
    "enableInternalTransfer": False,
    "enableMargin": False,
    "enableFutures": False,
    "permitsUniversalTransfer": False,
    "enableVanillaOptions": False,
    "enableFixApiTrade": False,
    "enableFixReadOnly": True,
    "enableSpotAndMarginTrading": True,
    "enablePortfolioMarginTrading": False,
}


def test_permission_request_is_the_signed_api_restrictions_call() -> None:
    assert PROFILE.permission_request is not None
    request = PROFILE.permission_request("production")
    assert (request.method, str(request.url)) == (
        "GET",
        "https://api.binance.com/sapi/v1/account/apiRestrictions",
    )
    assert PROFILE.classify(request).kind == "account_read"
    signed = PROFILE.sign(request, credential(), now_ms=NOW)
    assert signed.url.query.startswith(b"timestamp=%d&signature=" % NOW)
    with pytest.raises(InvalidInput, match="production"):
        PROFILE.permission_request("testnet")


def test_permissions_read_every_way_out_as_withdrawal() -> None:
    read = PROFILE.permissions(json.dumps(RESTRICTIONS).encode())
    assert (read.can_read, read.can_trade, read.can_withdraw, read.ip_restricted) == (
        True,
        True,
        False,
        True,
    )
    for flag in ("enableWithdrawals", "enableInternalTransfer", "permitsUniversalTransfer"):
        assert PROFILE.permissions(json.dumps({**RESTRICTIONS, flag: True}).encode()).can_withdraw
    futures_only = {**RESTRICTIONS, "enableSpotAndMarginTrading": False, "enableFutures": True}
    assert PROFILE.permissions(json.dumps(futures_only).encode()).can_trade
    read_only = {**RESTRICTIONS, "enableSpotAndMarginTrading": False, "ipRestrict": False}
    parsed = PROFILE.permissions(json.dumps(read_only).encode())
    assert (parsed.can_trade, parsed.ip_restricted) == (False, False)
    assert PROFILE.permissions(b'{"enableReading": true}').ip_restricted is None


def test_permission_errors_surface_as_typed_errors() -> None:
    with pytest.raises(AuthenticationFailed):
        PROFILE.permissions(b'{"code": -2015, "msg": "Invalid API-key, IP, or permissions."}')
    with pytest.raises(InvalidInput):
        PROFILE.permissions(b"[]")
