"""Bybit v5: signer (vectors, Bybit's own rule), catalogue, order intents, errors, permissions."""

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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

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
from keybroker.exchanges import bybit, get_profile
from keybroker.model import Credential
from keybroker.secret import Secret

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "bybit.json").read_text("utf-8")
)["vectors"]
SIGNATURE_VECTORS = [v for v in VECTORS if v["kind"] == "signature"]
LAYOUT_VECTORS = [v for v in VECTORS if v["kind"] == "string_to_sign"]

NOW = 1_658_384_314_791
SECRET = "FAKEbybitSECRET0123456789abcdef"
HOST = "https://api.bybit.com"


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def credential(**changes: Any) -> Credential:
    fields: dict[str, Any] = {
        "name": "bybit-test",
        "exchange": "bybit",
        "api_key": "FAKEbybitKEY",
        "secret": Secret(SECRET),
        "environment": "production",
    }
    fields.update(changes)
    return Credential(**fields)


def request_from(spec: dict[str, Any]) -> httpx.Request:
    return httpx.Request(
        spec["method"], spec["url"], headers=spec["headers"], content=spec["body"].encode("utf-8")
    )


def bybit_payload(request: httpx.Request) -> bytes:
    """Bybit's rule, from its docs and independent of the signer: timestamp + api key +
    recv window + (query string as received, for GET | body as received, otherwise)."""
    headers = request.headers
    payload = request.url.query if request.method == "GET" else request.read()
    head = headers["X-BAPI-TIMESTAMP"] + headers["X-BAPI-API-KEY"] + headers["X-BAPI-RECV-WINDOW"]
    return head.encode() + payload


def bybit_verifies_hmac(request: httpx.Request, secret: str) -> bool:
    expected = hmac.new(secret.encode(), bybit_payload(request), hashlib.sha256).hexdigest()
    return len(request.headers.get_list("X-BAPI-SIGN")) == 1 and hmac.compare_digest(
        expected, request.headers["X-BAPI-SIGN"]
    )


