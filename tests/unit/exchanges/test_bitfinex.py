"""Bitfinex v2: vectors, signer, catalogue, order intents, errors and key permissions."""

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
    TimestampOutsideWindow,
    UpstreamError,
)
from keybroker.exchanges import bitfinex, get_profile
from keybroker.exchanges.base import METHOD_OVERRIDE_HEADERS
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = get_profile("bitfinex")
VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "bitfinex.json").read_text("utf-8")
)["vectors"]
SECRET = "keybroker-test-secret-not-real-0001"
API_KEY = "keybroker-test-key-not-real"
NONCE = 1700000000123456


def credential(secret: str = SECRET, api_key: str = API_KEY) -> Credential:
    return Credential("test", "bitfinex", api_key, Secret(secret), environment="production")


def wire(request: httpx.Request) -> tuple[str, bytes, list[tuple[str, str]], bytes]:
    """Everything that goes on the wire, for byte-for-byte comparisons."""
    return (
        request.method,
        bytes(str(request.url), "ascii"),
        request.headers.multi_items(),
        request.read(),
    )


def post(path: str, body: Any = None, **headers: str) -> httpx.Request:
    content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    return httpx.Request(
        "POST", "https://api.bitfinex.com" + path, headers=headers or None, content=content
    )


def independent_signature(secret: str, path: str, nonce: int, body: bytes) -> str:
    # The documented rule (§9.1), written out independently of the signer.
    payload = "/api/" + path.lstrip("/") + str(nonce)
    return hmac.new(secret.encode(), payload.encode() + body, hashlib.sha384).hexdigest()


