"""Kraken: published vector and twins, nonce placement, catalogue, intents, errors, permissions."""

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
from keybroker.exchanges.kraken import ENDPOINTS
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("kraken")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "kraken.json").read_text("utf-8")
)
BY_ID = {vector["id"]: vector for vector in VECTORS["vectors"]}
# A throwaway key: the published example's private key, which Kraken printed in its docs.
SECRET = BY_ID["kraken-spot-addorder"]["credential"]["secret"]
URL = "https://api.kraken.com/0/private/"


def credential(
    secret: str = SECRET, api_key: str = "keybroker-kraken-test-key-not-real"
) -> Credential:
    return Credential("k", "kraken", api_key, Secret(secret), environment="production")


def request_of(vector: dict[str, Any]) -> httpx.Request:
    spec = vector["request"]
    return httpx.Request(
        spec["method"], spec["url"], headers=spec.get("headers", {}), content=spec["body"].encode()
    )


def kraken_verifies(secret_b64: str, request: httpx.Request) -> bool:
    """Kraken's server-side check, written from its docs and independent of our signer."""
    body = request.read()
    nonce = (
        next(
            value
            for name, value in (pair.split(b"=", 1) for pair in body.split(b"&") if b"=" in pair)
            if name == b"nonce"
        )
        if not body.lstrip().startswith(b"{")
        else str(json.loads(body)["nonce"]).encode()
    )
    path = request.url.raw_path.split(b"?")[0]
    digest = hmac.new(
        base64.b64decode(secret_b64), path + hashlib.sha256(nonce + body).digest(), hashlib.sha512
    ).digest()
    return hmac.compare_digest(base64.b64encode(digest), request.headers["API-Sign"].encode())


def as_bytes(request: httpx.Request) -> tuple[str, bytes, list[tuple[bytes, bytes]], bytes]:
    return (
        request.method,
        str(request.url).encode() + request.url.raw_path,
        list(request.headers.raw),
        request.read(),
    )


# -- published and oracle vectors ----------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda vector: vector["id"])
def test_vector_signature_matches_exactly(vector: dict[str, Any]) -> None:
    cred = credential(vector["credential"]["secret"], vector["credential"]["api_key"])
    signed = PROFILE.sign(request_of(vector), cred, nonce=vector["nonce"])
    assert signed.headers["API-Sign"] == vector["expected"]["API-Sign"]
    assert signed.headers["API-Key"] == vector["credential"]["api_key"]
    # The vectors' bodies already carry their nonce, so the body is sent unchanged.
    assert signed.read() == vector["request"]["body"].encode()
    assert kraken_verifies(vector["credential"]["secret"], signed)


@pytest.mark.parametrize("twin", VECTORS["must_fail"], ids=lambda twin: twin["id"])
def test_must_fail_twin_does_not_give_the_expected_signature(twin: dict[str, Any]) -> None:
    original = BY_ID[twin["twin_of"]]
    vector = json.loads(json.dumps(original))
    vector["credential"].update(twin.get("credential", {}))
    vector["request"].update(twin.get("request", {}))
    vector["nonce"] = twin.get("nonce", vector["nonce"])
    if "nonce" in twin:
        body = vector["request"]["body"]
        vector["request"]["body"] = body.replace(str(original["nonce"]), str(twin["nonce"]))
    signed = PROFILE.sign(
        request_of(vector), credential(vector["credential"]["secret"]), nonce=vector["nonce"]
    )
    assert signed.headers["API-Sign"] != original["expected"]["API-Sign"]
    # And the published signature does not verify the changed request under Kraken's rule.
    forged = request_of(vector)
    forged.headers["API-Sign"] = original["expected"]["API-Sign"]
    assert not kraken_verifies(vector["credential"]["secret"], forged)