def bybit_verifies_rsa(request: httpx.Request, pem: bytes) -> bool:
    key = serialization.load_pem_private_key(pem, password=None).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(
            base64.b64decode(request.headers["X-BAPI-SIGN"]),
            bybit_payload(request),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        return False
    return True


def wire(request: httpx.Request) -> tuple[str, str, bytes, list[tuple[str, str]], bytes]:
    """Everything that goes on the wire, in order."""
    url = request.url
    return (request.method, str(url), url.raw_path, request.headers.multi_items(), request.read())


# -- vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", LAYOUT_VECTORS, ids=lambda v: v["id"])
def test_string_to_sign_matches_the_documented_example(vector: dict[str, Any]) -> None:
    request = request_from(vector["request"])
    recv_window = vector["request"]["headers"]["X-BAPI-RECV-WINDOW"]
    message = bybit.string_to_sign(request, vector["api_key"], str(vector["now_ms"]), recv_window)
    assert message.decode() == vector["expected_string_to_sign"]
    # and the signer sends exactly the pieces it signed
    signed = bybit.PROFILE.sign(
        request, credential(api_key=vector["api_key"]), now_ms=vector["now_ms"]
    )
    assert bybit_payload(signed).decode() == vector["expected_string_to_sign"]
    assert bybit_verifies_hmac(signed, SECRET)


@pytest.mark.parametrize("vector", LAYOUT_VECTORS, ids=lambda v: v["id"])
def test_string_to_sign_twin_with_one_byte_changed_does_not_match(vector: dict[str, Any]) -> None:
    spec = vector["request"]
    changed = (
        dict(spec, url=spec["url"] + "x")
        if spec["method"] == "GET"
        else dict(spec, body=spec["body"].replace(": ", ":"))
    )
    message = bybit.string_to_sign(
        request_from(changed), vector["api_key"], str(vector["now_ms"]), "5000"
    )
    assert message.decode() != vector["expected_string_to_sign"]


def vector_credential(vector: dict[str, Any], secret: str | None = None) -> Credential:
    data = vector["credential"]
    return credential(
        api_key=data["api_key"],
        secret=Secret(secret if secret is not None else data["secret"]),
        environment=data["environment"],
    )


@pytest.mark.parametrize("vector", SIGNATURE_VECTORS, ids=lambda v: v["id"])
def test_signature_matches_oracle_vector(vector: dict[str, Any]) -> None:
    signed = bybit.PROFILE.sign(
        request_from(vector["request"]), vector_credential(vector), now_ms=vector["now_ms"]
    )
    for name, value in vector["expected"].items():
        assert signed.headers[name] == value
    assert bybit_payload(signed).decode() == vector["string_to_sign"]
    assert bybit_verifies_hmac(signed, vector["credential"]["secret"])


@pytest.mark.parametrize("vector", SIGNATURE_VECTORS, ids=lambda v: v["id"])
def test_signature_twins_fail(vector: dict[str, Any]) -> None:
    secret = vector["credential"]["secret"]
    wrong = ("0" if secret[0] != "0" else "1") + secret[1:]
    signed = bybit.PROFILE.sign(
        request_from(vector["request"]), vector_credential(vector, wrong), now_ms=vector["now_ms"]
    )
    assert signed.headers["X-BAPI-SIGN"] != vector["expected"]["X-BAPI-SIGN"]
    spec = vector["request"]
    changed = (
        dict(spec, url=spec["url"] + "x")
        if spec["method"] == "GET"
        else dict(spec, body=spec["body"] + " ")
    )
    signed = bybit.PROFILE.sign(
        request_from(changed), vector_credential(vector), now_ms=vector["now_ms"]
    )
    assert signed.headers["X-BAPI-SIGN"] != vector["expected"]["X-BAPI-SIGN"]


# -- signer ------------------------------------------------------------------------------


def test_rsa_keys_sign_base64_pkcs1v15_that_the_public_key_verifies(rsa_pem: bytes) -> None:
    request = httpx.Request("GET", f"{HOST}/v5/order/realtime?category=linear&symbol=BTCUSDT")
    signed = bybit.PROFILE.sign(
        request, credential(secret=Secret(rsa_pem), key_type="rsa"), now_ms=NOW
    )
    assert bybit_verifies_rsa(signed, rsa_pem)
    assert not bybit_verifies_hmac(signed, SECRET)


def test_other_key_types_cannot_sign() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    request = httpx.Request("GET", f"{HOST}/v5/order/realtime")
    with pytest.raises(SigningError):
        bybit.PROFILE.sign(request, credential(secret=Secret(pem), key_type="es256"), now_ms=NOW)
    with pytest.raises(SigningError):
        bybit.PROFILE.sign(request, credential(secret=Secret(pem), key_type="rsa"), now_ms=NOW)


def test_recv_window_is_kept_defaulted_or_refused() -> None:
    url = f"{HOST}/v5/position/list?category=linear"
    kept = bybit.PROFILE.sign(
        httpx.Request("GET", url, headers={"x-bapi-recv-window": "20000"}), credential(), now_ms=NOW
    )
    assert kept.headers.get_list("X-BAPI-RECV-WINDOW") == ["20000"]
    assert bybit_verifies_hmac(kept, SECRET)
    default = bybit.PROFILE.sign(httpx.Request("GET", url), credential(), now_ms=NOW)
    assert default.headers["X-BAPI-RECV-WINDOW"] == "5000"
    for bad in ("0", "5000.5", "-1", "5e3", "abc"):
        with pytest.raises(InvalidInput):
            bybit.PROFILE.sign(
                httpx.Request("GET", url, headers={"X-BAPI-RECV-WINDOW": bad}), credential()
            )


def test_placeholder_auth_headers_are_replaced_not_duplicated() -> None:
    request = httpx.Request(
        "POST",
        f"{HOST}/v5/order/cancel",
        headers=[
            ("X-BAPI-API-KEY", "placeholder"),
            ("X-BAPI-SIGN", "placeholder-signature"),
            ("x-bapi-sign", "second-copy"),
            ("X-BAPI-TIMESTAMP", "1"),
            ("X-BAPI-SIGN-TYPE", "2"),
            ("Referer", "CCXT"),
        ],
        content=b'{"category":"spot","symbol":"BTCUSDT","orderId":"1"}',
    )
    signed = bybit.PROFILE.sign(request, credential(), now_ms=NOW)
    for name in ("X-BAPI-API-KEY", "X-BAPI-SIGN", "X-BAPI-TIMESTAMP", "X-BAPI-RECV-WINDOW"):
        assert len(signed.headers.get_list(name)) == 1
    assert "X-BAPI-SIGN-TYPE" not in signed.headers
    assert signed.headers["Referer"] == "CCXT"
    assert signed.headers["X-BAPI-TIMESTAMP"] == str(NOW)
    assert bybit_verifies_hmac(signed, SECRET)


def test_get_signs_the_query_on_the_wire_and_not_a_body() -> None:
    url = f"{HOST}/v5/execution/list?category=spot&symbol=BTCUSDT&cursor=a%20b%2Cc&x=%E2%82%AC"
    signed = bybit.PROFILE.sign(httpx.Request("GET", url), credential(), now_ms=NOW)
    assert signed.url.query == b"category=spot&symbol=BTCUSDT&cursor=a%20b%2Cc&x=%E2%82%AC"
    assert bybit_verifies_hmac(signed, SECRET)


query_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)