# -- vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector_signature_matches(vector: dict[str, Any]) -> None:
    request = httpx.Request(
        vector["request"]["method"],
        vector["request"]["url"],
        headers={"Content-Type": "application/json"},
        content=vector["request"]["body"].encode("utf-8"),
    )
    signed = PROFILE.sign(
        request, credential(vector["secret"], vector["api_key"]), nonce=vector["nonce"]
    )
    assert signed.headers["bfx-signature"] == vector["expected"]["bfx-signature"]
    assert signed.headers["bfx-nonce"] == vector["expected"]["bfx-nonce"]
    assert signed.headers["bfx-apikey"] == vector["api_key"]
    expected = hmac.new(
        vector["secret"].encode(), vector["string_to_sign"].encode(), hashlib.sha384
    ).hexdigest()
    assert expected == vector["expected"]["bfx-signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_vector_twins_must_fail(vector: dict[str, Any]) -> None:
    body = vector["request"]["body"].encode("utf-8")
    request = httpx.Request("POST", vector["request"]["url"], content=body)
    wrong_secret = PROFILE.sign(request, credential(vector["secret"] + "x"), nonce=vector["nonce"])
    assert wrong_secret.headers["bfx-signature"] != vector["expected"]["bfx-signature"]
    changed = httpx.Request("POST", vector["request"]["url"], content=body[:-1] + b" ")
    one_byte = PROFILE.sign(changed, credential(vector["secret"]), nonce=vector["nonce"])
    assert one_byte.headers["bfx-signature"] != vector["expected"]["bfx-signature"]
    other_nonce = PROFILE.sign(request, credential(vector["secret"]), nonce=vector["nonce"] + 1)
    assert other_nonce.headers["bfx-signature"] != vector["expected"]["bfx-signature"]


# -- signer ------------------------------------------------------------------------------


def test_signer_replaces_existing_auth_headers_whatever_their_case() -> None:
    request = post(
        "/v2/auth/r/wallets",
        {},
        **{"BFX-APIKEY": "placeholder", "Bfx-Nonce": "1", "bfx-signature": "00"},
    )
    signed = PROFILE.sign(request, credential(), nonce=NONCE)
    names = [name.lower() for name, _ in signed.headers.multi_items()]
    assert names.count("bfx-apikey") == names.count("bfx-nonce") == 1
    assert names.count("bfx-signature") == 1
    assert signed.headers["bfx-apikey"] == API_KEY
    assert signed.headers["bfx-signature"] == independent_signature(
        SECRET, "/v2/auth/r/wallets", NONCE, b"{}"
    )


def test_empty_body_is_signed_as_the_empty_string() -> None:
    signed = PROFILE.sign(post("/v2/auth/r/info/user"), credential(), nonce=NONCE)
    assert signed.read() == b""
    assert signed.headers["bfx-signature"] == independent_signature(
        SECRET, "/v2/auth/r/info/user", NONCE, b""
    )


def test_query_string_is_not_signed_and_is_kept() -> None:
    # The official SDK sends query parameters unsigned; the path alone is signed.
    request = httpx.Request(
        "POST", "https://api.bitfinex.com/v2/auth/r/orders/hist?x=a%20b", content=b"{}"
    )
    signed = PROFILE.sign(request, credential(), nonce=NONCE)
    assert signed.url.raw_path == b"/v2/auth/r/orders/hist?x=a%20b"
    assert signed.headers["bfx-signature"] == independent_signature(
        SECRET, "/v2/auth/r/orders/hist", NONCE, b"{}"
    )


def test_signer_keeps_path_and_body_bytes() -> None:
    body = '{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"1","price":"1","meta":"é"}'
    request = httpx.Request(
        "POST", "https://api.bitfinex.com/v2/auth/w/order/submit", content=body.encode()
    )
    signed = PROFILE.sign(request, credential(), nonce=NONCE)
    assert signed.url.raw_path == request.url.raw_path
    assert signed.read() == body.encode()


def test_profile_draws_strictly_increasing_microsecond_nonces() -> None:
    nonces = bitfinex.MicrosecondNonces()
    first = nonces.next("k", 1_700_000_000_000)
    assert first == 1_700_000_000_000_000
    assert nonces.next("k", 1_700_000_000_000) == first + 1
    assert nonces.next("k", 1_600_000_000_000) == first + 2  # the clock went back
    assert nonces.next("other", 1_700_000_000_000) == first
    assert PROFILE.uses_nonce


def test_profile_sign_uses_its_nonce_source_when_none_is_given() -> None:
    request = post("/v2/auth/r/wallets", {})
    one = PROFILE.sign(request, credential(api_key="nonce-key"), now_ms=1_700_000_000_000)
    two = PROFILE.sign(request, credential(api_key="nonce-key"), now_ms=1_700_000_000_000)
    assert int(two.headers["bfx-nonce"]) == int(one.headers["bfx-nonce"]) + 1


bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
).map(lambda value: json.dumps(value, ensure_ascii=False).encode())
placeholder_headers = st.dictionaries(
    st.sampled_from(["bfx-apikey", "BFX-NONCE", "Bfx-Signature", "x-other"]),
    st.text(alphabet="abc123", min_size=1, max_size=5),
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(body=bodies, headers=placeholder_headers, nonce=st.integers(1, 2**53))
def test_signing_is_deterministic_and_idempotent(
    body: bytes, headers: dict[str, str], nonce: int
) -> None:
    request = httpx.Request(
        "POST", "https://api.bitfinex.com/v2/auth/r/orders", headers=headers, content=body
    )
    once = PROFILE.sign(request, credential(), nonce=nonce)
    assert wire(once) == wire(PROFILE.sign(request, credential(), nonce=nonce))
    assert wire(PROFILE.sign(once, credential(), nonce=nonce)) == wire(once)
    assert once.read() == body
    assert once.headers["bfx-signature"] == independent_signature(
        SECRET, "/v2/auth/r/orders", nonce, body
    )


# -- base URLs -------------------------------------------------------------------------------


def test_base_url_picks_the_host_by_path() -> None:
    assert PROFILE.base_url("/v2/auth/r/wallets", "production") == "https://api.bitfinex.com"
    assert PROFILE.base_url("/v2/tickers", "production") == "https://api-pub.bitfinex.com"


def test_base_url_refuses_a_testnet_that_does_not_exist() -> None:
    with pytest.raises(InvalidInput, match="no testnet"):
        PROFILE.base_url("/v2/auth/r/wallets", "testnet")


# -- catalogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v2/auth/w/order/submit", "order_place"),
        ("/v2/auth/w/order/update", "order_place"),
        ("/v2/auth/w/order/cancel", "order_cancel"),
        ("/v2/auth/w/order/cancel/multi", "order_cancel"),
        ("/v2/auth/r/orders", "order_read"),
        ("/v2/auth/r/orders/tBTCUSD/hist", "order_read"),
        ("/v2/auth/r/order/tBTCUSD:123/trades", "order_read"),
        ("/v2/auth/r/wallets", "account_read"),
        ("/v2/auth/r/permissions", "account_read"),
        ("/v2/auth/r/ledgers/USD/hist", "account_read"),
        ("/v2/auth/w/withdraw", "withdraw"),
        ("/v2/auth/w/ext/wallets/withdrawals/request", "withdraw"),
        ("/v2/auth/w/transfer", "transfer"),
        ("/v2/auth/w/deposit/address", "transfer"),
        ("/v2/auth/w/deposit/invoice", "transfer"),
        ("/v2/auth/w/funding/offer/submit", "transfer"),
        ("/v2/auth/w/funding/anything/new", "transfer"),
        ("/v2/auth/w/position/claim", "transfer"),
        ("/v2/auth/w/deriv/collateral/set", "transfer"),
        ("/v2/auth/w/token", "key_management"),
        ("/v2/auth/w/settings/set", "key_management"),
        ("/v2/auth/w/pulse/add", "unknown_private"),
        ("/v2/auth/r/something/new", "unknown_private"),
        ("/v1/withdraw", "withdraw"),
        ("/v1/balances", "unknown_private"),
        ("/v2/tickers", "public"),
        ("/v2/book/tBTCUSD/P0", "public"),
    ],
)
def test_catalogue(path: str, kind: str) -> None:
    assert PROFILE.classify(post(path, {})).kind == kind