# -- nonce placement and byte preservation ---------------------------------------------------------
def sign_body(
    body: bytes, nonce: int = 1700000000000, content_type: str | None = None
) -> httpx.Request:
    headers = {"Content-Type": content_type} if content_type else {}
    request = httpx.Request("POST", URL + "AddOrder", headers=headers, content=body)
    return PROFILE.sign(request, credential(), nonce=nonce)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b"nonce=42"),
        (b"pair=XBTUSD&type=buy", b"nonce=42&pair=XBTUSD&type=buy"),
        (b"pair=XBTUSD&nonce=1&type=buy", b"pair=XBTUSD&nonce=42&type=buy"),
        (b"nonce=1&pair=a%20b+c&nonce=2", b"nonce=42&pair=a%20b+c&nonce=42"),
        (b"n%6Fnce=7&pair=XBTUSD", b"nonce=42&pair=XBTUSD"),
    ],
)
def test_form_nonce_is_replaced_in_place_or_put_first(body: bytes, expected: bytes) -> None:
    signed = sign_body(body, nonce=42)
    assert signed.read() == expected
    assert signed.headers["Content-Length"] == str(len(expected))
    assert kraken_verifies(SECRET, signed)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", b'{"nonce":42}'),
        (b"{}", b'{"nonce":42}'),
        (b' { "pair" : "XBTUSD" }', b' {"nonce":42, "pair" : "XBTUSD" }'),
        (b'{"nonce":"1","orders":[{"nonce":3}]}', b'{"nonce":"42","orders":[{"nonce":3}]}'),
        (b'{"a":"\\u00e9\xc3\xa9", "nonce" : 17 }', b'{"a":"\\u00e9\xc3\xa9", "nonce" : 42 }'),
    ],
)
def test_json_nonce_keeps_every_other_byte(body: bytes, expected: bytes) -> None:
    signed = sign_body(body, nonce=42, content_type="application/json")
    assert signed.read() == expected
    assert kraken_verifies(SECRET, signed)


@pytest.mark.parametrize("body", [b"[1]", b'{"a":1', b'{"a":1}x', b"\xff"])
def test_json_body_that_cannot_carry_a_nonce_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        sign_body(body, content_type="application/json")


def test_query_bytes_and_existing_headers_are_kept() -> None:
    request = httpx.Request(
        "POST",
        URL + "Balance?x=a%20b+c&y=%2F",
        headers={"API-Key": "placeholder", "api-sign": "old", "X-Trace": "1"},
        content=b"nonce=1",
    )
    signed = PROFILE.sign(request, credential(), nonce=5)
    assert signed.url.query == b"x=a%20b+c&y=%2F"
    assert signed.url.raw_path == request.url.raw_path
    assert signed.headers.get_list("api-key") == ["keybroker-kraken-test-key-not-real"]
    assert len(signed.headers.get_list("api-sign")) == 1
    assert signed.headers["X-Trace"] == "1"


def test_profile_supplies_increasing_nonces() -> None:
    request = httpx.Request("POST", URL + "Balance", content=b"")
    first = PROFILE.sign(request, credential(), now_ms=1_700_000_000_000)
    second = PROFILE.sign(request, credential(), now_ms=1_700_000_000_000)
    nonces = [int(signed.read().split(b"=")[1]) for signed in (first, second)]
    assert nonces[1] > nonces[0] >= 1_700_000_000_000


@pytest.mark.parametrize("nonce", [0, -1, 2**64])
def test_nonce_out_of_range_is_refused(nonce: int) -> None:
    with pytest.raises(SigningError):
        sign_body(b"", nonce=nonce)


form_values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    params=st.dictionaries(
        st.sampled_from(["pair", "type", "volume", "price", "cl_ord_id"]), form_values
    ),
    nonce=st.integers(min_value=1, max_value=2**64 - 1),
)
def test_signing_is_deterministic_and_resigning_is_idempotent(
    params: dict[str, str], nonce: int
) -> None:
    request = httpx.Request("POST", URL + "AddOrder", data=params)
    once = PROFILE.sign(request, credential(), nonce=nonce)
    assert as_bytes(once) == as_bytes(PROFILE.sign(request, credential(), nonce=nonce))
    assert as_bytes(PROFILE.sign(once, credential(), nonce=nonce)) == as_bytes(once)
    assert kraken_verifies(SECRET, once)


# -- credentials and URLs ------------------------------------------------------------------------
def test_secret_must_be_base64_and_is_never_echoed() -> None:
    with pytest.raises(InvalidInput) as caught:
        PROFILE.check_credential("key", Secret("not*base64*secret"), None, "hmac")
    assert "base64" in str(caught.value)
    assert "not*base64*secret" not in str(caught.value)
    PROFILE.check_credential("key", Secret(SECRET), None, "hmac")