@st.composite
def requests(draw: st.DrawFn) -> httpx.Request:
    names = st.from_regex(r"[a-zA-Z]{1,6}", fullmatch=True)
    params = draw(st.lists(st.tuples(names, query_values), max_size=4))
    if draw(st.booleans()):
        return httpx.Request("GET", f"{HOST}/v5/order/realtime", params=params)
    body = json.dumps(dict(params), ensure_ascii=draw(st.booleans()), separators=(",", ":"))
    return httpx.Request("POST", f"{HOST}/v5/order/create", content=body.encode())


@settings(max_examples=60, deadline=None)
@given(request=requests(), now_ms=st.integers(0, 4_102_444_800_000))
def test_signing_is_deterministic_idempotent_and_verifies(
    request: httpx.Request, now_ms: int
) -> None:
    once = bybit.PROFILE.sign(request, credential(), now_ms=now_ms)
    assert wire(bybit.PROFILE.sign(request, credential(), now_ms=now_ms)) == wire(once)
    assert wire(bybit.PROFILE.sign(once, credential(), now_ms=now_ms)) == wire(once)
    assert once.url.raw_path == request.url.raw_path
    assert once.read() == request.read()
    assert bybit_verifies_hmac(once, SECRET)


# -- catalogue -----------------------------------------------------------------------------

MUST_REFUSE = {
    # §5.5
    "/v5/asset/withdraw/create": "withdraw",
    "/v5/asset/withdraw/cancel": "withdraw",
    "/v5/asset/transfer/inter-transfer": "transfer",
    "/v5/asset/transfer/universal-transfer": "transfer",
    "/v5/asset/transfer/save-transfer-sub-member": "transfer",
    "/v5/asset/deposit/deposit-to-account": "transfer",
    "/v5/asset/exchange/convert-execute": "transfer",
    "/v5/fiat/trade-execute": "transfer",
    "/v5/lending/purchase": "transfer",
    "/v5/lending/redeem": "transfer",
    "/v5/spot-lever-token/purchase": "transfer",
    "/v5/spot-lever-token/redeem": "transfer",
    "/v5/user/create-sub-api": "key_management",
    "/v5/user/update-api": "key_management",
    "/v5/user/update-sub-api": "key_management",
    "/v5/user/delete-api": "key_management",
    "/v5/user/delete-sub-api": "key_management",
    "/v5/user/create-sub-member": "key_management",
    "/v5/user/frozen-sub-member": "key_management",
}