MUST_REFUSE = [
    (path, endpoint.kind)
    for (_, path), endpoint in bitfinex.ENDPOINTS.items()
    if endpoint.kind in ("withdraw", "transfer", "key_management")
]


def test_every_must_refuse_endpoint_of_the_spec_is_catalogued() -> None:
    catalogued = {path for path, _ in MUST_REFUSE}
    spec_9_4 = {
        "/v2/auth/w/withdraw",
        "/v2/auth/w/transfer",
        "/v2/auth/w/deposit/address",
        "/v2/auth/w/deposit/invoice",
        "/v2/auth/w/funding/offer/submit",
        "/v2/auth/w/position/claim",
        "/v2/auth/w/deriv/collateral/set",
        "/v2/auth/w/ext/wallets/withdrawals/request",
        "/v2/auth/w/ext/wallets/deposits/request",
        "/v2/auth/w/token",
        "/v2/auth/w/settings/set",
    }
    assert spec_9_4 <= catalogued


@st.composite
def spellings(draw: st.DrawFn, path: str) -> str:
    """Any spelling of ``path`` a lenient server might route to the same endpoint."""
    # The leading slash stays literal: a request target must start with one.
    chars = [c.upper() if draw(st.booleans()) else c.lower() for c in path[1:]]
    out = ["/"]
    for c in chars:
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
    data: st.DataObject, target: tuple[str, str]
) -> None:
    path, kind = target
    raw_path = data.draw(spellings(path)).encode("ascii")
    method = data.draw(st.sampled_from(["POST", "GET", "PUT", "DELETE"]))
    headers = {}
    if data.draw(st.booleans()):
        headers[data.draw(st.sampled_from(METHOD_OVERRIDE_HEADERS))] = data.draw(
            st.sampled_from(["POST", "get", "DELETE"])
        )
    url = httpx.URL("https://api.bitfinex.com").copy_with(raw_path=raw_path)
    request = httpx.Request(method, url, headers=headers, content=b"{}")
    assert PROFILE.classify(request).kind == kind


def test_percent_encoded_slash_cannot_hide_a_withdrawal() -> None:
    url = httpx.URL("https://api.bitfinex.com").copy_with(raw_path=b"/v2/auth%2Fw%2fWITHDRAW")
    assert PROFILE.classify(httpx.Request("POST", url)).kind == "withdraw"


# -- order/multi: operations in the body -------------------------------------------------------