def test_there_is_no_testnet_to_fall_back_to() -> None:
    assert PROFILE.base_url("/0/private/Balance", "production") == "https://api.kraken.com"
    with pytest.raises(InvalidInput):
        PROFILE.base_url("/0/private/Balance", "testnet")


# -- catalogue -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", "/0/private/AddOrder", "order_place"),
        ("POST", "/0/private/AddOrderBatch", "order_place"),
        ("POST", "/0/private/AmendOrder", "order_place"),
        ("POST", "/0/private/CancelOrder", "order_cancel"),
        ("POST", "/0/private/CancelAllOrdersAfter", "order_cancel"),
        ("POST", "/0/private/Balance", "account_read"),
        ("POST", "/0/private/GetApiKeyInfo", "account_read"),
        ("POST", "/0/private/TradesHistory", "order_read"),
        ("POST", "/0/private/Withdraw", "withdraw"),
        ("POST", "/0/private/WithdrawAddresses", "withdraw"),
        ("POST", "/0/private/WalletTransfer", "transfer"),
        ("POST", "/0/private/Earn/Allocate", "transfer"),
        ("GET", "/0/private/Withdraw", "withdraw"),
        ("POST", "/0/private/SomethingNew", "unknown_private"),
        ("GET", "/0/public/Ticker", "public"),
        ("POST", "/0/private/../public/Ticker", "public"),
    ],
)
def test_classification(method: str, path: str, kind: str) -> None:
    request = httpx.Request(method, "https://api.kraken.com" + path)
    assert PROFILE.classify(request).kind == kind


def test_weights_follow_the_call_counter() -> None:
    def endpoint(name: str) -> Any:
        return PROFILE.classify(httpx.Request("POST", URL + name)).endpoint

    assert endpoint("Balance").weight == 1
    assert endpoint("TradesHistory").weight == 2
    assert endpoint("AddOrder").weight == 0 and endpoint("AddOrder").order_count == 1
    assert endpoint("AddOrderBatch").is_batch


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b"asset=XBT&method=Bitcoin", "account_read"),
        (b"asset=XBT&method=Bitcoin&new=false", "account_read"),
        (b"asset=XBT&method=Bitcoin&new=true", "transfer"),
        (b"asset=XBT&new=1", "transfer"),
        (b"new=true&new=false", "transfer"),  # unparsable (repeated) counts as asking
    ],
)
def test_new_deposit_address_is_a_transfer(body: bytes, kind: str) -> None:
    request = httpx.Request("POST", URL + "DepositAddresses", content=body)
    assert PROFILE.classify(request).kind == kind


def test_new_deposit_address_in_json_or_query_is_a_transfer() -> None:
    as_json = httpx.Request("POST", URL + "DepositAddresses", json={"asset": "XBT", "new": True})
    in_query = httpx.Request("POST", URL + "DepositAddresses?new=true", content=b"asset=XBT")
    assert PROFILE.classify(as_json).kind == "transfer"
    assert PROFILE.classify(in_query).kind == "transfer"


DANGEROUS = sorted(
    (method, path, endpoint.kind)
    for (method, path), endpoint in ENDPOINTS.items()
    if endpoint.kind in DANGEROUS_KINDS
)


@st.composite
def disguised_path(draw: st.DrawFn, path: str) -> str:
    """One spelling of ``path`` a lenient server would still route to it."""
    out = []
    for char in path:
        if char == "/":
            out.append(
                draw(st.sampled_from(["/", "//", "/./", "/%2F", "/%2f", "/zz/../", "/%2e/"]))
            )
            continue
        encoded = f"%{ord(char):02X}"
        out.append(
            draw(
                st.sampled_from(
                    [char, char.swapcase(), encoded, encoded.lower(), "%25" + encoded[1:]]
                )
            )
        )
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
    url = "https://api.kraken.com" + data.draw(disguised_path(path))
    request = httpx.Request(sent_as, url, headers=headers, content=b"asset=XBT")
    assert PROFILE.classify(request).kind == kind