@pytest.mark.parametrize(("path", "kind"), sorted(MUST_REFUSE.items()))
def test_every_must_refuse_endpoint_is_catalogued_as_dangerous(path: str, kind: str) -> None:
    assert bybit.PROFILE.classify(httpx.Request("POST", HOST + path)).kind == kind
    assert bybit.PROFILE.classify(httpx.Request("GET", HOST + path)).kind == kind


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/v5/account/wallet-balance?accountType=UNIFIED", "account_read"),
        ("GET", "/v5/user/query-api", "account_read"),
        ("GET", "/v5/asset/withdraw/query-record", "account_read"),
        ("GET", "/v5/order/realtime?category=linear", "order_read"),
        ("GET", "/v5/position/list?category=linear", "order_read"),
        ("POST", "/v5/order/create", "order_place"),
        ("POST", "/v5/order/create-batch", "order_place"),
        ("POST", "/v5/order/amend", "order_place"),
        ("POST", "/v5/position/set-leverage", "order_place"),
        ("POST", "/v5/order/cancel", "order_cancel"),
        ("POST", "/v5/order/cancel-all", "order_cancel"),
        ("POST", "/v5/order/cancel-batch", "order_cancel"),
        ("GET", "/v5/market/tickers?category=spot", "public"),
        ("GET", "/v5/market/time", "public"),
        ("POST", "/v5/account/set-margin-mode", "unknown_private"),
        ("GET", "/v5/brand-new/thing", "unknown_private"),
        ("GET", "/v5/user/del-submember?subMemberId=1", "key_management"),
        ("POST", "/v5/user/some-new-key-endpoint", "key_management"),
        ("POST", "/v5/asset/withdraw/create-v2", "withdraw"),
        ("POST", "/v5/market/../asset/withdraw/create", "withdraw"),
        ("POST", "/v5/market/..%2F..%2Fv5%2Fasset%2Ftransfer%2Finter-transfer", "transfer"),
    ],
)
def test_classification(method: str, path: str, kind: str) -> None:
    assert bybit.PROFILE.classify(httpx.Request(method, HOST + path)).kind == kind


def test_a_method_override_cannot_turn_an_order_into_a_read() -> None:
    disguised = httpx.Request(
        "POST", f"{HOST}/v5/order/create", headers={"X-HTTP-Method-Override": "GET"}
    )
    assert bybit.PROFILE.classify(disguised).kind == "unknown_private"
    assert bybit.PROFILE.parse_order(disguised) == []


DANGEROUS = sorted(
    (method, path, endpoint.kind)
    for (method, path), endpoint in bybit.ENDPOINTS.items()
    if endpoint.kind in ("withdraw", "transfer", "key_management")
)