ORDER = {"type": "EXCHANGE LIMIT", "symbol": "tBTCUSD", "amount": "0.5", "price": "100"}


@pytest.mark.parametrize(
    ("ops", "kind"),
    [
        ([["on", ORDER], ["oc", {"id": 1}]], "order_place"),
        ([["ou", {"id": 1, "price": "2"}]], "order_place"),
        ([["oc", {"id": 1}], ["oc_multi", {"id": [2, 3]}]], "order_cancel"),
        ([["on", ORDER], ["withdraw", {}]], "unknown_private"),
        ([], "unknown_private"),
    ],
)
def test_order_multi_is_classified_by_its_operations(ops: list[Any], kind: str) -> None:
    assert PROFILE.classify(post("/v2/auth/w/order/multi", {"ops": ops})).kind == kind


def test_order_multi_with_garbage_or_repeated_keys_is_unknown() -> None:
    garbage = httpx.Request(
        "POST", "https://api.bitfinex.com/v2/auth/w/order/multi", content=b"not json"
    )
    assert PROFILE.classify(garbage).kind == "unknown_private"
    repeated = httpx.Request(
        "POST",
        "https://api.bitfinex.com/v2/auth/w/order/multi",
        content=b'{"ops":[["oc",{"id":1}]],"ops":[["on",{}]]}',
    )
    assert PROFILE.classify(repeated).kind == "unknown_private"


# -- order intents ---------------------------------------------------------------------------


def test_submit_yields_one_intent_with_decimal_amounts() -> None:
    body = (
        b'{"type":"LIMIT","symbol":"tBTCF0:USTF0","amount":-0.0015,"price":"43210.5",'
        b'"cid":1700000000001,"flags":1088,"lev":10}'
    )
    request = httpx.Request("POST", "https://api.bitfinex.com/v2/auth/w/order/submit", content=body)
    [intent] = PROFILE.parse_order(request)
    assert intent.symbol == "tBTCF0:USTF0"
    assert intent.side == "sell"
    assert intent.type == "LIMIT"
    assert intent.quantity == Decimal("0.0015") and isinstance(intent.quantity, Decimal)
    assert intent.price == Decimal("43210.5")
    assert intent.client_order_id == "1700000000001"
    assert intent.reduce_only is True  # 1088 = 1024 (reduce-only) + 64 (hidden)
    assert intent.leverage == Decimal(10)


def test_positive_amount_buys() -> None:
    [intent] = PROFILE.parse_order(post("/v2/auth/w/order/submit", ORDER))
    assert intent.side == "buy" and intent.quantity == Decimal("0.5")
    assert intent.reduce_only is None


def test_multi_yields_one_intent_per_order_operation() -> None:
    ops = [
        ["on", ORDER],
        ["oc", {"id": 1}],
        ["on", {**ORDER, "symbol": "tETHUSD", "amount": "-2"}],
        ["ou", {"id": 7, "amount": "1", "price": "3"}],
    ]
    intents = PROFILE.parse_order(post("/v2/auth/w/order/multi", {"ops": ops}))
    assert [(i.symbol, i.side) for i in intents] == [
        ("tBTCUSD", "buy"),
        ("tETHUSD", "sell"),
        ("", "buy"),  # an update names no symbol: a symbol allowlist refuses it
    ]


def test_non_order_requests_have_no_intents() -> None:
    assert PROFILE.parse_order(post("/v2/auth/w/order/cancel", {"id": 1})) == []
    assert PROFILE.parse_order(post("/v2/auth/r/wallets", {})) == []


@pytest.mark.parametrize(
    "body",
    [b"[1]", b"nope", b'{"symbol":"tBTCUSD","amount":"lots"}', b'{"amount":"NaN"}'],
)
def test_malformed_orders_are_refused(body: bytes) -> None:
    request = httpx.Request("POST", "https://api.bitfinex.com/v2/auth/w/order/submit", content=body)
    with pytest.raises(InvalidInput):
        PROFILE.parse_order(request)