# -- order intents ------------------------------------------------------------------------------
def test_add_order_intent() -> None:
    request = httpx.Request(
        "POST",
        URL + "AddOrder",
        content=b"nonce=1&pair=XBTUSD&type=buy&ordertype=limit&price=37500.10&volume=1.25"
        b"&cl_ord_id=my-order&reduce_only=true&leverage=5%3A1",
    )
    assert PROFILE.parse_order(request) == [
        OrderIntent(
            symbol="XBTUSD",
            side="buy",
            type="limit",
            quantity=Decimal("1.25"),
            price=Decimal("37500.10"),
            client_order_id="my-order",
            reduce_only=True,
            leverage=Decimal("5"),
        )
    ]


def test_volume_in_quote_currency_and_limit_on_price2() -> None:
    market = httpx.Request(
        "POST",
        URL + "AddOrder",
        content=b"pair=XBTUSD&type=buy&ordertype=market&volume=100&oflags=post,viqc",
    )
    (intent,) = PROFILE.parse_order(market)
    assert (
        intent.quote_quantity == Decimal("100") and intent.quantity is None and intent.price is None
    )
    stop = httpx.Request(
        "POST",
        URL + "AddOrder",
        content=b"pair=XBTUSD&type=sell&ordertype=stop-loss-limit&price=30000&price2=29950&volume=1",
    )
    assert PROFILE.parse_order(stop)[0].price == Decimal("29950")


@pytest.mark.parametrize("price", [b"%2B5", b"-5", b"%235", b"5%25", b"abc", b"NaN"])
def test_price_a_policy_cannot_check_is_refused(price: bytes) -> None:
    request = httpx.Request(
        "POST",
        URL + "AddOrder",
        content=b"pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=" + price,
    )
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(request)


def test_repeated_field_is_refused() -> None:
    request = httpx.Request(
        "POST",
        URL + "AddOrder",
        content=b"pair=XBTUSD&pair=ETHUSD&type=buy&ordertype=market&volume=1",
    )
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(request)


def test_batch_gives_one_intent_per_order_in_json_and_form() -> None:
    as_json = httpx.Request(
        "POST",
        URL + "AddOrderBatch",
        json={
            "pair": "XBTUSD",
            "orders": [
                {
                    "type": "buy",
                    "ordertype": "limit",
                    "volume": "1.5",
                    "price": "25000",
                    "cl_ord_id": "a",
                },
                {"type": "sell", "ordertype": "limit", "volume": 2, "price": 26000.5},
            ],
        },
    )
    as_form = httpx.Request(
        "POST",
        URL + "AddOrderBatch",
        content=b"pair=XBTUSD&orders[0][type]=buy&orders[0][ordertype]=limit&orders[0][volume]=1.5"
        b"&orders[0][price]=25000&orders[0][cl_ord_id]=a&orders[1][type]=sell"
        b"&orders[1][ordertype]=limit&orders[1][volume]=2&orders[1][price]=26000.5",
    )
    for request in (as_json, as_form):
        intents = PROFILE.parse_order(request)
        assert [(i.symbol, i.side, i.quantity, i.price) for i in intents] == [
            ("XBTUSD", "buy", Decimal("1.5"), Decimal("25000")),
            ("XBTUSD", "sell", Decimal("2"), Decimal("26000.5")),
        ]
        assert intents[0].client_order_id == "a"


def test_edit_and_amend_intents() -> None:
    edit = httpx.Request(
        "POST", URL + "EditOrder", content=b"txid=O1&pair=XBTUSD&volume=2&price=100"
    )
    amend = httpx.Request(
        "POST",
        URL + "AmendOrder",
        json={"cl_ord_id": "c1", "order_qty": "3", "limit_price": "99.5"},
    )
    assert PROFILE.parse_order(edit) == [
        OrderIntent(symbol="XBTUSD", quantity=Decimal("2"), price=Decimal("100"))
    ]
    assert PROFILE.parse_order(amend) == [
        OrderIntent(symbol="", quantity=Decimal("3"), price=Decimal("99.5"), client_order_id="c1")
    ]


def test_non_order_requests_have_no_intents() -> None:
    assert PROFILE.parse_order(httpx.Request("POST", URL + "CancelOrder", content=b"txid=O1")) == []
    assert PROFILE.parse_order(httpx.Request("POST", URL + "Balance")) == []