@st.composite
def spellings(draw: st.DrawFn, path: str) -> str:
    # The leading slash stays literal: encoded, it would be part of the host.
    out: list[str] = ["/"]
    for char in path[1:]:
        if char.isalpha() and draw(st.booleans()):
            char = char.swapcase()
        if draw(st.integers(0, 5)) == 0:
            encoded = f"%{ord(char):02X}"
            char = encoded.lower() if draw(st.booleans()) else encoded
        if char == "/" and draw(st.integers(0, 4)) == 0:
            char = draw(st.sampled_from(["//", "/./", "/x/../", "/%2e/", "/%2E/"]))
        out.append(char)
    spelled = "".join(out)
    if draw(st.booleans()):
        spelled += "/"
    return spelled


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_no_spelling_of_a_dangerous_path_classifies_as_anything_else(data: st.DataObject) -> None:
    method, path, kind = data.draw(st.sampled_from(DANGEROUS))
    spelled = data.draw(spellings(path))
    headers = {}
    if data.draw(st.booleans()):
        header = data.draw(
            st.sampled_from(["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
        )
        headers[header] = data.draw(st.sampled_from(["GET", "get", "POST", "DELETE", "PUT"]))
    verb = data.draw(st.sampled_from([method, "GET", "POST", "PUT", "DELETE"]))
    request = httpx.Request(verb, HOST + spelled, headers=headers)
    assert bybit.PROFILE.classify(request).kind == kind


# -- order intents ------------------------------------------------------------------------------


def order_request(
    path: str, body: Any, *, raw: bytes | None = None, query: str = ""
) -> httpx.Request:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.Request("POST", f"{HOST}{path}{query}", content=content)


def test_single_order_intent_reads_every_field_as_decimal() -> None:
    raw = (
        b'{"category":"linear","symbol":"BTCUSDT","side":"Sell","orderType":"Limit",'
        b'"qty":0.1,"price":"30000.10","orderLinkId":"kb1","reduceOnly":true,"positionIdx":0}'
    )
    [intent] = bybit.PROFILE.parse_order(order_request("/v5/order/create", None, raw=raw))
    assert intent.symbol == "BTCUSDT"
    assert (intent.side, intent.type) == ("sell", "limit")
    assert intent.quantity == Decimal("0.1") and isinstance(intent.quantity, Decimal)
    assert intent.price == Decimal("30000.10")
    assert intent.client_order_id == "kb1"
    assert intent.reduce_only is True


def test_batch_orders_give_one_intent_per_order_with_the_batch_category() -> None:
    body = {
        "category": "linear",
        "request": [
            {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "1", "price": "2"},
            {"symbol": "ETHUSDT", "side": "Sell", "orderType": "Market", "qty": "3"},
        ],
    }
    intents = bybit.PROFILE.parse_order(order_request("/v5/order/create-batch", body))
    assert [(i.symbol, i.quantity, i.quote_quantity) for i in intents] == [
        ("BTCUSDT", Decimal(1), None),
        ("ETHUSDT", Decimal(3), None),
    ]


def test_spot_market_buy_qty_is_quote_unless_market_unit_says_base() -> None:
    base = {
        "category": "spot",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Market",
        "qty": "100",
    }
    [default] = bybit.PROFILE.parse_order(order_request("/v5/order/create", base))
    assert (default.quantity, default.quote_quantity) == (None, Decimal(100))
    [as_base] = bybit.PROFILE.parse_order(
        order_request("/v5/order/create", {**base, "marketUnit": "baseCoin"})
    )
    assert (as_base.quantity, as_base.quote_quantity) == (Decimal(100), None)
    [sell_quote] = bybit.PROFILE.parse_order(
        order_request("/v5/order/create", {**base, "side": "Sell", "marketUnit": "quoteCoin"})
    )
    assert sell_quote.quote_quantity == Decimal(100)
    [linear] = bybit.PROFILE.parse_order(
        order_request("/v5/order/create", {**base, "category": "linear"})
    )
    assert linear.quantity == Decimal(100)


def test_amend_leverage_and_trading_stop_intents() -> None:
    [amend] = bybit.PROFILE.parse_order(
        order_request(
            "/v5/order/amend",
            {
                "category": "linear",
                "symbol": "BTCUSDT",
                "orderLinkId": "kb1",
                "qty": "2",
                "price": "3",
            },
        )
    )
    assert (amend.type, amend.quantity, amend.price, amend.client_order_id) == (
        "amend",
        Decimal(2),
        Decimal(3),
        "kb1",
    )
    [lever] = bybit.PROFILE.parse_order(
        order_request(
            "/v5/position/set-leverage",
            {"category": "linear", "symbol": "BTCUSDT", "buyLeverage": "5", "sellLeverage": "10"},
        )
    )
    assert lever.leverage == Decimal(10)
    [stop] = bybit.PROFILE.parse_order(
        order_request(
            "/v5/position/trading-stop",
            {"category": "linear", "symbol": "BTCUSDT", "stopLoss": "20000", "positionIdx": 0},
        )
    )
    assert stop.reduce_only is True


def test_non_order_requests_give_no_intents() -> None:
    assert bybit.PROFILE.parse_order(httpx.Request("GET", f"{HOST}/v5/order/realtime")) == []
    cancel = order_request("/v5/order/cancel", {"category": "spot", "symbol": "BTCUSDT"})
    assert bybit.PROFILE.parse_order(cancel) == []


@pytest.mark.parametrize(
    ("path", "raw", "query"),
    [
        ("/v5/order/create", b'{"category":"spot","symbol":"BTCUSDT","qty":"1","qty":"100"}', ""),
        ("/v5/order/create", b'{"category":"spot","symbol":"BTCUSDT","qty":Infinity}', ""),
        ("/v5/order/create", b'{"category":"spot","symbol":"BTCUSDT","qty":"0x10"}', ""),
        ("/v5/order/create", b'{"category":"spot","symbol":"BTCUSDT","qty":"-1"}', ""),
        ("/v5/order/create", b'{"category":"spot","qty":"1"}', ""),
        ("/v5/order/create", b'{"symbol":"BTCUSDT","qty":"1"}', ""),
        ("/v5/order/create", b'["category"]', ""),
        ("/v5/order/create", b'{"category":"spot","symbol":"BTCUSDT","qty":"1"}', "?qty=100"),
        ("/v5/order/create-batch", b'{"category":"spot","request":[]}', ""),
        ("/v5/order/create-batch", b'{"category":"spot","request":{"symbol":"BTCUSDT"}}', ""),
        ("/v5/order/create-batch", b'{"category":"spot","request":["BTCUSDT"]}', ""),
        ("/v5/order/create", b"\xff\xfe{}", ""),
    ],
)
def test_malformed_orders_are_refused(path: str, raw: bytes, query: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        bybit.PROFILE.parse_order(order_request(path, None, raw=raw, query=query))
    assert "BTCUSDT" not in str(caught.value)


# -- errors ------------------------------------------------------------------------------------

ECHO = "error sign! origin_string[1658384314791FAKEbybitKEY5000category=spot]"


def body(code: int, extra: Any = None, **fields: Any) -> bytes:
    return json.dumps(
        {"retCode": code, "retMsg": ECHO, "result": {}, "retExtInfo": extra or {}, **fields}
    ).encode()


@pytest.mark.parametrize(
    ("status", "payload", "error", "code"),
    [
        (200, body(10003), AuthenticationFailed, 10003),
        (200, body(10004), AuthenticationFailed, 10004),
        (200, body(10005), AuthenticationFailed, 10005),
        (200, body(10010), AuthenticationFailed, 10010),
        (401, b"", AuthenticationFailed, None),
        (200, body(10002), TimestampOutsideWindow, 10002),
        (200, body(10006), RateLimitedUpstream, 10006),
        (429, b"", RateLimitedUpstream, None),
        (403, b"<html>access too frequent</html>", IPBanned, None),
        (200, body(10016), ExchangeUnavailable, 10016),
        (502, b"bad gateway", ExchangeUnavailable, None),
        (200, body(110007), InsufficientBalance, 110007),
        (200, body(170131), InsufficientBalance, 170131),
        (200, body(110017), OrderRejected, 110017),
        (200, body(10001), OrderRejected, 10001),
        (200, body(181234), OrderRejected, 181234),
        (200, body(12345), ExchangeRejected, 12345),
        (
            200,
            body(0, {"list": [{"code": 110007, "msg": "x"}, {"code": 170131, "msg": "y"}]}),
            InsufficientBalance,
            110007,
        ),
    ],
)
def test_error_map(status: int, payload: bytes, error: type, code: int | None) -> None:
    mapped = bybit.PROFILE.map_error(status, payload, {})
    assert type(mapped) is error
    assert mapped is not None
    assert (mapped.code, mapped.exchange, mapped.status) == (code, "bybit", status)
    # Bybit's bad-signature message echoes the signed text: never copied.
    assert "origin_string" not in str(mapped) and "FAKEbybitKEY" not in str(mapped)


def test_successes_map_to_none() -> None:
    assert bybit.PROFILE.map_error(200, body(0), {}) is None
    partial = body(0, {"list": [{"code": 0, "msg": "OK"}, {"code": 110007, "msg": "x"}]})
    assert bybit.PROFILE.map_error(200, partial, {}) is None
    assert bybit.PROFILE.map_error(200, b"", {}) is None


def test_rate_limit_retry_after_comes_from_the_reset_header_and_server_time() -> None:
    mapped = bybit.PROFILE.map_error(
        200, body(10006, time=1_700_000_000_000), {"X-Bapi-Limit-Reset-Timestamp": "1700000000250"}
    )
    assert isinstance(mapped, RateLimitedUpstream) and mapped.retry_after == 0.25
    mapped = bybit.PROFILE.map_error(200, body(10006), {})
    assert isinstance(mapped, RateLimitedUpstream) and mapped.retry_after == 1.0
    banned = bybit.PROFILE.map_error(403, b"", {})
    assert isinstance(banned, IPBanned) and banned.retry_after == 600.0


# -- key permissions ---------------------------------------------------------------------------


def query_api(
    wallet: list[str],
    ips: Any = ("1.2.3.4",),
    read_only: int = 0,
    spot: tuple[str, ...] = ("SpotTrade",),
) -> bytes:
    result: dict[str, Any] = {
        "id": "1",
        "readOnly": read_only,
        "permissions": {
            "ContractTrade": [],
            "Spot": list(spot),
            "Wallet": wallet,
            "Options": [],
            "Derivatives": [],
        },
    }
    if ips is not None:
        result["ips"] = list(ips)
    return json.dumps({"retCode": 0, "retMsg": "", "result": result}).encode()


def test_permission_request_targets_query_api() -> None:
    assert bybit.PROFILE.permission_request is bybit.permission_request
    request = bybit.permission_request("production")
    assert (request.method, str(request.url)) == ("GET", f"{HOST}/v5/user/query-api")
    assert bybit.permission_request("testnet").url.host == "api-testnet.bybit.com"
    assert bybit.PROFILE.classify(request).kind == "account_read"


def test_permissions_are_read_from_wallet_read_only_and_ips() -> None:
    safe = bybit.PROFILE.permissions(query_api(["AccountTransfer"]))
    assert (safe.can_read, safe.can_trade, safe.can_withdraw, safe.ip_restricted) == (
        True,
        True,
        False,
        True,
    )
    risky = bybit.PROFILE.permissions(query_api(["AccountTransfer", "Withdraw"], ips=["*"]))
    assert risky.can_withdraw and risky.ip_restricted is False
    read_only = bybit.PROFILE.permissions(query_api([], read_only=1))
    assert not read_only.can_trade
    assert bybit.PROFILE.permissions(query_api([], ips=None)).ip_restricted is None


def test_permission_answers_that_say_nothing_are_refused() -> None:
    with pytest.raises(AuthenticationFailed):
        bybit.PROFILE.permissions(body(10003))
    with pytest.raises(InvalidInput):
        bybit.PROFILE.permissions(json.dumps({"retCode": 0, "result": {"ips": []}}).encode())
    with pytest.raises(InvalidInput):
        bybit.PROFILE.permissions(
            json.dumps({"retCode": 0, "result": {"permissions": {"Wallet": "Withdraw"}}}).encode()
        )


# -- profile ------------------------------------------------------------------------------------


def test_profile_is_registered_with_urls_and_credential_rules(rsa_pem: bytes) -> None:
    profile = get_profile("bybit")
    assert profile is bybit.PROFILE
    assert not profile.needs_passphrase and profile.key_types == ("hmac", "rsa")
    assert profile.base_url("/v5/order/create", "production") == "https://api.bybit.com"
    assert profile.base_url("/v5/order/create", "testnet") == "https://api-testnet.bybit.com"
    assert profile.base_url("/v5/order/create", "demo") == "https://api-demo.bybit.com"
    profile.check_credential("FAKEkey", Secret(SECRET), None, "hmac")
    profile.check_credential("FAKEkey", Secret(rsa_pem), None, "rsa")
    with pytest.raises(InvalidInput, match="RSA private key") as caught:
        profile.check_credential("FAKEkey", Secret(SECRET), None, "rsa")
    assert SECRET not in str(caught.value)
    with pytest.raises(InvalidInput):
        profile.check_credential("FAKEkey", Secret(rsa_pem), None, "hmac")
    with pytest.raises(InvalidInput):
        profile.check_credential("FAKEkey", Secret(rsa_pem), None, "ed25519")