# -- error map ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (500, ["error", 10100, "apikey: digest invalid"], AuthenticationFailed, 10100),
        (500, ["error", 10100, "apikey: invalid"], AuthenticationFailed, 10100),
        (500, ["error", 10114, "nonce: small"], TimestampOutsideWindow, 10114),
        (500, ["error", 11010, "ratelimit: error"], RateLimitedUpstream, 11010),
        (500, ["error", 20060, "maintenance"], ExchangeUnavailable, 20060),
        (
            500,
            ["error", 10001, "Invalid order: not enough exchange balance"],
            InsufficientBalance,
            10001,
        ),
        (500, ["error", 10001, "Invalid order: minimum size is 0.0002"], OrderRejected, 10001),
        (500, ["error", 10001, "action: disabled permission"], AuthenticationFailed, 10001),
        (500, ["error", 10020, "symbol: invalid"], OrderRejected, 10020),
        (500, ["error", 10020, "limit: invalid"], ExchangeRejected, 10020),
        (429, ["error", 11010, "ratelimit: error"], RateLimitedUpstream, 11010),
        (502, "<html>bad gateway</html>", ExchangeUnavailable, None),
        (401, "", AuthenticationFailed, None),
    ],
)
def test_error_map(status: int, body: Any, error: type, code: int | None) -> None:
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    mapped = PROFILE.map_error(status, raw)
    assert type(mapped) is error
    assert mapped is not None and mapped.code == code and mapped.exchange == "bitfinex"


def test_rate_limit_carries_retry_after() -> None:
    mapped = PROFILE.map_error(500, b'["error",11010,"ratelimit: error"]')
    assert isinstance(mapped, RateLimitedUpstream) and mapped.retry_after == 60.0
    mapped = PROFILE.map_error(429, b"", {"Retry-After": "7"})
    assert isinstance(mapped, RateLimitedUpstream) and mapped.retry_after == 7.0


def test_failed_order_notification_is_an_error_even_with_http_200() -> None:
    notification = [1, "on-req", None, None, [], None, "ERROR", "not enough exchange balance"]
    mapped = PROFILE.map_error(200, json.dumps(notification).encode())
    assert isinstance(mapped, InsufficientBalance)


def test_successes_map_to_none() -> None:
    assert PROFILE.map_error(200, b"[[1,2,3]]") is None
    success = [1, "on-req", None, None, [], None, "SUCCESS", "Submitting 1 orders."]
    assert PROFILE.map_error(200, json.dumps(success).encode()) is None


def test_error_messages_do_not_echo_the_request() -> None:
    mapped = PROFILE.map_error(500, b'["error",10100,"apikey: invalid"]')
    assert mapped is not None and SECRET not in str(mapped) and "{" not in str(mapped)


# -- key permissions ------------------------------------------------------------------------------

PERMISSIONS = [
    ["account", 0, 0],
    ["history", 1, 0],
    ["orders", 1, 1],
    ["positions", 1, 0],
    ["funding", 1, 0],
    ["settings", 1, 0],
    ["wallets", 1, 0],
    ["withdraw", 0, 0],
]


def test_permission_request_is_the_documented_call() -> None:
    assert PROFILE.permission_request is not None
    request = PROFILE.permission_request("production")
    assert request.method == "POST"
    assert str(request.url) == "https://api.bitfinex.com/v2/auth/r/permissions"
    assert PROFILE.classify(request).kind == "account_read"


def test_trading_key_without_withdrawals() -> None:
    permissions = PROFILE.permissions(json.dumps(PERMISSIONS).encode())
    assert permissions.can_read and permissions.can_trade
    assert not permissions.can_withdraw
    assert permissions.ip_restricted is None


@pytest.mark.parametrize("scope", ["withdraw", "ui_withdraw"])
def test_withdraw_write_flag_means_can_withdraw(scope: str) -> None:
    body = [*PERMISSIONS, [scope, 0, 1]]
    assert PROFILE.permissions(json.dumps(body).encode()).can_withdraw


def test_malformed_permission_answer_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="bitfinex permissions"):
        PROFILE.permissions(b'{"orders": true}')


def test_credentials_are_hmac_only() -> None:
    assert PROFILE.key_types == ("hmac",) and not PROFILE.needs_passphrase
    with pytest.raises(InvalidInput):
        PROFILE.check_credential(API_KEY, Secret(SECRET), None, "ed25519")