# -- errors ------------------------------------------------------------------------------------
def answer(*errors: str) -> bytes:
    return json.dumps({"error": list(errors)}).encode()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (answer("EAPI:Invalid key"), AuthenticationFailed),
        (answer("EAPI:Invalid signature"), AuthenticationFailed),
        (answer("EGeneral:Permission denied"), AuthenticationFailed),
        (answer("EGeneral:Temporary lockout"), AuthenticationFailed),
        (answer("EAPI:Invalid nonce"), TimestampOutsideWindow),
        (answer("EAPI:Rate limit exceeded"), RateLimitedUpstream),
        (answer("EOrder:Rate limit exceeded"), RateLimitedUpstream),
        (answer("EGeneral:Too many requests"), RateLimitedUpstream),
        (answer("EOrder:Insufficient funds"), InsufficientBalance),
        (answer("EOrder:Order minimum not met"), OrderRejected),
        (answer("EOrder:Something new"), OrderRejected),
        (answer("EGeneral:Invalid arguments:volume"), OrderRejected),
        (answer("EService:Unavailable"), ExchangeUnavailable),
        (answer("EService:Market in cancel_only mode"), ExchangeUnavailable),
        (answer("EFoo:Bar"), ExchangeRejected),
    ],
)
def test_error_strings_map_to_typed_errors(body: bytes, kind: type) -> None:
    error = PROFILE.map_error(200, body)
    assert type(error) is kind
    assert error is not None and error.code == json.loads(body)["error"][0]
    assert error.exchange == "kraken"


def test_throttled_retry_after_comes_from_the_answer() -> None:
    error = PROFILE.map_error(
        200, answer("EService: Throttled: 1700000010"), {"Date": "Tue, 14 Nov 2023 22:13:20 GMT"}
    )
    assert isinstance(error, RateLimitedUpstream) and error.retry_after == 10.0


def test_success_and_status_fallbacks() -> None:
    assert PROFILE.map_error(200, b'{"error":[],"result":{"XXBT":"1.0"}}') is None
    assert isinstance(PROFILE.map_error(520, b"<html>bad gateway</html>"), ExchangeUnavailable)
    limited = PROFILE.map_error(429, b"", {"Retry-After": "3"})
    assert isinstance(limited, RateLimitedUpstream) and limited.retry_after == 3.0
    assert isinstance(PROFILE.map_error(403, b"forbidden"), AuthenticationFailed)


def test_batch_order_error_is_found() -> None:
    body = b'{"error":[],"result":{"orders":[{"txid":"O1"},{"error":"EOrder:Insufficient funds"}]}}'
    assert isinstance(PROFILE.map_error(200, body), InsufficientBalance)


# -- key permissions -----------------------------------------------------------------------------
DOC_PERMISSION_ANSWER = {
    # The example answer of https://docs.kraken.com/api-reference/account-data/get-api-key-info
    "error": [],
    "result": {
        "apiKeyName": "my-api-key",
        "nonce": "1772627060997",
        "nonceWindow": 0,
        "permissions": ["query-funds", "withdraw-funds", "query-open-trades", "modify-trades"],
        "validUntil": "0",
        "ipAllowlist": [],
    },
}


def test_permission_request_and_answer() -> None:
    assert PROFILE.permission_request is not None and PROFILE.parse_permission_response is not None
    request = PROFILE.permission_request("production")
    assert (request.method, str(request.url)) == ("POST", URL + "GetApiKeyInfo")
    signed = PROFILE.sign(request, credential(), nonce=9)
    assert signed.read() == b"nonce=9" and kraken_verifies(SECRET, signed)
    assert PROFILE.classify(signed).kind == "account_read"
    permissions = PROFILE.permissions(json.dumps(DOC_PERMISSION_ANSWER).encode())
    assert (permissions.can_read, permissions.can_trade, permissions.can_withdraw) == (
        True,
        True,
        True,
    )
    assert permissions.ip_restricted is False


def test_permission_answer_of_a_safe_key() -> None:
    answer_body = json.loads(json.dumps(DOC_PERMISSION_ANSWER))
    answer_body["result"]["permissions"] = ["query-funds", "modify-trades", "cancel-trades"]
    answer_body["result"]["ipAllowlist"] = ["203.0.113.7"]
    permissions = PROFILE.permissions(json.dumps(answer_body).encode())
    assert not permissions.can_withdraw and permissions.ip_restricted is True


def test_permission_error_answer_is_not_read_as_permissions() -> None:
    with pytest.raises(InvalidInput):
        PROFILE.permissions(answer("EAPI:Invalid key"))
