"""OKX v5: signer (vectors, OKX's own rule), catalogue, order intents, errors, permissions."""

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
from hypothesis import HealthCheck, given, settings
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
from keybroker.exchanges import get_profile, okx
from keybroker.model import Credential
from keybroker.secret import Secret

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exchanges" / "okx.json").read_text("utf-8")
)["vectors"]
SIGNATURE_VECTORS = [v for v in VECTORS if v["kind"] == "signature"]
LAYOUT_VECTORS = [v for v in VECTORS if v["kind"] == "string_to_sign"]

NOW = 1_607_418_537_715
SECRET = "FAKE-okx-secret-0123456789ABCDEF"
PASSPHRASE = "FAKE-okx-passphrase"
HOST = "https://www.okx.com"


def credential(environment: str = "production", **changes: Any) -> Credential:
    fields: dict[str, Any] = {
        "name": "okx-test",
        "exchange": "okx",
        "api_key": "FAKE-okx-key",
        "secret": Secret(SECRET),
        "passphrase": Secret(PASSPHRASE),
        "environment": environment,
    }
    fields.update(changes)
    return Credential(**fields)


def request_from(spec: dict[str, Any]) -> httpx.Request:
    return httpx.Request(
        spec["method"], spec["url"], headers=spec["headers"], content=spec["body"].encode("utf-8")
    )


def okx_verifies(request: httpx.Request, secret: str, passphrase: str) -> bool:
    """OKX's server-side rule, written from the docs and independent of the signer:
    base64(HMAC-SHA256(secret, OK-ACCESS-TIMESTAMP + METHOD + path?query as received + body))."""
    stamp = request.headers["OK-ACCESS-TIMESTAMP"]
    message = stamp.encode() + request.method.encode() + request.url.raw_path + request.read()
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    return (
        hmac.compare_digest(expected.decode(), request.headers["OK-ACCESS-SIGN"])
        and request.headers["OK-ACCESS-PASSPHRASE"] == passphrase
        and len(request.headers.get_list("OK-ACCESS-SIGN")) == 1
    )


def wire(request: httpx.Request) -> tuple[str, str, bytes, list[tuple[str, str]], bytes]:
    """Everything that goes on the wire, in order."""
    url = request.url
    return (request.method, str(url), url.raw_path, request.headers.multi_items(), request.read())


# -- vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("vector", LAYOUT_VECTORS, ids=lambda v: v["id"])
def test_prehash_layout_matches_the_documented_example(vector: dict[str, Any]) -> None:
    request = request_from(vector["request"])
    stamp = okx.timestamp(vector["now_ms"])
    assert stamp == vector["timestamp"]
    assert okx.prehash(request, stamp).decode() == vector["expected_string_to_sign"]
    signed = okx.PROFILE.sign(request, credential(), now_ms=vector["now_ms"])
    assert signed.headers["OK-ACCESS-TIMESTAMP"] == vector["timestamp"]


@pytest.mark.parametrize("vector", LAYOUT_VECTORS, ids=lambda v: v["id"])
def test_prehash_layout_twin_with_one_byte_changed_does_not_match(vector: dict[str, Any]) -> None:
    spec = dict(vector["request"], url=vector["request"]["url"].replace("BTC", "BTD"))
    stamp = okx.timestamp(vector["now_ms"])
    assert okx.prehash(request_from(spec), stamp).decode() != vector["expected_string_to_sign"]
    assert okx.timestamp(vector["now_ms"] + 1) != vector["timestamp"]


def test_post_prehash_appends_the_exact_body_bytes() -> None:
    # §4.1: body is the raw JSON string; the docs' body example, spaces and all, is kept.
    body = b'{"instId":"BTC-USDT","lever":"5", "mgnMode":"isolated"}'
    request = httpx.Request("POST", f"{HOST}/api/v5/account/set-leverage", content=body)
    stamp = "2020-12-08T09:08:57.715Z"
    assert okx.prehash(request, stamp) == (
        b"2020-12-08T09:08:57.715ZPOST/api/v5/account/set-leverage" + body
    )


def vector_credential(vector: dict[str, Any], secret: str | None = None) -> Credential:
    data = vector["credential"]
    return credential(
        data["environment"],
        api_key=data["api_key"],
        secret=Secret(secret if secret is not None else data["secret"]),
        passphrase=Secret(data["passphrase"]),
    )


@pytest.mark.parametrize("vector", SIGNATURE_VECTORS, ids=lambda v: v["id"])
def test_signature_matches_oracle_vector(vector: dict[str, Any]) -> None:
    request = request_from(vector["request"])
    assert (
        okx.prehash(request, okx.timestamp(vector["now_ms"])).decode() == (vector["string_to_sign"])
    )
    signed = okx.PROFILE.sign(request, vector_credential(vector), now_ms=vector["now_ms"])
    for name, value in vector["expected"].items():
        assert signed.headers[name] == value
    if "x-simulated-trading" not in vector["expected"]:
        assert "x-simulated-trading" not in signed.headers
    assert okx_verifies(signed, vector["credential"]["secret"], vector["credential"]["passphrase"])


@pytest.mark.parametrize("vector", SIGNATURE_VECTORS, ids=lambda v: v["id"])
def test_signature_twins_fail(vector: dict[str, Any]) -> None:
    secret = vector["credential"]["secret"]
    wrong = ("0" if secret[0] != "0" else "1") + secret[1:]
    signed = okx.PROFILE.sign(
        request_from(vector["request"]), vector_credential(vector, wrong), now_ms=vector["now_ms"]
    )
    assert signed.headers["OK-ACCESS-SIGN"] != vector["expected"]["OK-ACCESS-SIGN"]
    changed = dict(vector["request"], url=vector["request"]["url"] + "x")
    signed = okx.PROFILE.sign(
        request_from(changed), vector_credential(vector), now_ms=vector["now_ms"]
    )
    assert signed.headers["OK-ACCESS-SIGN"] != vector["expected"]["OK-ACCESS-SIGN"]


# -- signer ------------------------------------------------------------------------------


def test_testnet_credentials_get_the_demo_header_and_production_loses_it() -> None:
    request = httpx.Request("GET", f"{HOST}/api/v5/account/balance")
    demo = okx.PROFILE.sign(request, credential("testnet"), now_ms=NOW)
    assert demo.headers.get_list("x-simulated-trading") == ["1"]
    carried = httpx.Request(
        "GET", f"{HOST}/api/v5/account/balance", headers={"X-Simulated-Trading": "1"}
    )
    live = okx.PROFILE.sign(carried, credential("production"), now_ms=NOW)
    assert "x-simulated-trading" not in live.headers
    assert okx_verifies(live, SECRET, PASSPHRASE)


def test_placeholder_auth_headers_are_replaced_not_duplicated() -> None:
    request = httpx.Request(
        "POST",
        f"{HOST}/api/v5/trade/cancel-order",
        headers=[
            ("OK-ACCESS-KEY", "placeholder"),
            ("ok-access-sign", "placeholder-signature"),
            ("OK-ACCESS-SIGN", "second-copy"),
            ("OK-ACCESS-TIMESTAMP", "2001-01-01T00:00:00.000Z"),
            ("OK-ACCESS-PASSPHRASE", "placeholder"),
            ("User-Agent", "bot/1.0"),
        ],
        content=b'{"instId":"BTC-USDT","ordId":"1"}',
    )
    signed = okx.PROFILE.sign(request, credential(), now_ms=NOW)
    for name in ("OK-ACCESS-KEY", "OK-ACCESS-SIGN", "OK-ACCESS-TIMESTAMP", "OK-ACCESS-PASSPHRASE"):
        assert len(signed.headers.get_list(name)) == 1
    assert signed.headers["OK-ACCESS-KEY"] == "FAKE-okx-key"
    assert signed.headers["User-Agent"] == "bot/1.0"
    assert signed.headers["Content-Type"] == "application/json"
    assert okx_verifies(signed, SECRET, PASSPHRASE)


def test_query_and_body_bytes_are_sent_as_signed() -> None:
    # ccxt sends "," as %2C; a space as "+"; both must stay exactly as they are.
    url = f"{HOST}/api/v5/trade/orders-history?instType=SPOT&ccy=BTC%2CETH&note=a+b&z=%7E~"
    request = httpx.Request("GET", url)
    signed = okx.PROFILE.sign(request, credential(), now_ms=NOW)
    assert signed.url.raw_path == request.url.raw_path
    assert signed.url.query == b"instType=SPOT&ccy=BTC%2CETH&note=a+b&z=%7E~"
    assert okx_verifies(signed, SECRET, PASSPHRASE)


def test_signing_refuses_credentials_that_cannot_sign() -> None:
    request = httpx.Request("GET", f"{HOST}/api/v5/account/balance")
    with pytest.raises(SigningError):
        okx.sign(request, credential(passphrase=None), NOW, None)
    with pytest.raises(SigningError):
        okx.sign(request, credential(key_type="rsa"), NOW, None)


def test_profile_refuses_a_credential_for_another_exchange() -> None:
    other = Credential("b", "bybit", "k", Secret("FAKE-s"))
    with pytest.raises(InvalidInput):
        okx.PROFILE.sign(httpx.Request("GET", f"{HOST}/api/v5/account/balance"), other)


query_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)


@st.composite
def requests(draw: st.DrawFn) -> httpx.Request:
    params = draw(
        st.lists(
            st.tuples(st.from_regex(r"[a-zA-Z]{1,6}", fullmatch=True), query_values), max_size=4
        )
    )
    if draw(st.booleans()):
        return httpx.Request("GET", f"{HOST}/api/v5/trade/orders-pending", params=params)
    body = json.dumps(dict(params), ensure_ascii=draw(st.booleans()), separators=(",", ":"))
    return httpx.Request("POST", f"{HOST}/api/v5/trade/order", content=body.encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests(), now_ms=st.integers(0, 4_102_444_800_000), testnet=st.booleans())
def test_signing_is_deterministic_idempotent_and_verifies(
    request: httpx.Request, now_ms: int, testnet: bool
) -> None:
    cred = credential("testnet" if testnet else "production")
    once = okx.PROFILE.sign(request, cred, now_ms=now_ms)
    assert wire(okx.PROFILE.sign(request, cred, now_ms=now_ms)) == wire(once)
    assert wire(okx.PROFILE.sign(once, cred, now_ms=now_ms)) == wire(once)
    assert once.url.raw_path == request.url.raw_path
    assert once.read() == request.read()
    assert okx_verifies(once, SECRET, PASSPHRASE)


# -- catalogue -----------------------------------------------------------------------------

MUST_REFUSE = {
    # §4.5, plus the rest of ccxt's API map in the same families
    "/api/v5/asset/withdrawal": "withdraw",
    "/api/v5/asset/withdrawal-lightning": "withdraw",
    "/api/v5/asset/cancel-withdrawal": "withdraw",
    "/api/v5/fiat/create-withdrawal": "withdraw",
    "/api/v5/fiat/cancel-withdrawal": "withdraw",
    "/api/v5/asset/transfer": "transfer",
    "/api/v5/asset/subaccount/transfer": "transfer",
    "/api/v5/users/subaccount/set-transfer-out": "transfer",
    "/api/v5/asset/convert/trade": "transfer",
    "/api/v5/asset/convert-dust-assets": "transfer",
    "/api/v5/trade/easy-convert": "transfer",
    "/api/v5/finance/savings/purchase-redempt": "transfer",
    "/api/v5/finance/staking-defi/purchase": "transfer",
    "/api/v5/finance/staking-defi/redeem": "transfer",
    "/api/v5/tradingBot/grid/withdraw-income": "transfer",
    "/api/v5/users/subaccount/apikey": "key_management",
    "/api/v5/users/subaccount/modify-apikey": "key_management",
    "/api/v5/users/subaccount/delete-apikey": "key_management",
    "/api/v5/broker/nd/subaccount/apikey": "key_management",
    "/api/v5/broker/nd/subaccount/modify-apikey": "key_management",
    "/api/v5/broker/nd/subaccount/delete-apikey": "key_management",
    "/api/v5/broker/dma/subaccount/apikey": "key_management",
}


@pytest.mark.parametrize(("path", "kind"), sorted(MUST_REFUSE.items()))
def test_every_must_refuse_endpoint_is_catalogued_as_dangerous(path: str, kind: str) -> None:
    assert okx.PROFILE.classify(httpx.Request("POST", HOST + path)).kind == kind
    # and under any other verb
    assert okx.PROFILE.classify(httpx.Request("GET", HOST + path)).kind == kind


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/api/v5/account/balance?ccy=BTC", "account_read"),
        ("GET", "/api/v5/account/config", "account_read"),
        ("GET", "/api/v5/asset/balances", "account_read"),
        ("GET", "/api/v5/trade/order?instId=BTC-USDT&ordId=1", "order_read"),
        ("GET", "/api/v5/trade/orders-pending", "order_read"),
        ("POST", "/api/v5/trade/order", "order_place"),
        ("POST", "/api/v5/trade/batch-orders", "order_place"),
        ("POST", "/api/v5/trade/amend-order", "order_place"),
        ("POST", "/api/v5/trade/order-algo", "order_place"),
        ("POST", "/api/v5/account/set-leverage", "order_place"),
        ("POST", "/api/v5/trade/cancel-order", "order_cancel"),
        ("POST", "/api/v5/trade/cancel-batch-orders", "order_cancel"),
        ("GET", "/api/v5/market/ticker?instId=BTC-USDT", "public"),
        ("GET", "/api/v5/public/time", "public"),
        ("GET", "/api/v5/public/instruments?instType=SPOT", "public"),
        ("POST", "/api/v5/account/set-position-mode", "unknown_private"),
        ("GET", "/api/v5/some/new-endpoint", "unknown_private"),
        ("POST", "/api/v5/asset/withdrawal-v2", "withdraw"),
        ("POST", "/api/v5/users/subaccount/new-apikey-thing", "key_management"),
        ("POST", "/api/v5/market/../asset/withdrawal", "withdraw"),
        ("POST", "/api/v5/public/..%2Fasset%2Ftransfer", "transfer"),
    ],
)
def test_classification(method: str, path: str, kind: str) -> None:
    assert okx.PROFILE.classify(httpx.Request(method, HOST + path)).kind == kind


def test_batch_endpoints_are_marked_and_orders_counted() -> None:
    endpoint = okx.CATALOGUE.endpoints[("POST", "/api/v5/trade/batch-orders")]
    assert endpoint.is_batch and endpoint.order_count == 1
    assert okx.CATALOGUE.endpoints[("POST", "/api/v5/trade/order")].order_count == 1


def test_a_method_override_cannot_turn_an_order_into_a_read() -> None:
    disguised = httpx.Request(
        "POST", f"{HOST}/api/v5/trade/order", headers={"X-HTTP-Method-Override": "GET"}
    )
    assert okx.PROFILE.classify(disguised).kind == "unknown_private"
    assert okx.PROFILE.parse_order(disguised) == []
    hidden = httpx.Request(
        "GET", f"{HOST}/api/v5/account/balance", headers={"X-HTTP-Method": "POST"}
    )
    assert okx.PROFILE.classify(hidden).kind == "unknown_private"


DANGEROUS = sorted(
    (method, path, endpoint.kind)
    for (method, path), endpoint in okx.ENDPOINTS.items()
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
    assert okx.PROFILE.classify(request).kind == kind


# -- order intents ------------------------------------------------------------------------------


def order_request(
    path: str, body: Any, *, raw: bytes | None = None, query: str = ""
) -> httpx.Request:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.Request("POST", f"{HOST}{path}{query}", content=content)


def test_single_order_intent_reads_every_field_as_decimal() -> None:
    raw = (
        b'{"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"sell","ordType":"limit",'
        b'"sz":0.1,"px":"30000.10","clOrdId":"kb1","reduceOnly":true,"posSide":"short"}'
    )
    [intent] = okx.PROFILE.parse_order(order_request("/api/v5/trade/order", None, raw=raw))
    assert intent.symbol == "BTC-USDT-SWAP"
    assert (intent.side, intent.type) == ("sell", "limit")
    assert intent.quantity == Decimal("0.1") and isinstance(intent.quantity, Decimal)
    assert intent.price == Decimal("30000.10")
    assert intent.client_order_id == "kb1"
    assert intent.reduce_only is True
    assert intent.quote_quantity is None


def test_batch_orders_give_one_intent_per_order() -> None:
    orders = [
        {
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "sz": "1",
            "px": "2",
        },
        {"instId": "ETH-USDT", "tdMode": "cash", "side": "sell", "ordType": "market", "sz": "3"},
        {
            "instId": "SOL-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "post_only",
            "sz": "4",
            "px": "5",
            "reduceOnly": "false",
        },
    ]
    intents = okx.PROFILE.parse_order(order_request("/api/v5/trade/batch-orders", orders))
    assert [i.symbol for i in intents] == ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    assert [i.quantity for i in intents] == [Decimal(1), Decimal(3), Decimal(4)]
    assert intents[2].reduce_only is False


def test_spot_market_buy_size_is_quote_by_default_and_tgtccy_decides() -> None:
    base = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "100"}
    [default] = okx.PROFILE.parse_order(order_request("/api/v5/trade/order", base))
    assert (default.quantity, default.quote_quantity) == (None, Decimal(100))
    [as_base] = okx.PROFILE.parse_order(
        order_request("/api/v5/trade/order", {**base, "tgtCcy": "base_ccy"})
    )
    assert (as_base.quantity, as_base.quote_quantity) == (Decimal(100), None)
    [sell] = okx.PROFILE.parse_order(order_request("/api/v5/trade/order", {**base, "side": "sell"}))
    assert sell.quantity == Decimal(100)
    # margin on a two-part instrument: read as base (never understates a base amount)
    [margin] = okx.PROFILE.parse_order(
        order_request("/api/v5/trade/order", {**base, "tdMode": "cross"})
    )
    assert margin.quantity == Decimal(100)
    # tgtCcy outside a SPOT market order is ignored by OKX: sz stays base or contracts
    for other in (
        {**base, "tgtCcy": "quote_ccy", "tdMode": "cross"},
        {**base, "tgtCcy": "quote_ccy", "ordType": "limit", "px": "1"},
        {**base, "tgtCcy": "quote_ccy", "instId": "BTC-USDT-SWAP"},
    ):
        [intent] = okx.PROFILE.parse_order(order_request("/api/v5/trade/order", other))
        assert (intent.quantity, intent.quote_quantity) == (Decimal(100), None)
    [sell_quote] = okx.PROFILE.parse_order(
        order_request("/api/v5/trade/order", {**base, "side": "sell", "tgtCcy": "quote_ccy"})
    )
    assert sell_quote.quote_quantity == Decimal(100)


def test_amend_algo_close_and_leverage_intents() -> None:
    [amend] = okx.PROFILE.parse_order(
        order_request(
            "/api/v5/trade/amend-order",
            {"instId": "BTC-USDT", "clOrdId": "kb1", "newSz": "2", "newPx": "3"},
        )
    )
    assert (amend.type, amend.quantity, amend.price) == ("amend", Decimal(2), Decimal(3))
    [algo] = okx.PROFILE.parse_order(
        order_request(
            "/api/v5/trade/order-algo",
            {
                "instId": "BTC-USDT",
                "tdMode": "cash",
                "side": "sell",
                "ordType": "conditional",
                "sz": "1",
                "slTriggerPx": "9",
                "slOrdPx": "-1",
                "orderPx": "-1",
                "algoClOrdId": "a1",
            },
        )
    )
    assert (algo.type, algo.price, algo.client_order_id) == ("conditional", None, "a1")
    [close] = okx.PROFILE.parse_order(
        order_request(
            "/api/v5/trade/close-position", {"instId": "BTC-USDT-SWAP", "mgnMode": "cross"}
        )
    )
    assert close.reduce_only is True
    [lever] = okx.PROFILE.parse_order(
        order_request(
            "/api/v5/account/set-leverage",
            {"instId": "BTC-USDT", "lever": "5", "mgnMode": "isolated"},
        )
    )
    assert (lever.symbol, lever.leverage) == ("BTC-USDT", Decimal(5))


def test_non_order_requests_give_no_intents() -> None:
    assert (
        okx.PROFILE.parse_order(httpx.Request("GET", f"{HOST}/api/v5/trade/order?instId=X")) == []
    )
    assert (
        okx.PROFILE.parse_order(order_request("/api/v5/trade/cancel-order", {"instId": "X"})) == []
    )


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        (b'{"instId":"BTC-USDT","sz":"1","sz":"100"}', ""),  # duplicate key
        (b'{"instId":"BTC-USDT","sz":NaN}', ""),
        (b'{"instId":"BTC-USDT","sz":"1e"}', ""),
        (b'{"instId":"BTC-USDT","sz":"1_000"}', ""),
        (b'{"instId":"BTC-USDT","sz":"-1"}', ""),
        (b'{"instId":"BTC-USDT","sz":true}', ""),
        (b'{"sz":"1"}', ""),  # no instId
        (b"[]", ""),
        (b"[1]", ""),
        (b"instId=BTC-USDT&sz=1", ""),  # form body
        (b'{"instId":"BTC-USDT","sz":"1"}', "?sz=100"),  # parameters smuggled in the query
        (b'{"instId":"BTC-USDT","sz":"1","reduceOnly":"yes"}', ""),
    ],
)
def test_malformed_orders_are_refused(raw: bytes, query: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        okx.PROFILE.parse_order(order_request("/api/v5/trade/order", None, raw=raw, query=query))
    assert "BTC-USDT" not in str(caught.value)


# -- errors ------------------------------------------------------------------------------------


def body(code: str, msg: str = "FAKE-echo secret-ish text", data: Any = None) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data or []}).encode()


@pytest.mark.parametrize(
    ("status", "payload", "error", "code"),
    [
        (401, body("50113"), AuthenticationFailed, "50113"),
        (200, body("50105"), AuthenticationFailed, "50105"),
        (200, body("50111"), AuthenticationFailed, "50111"),
        (200, body("50110"), AuthenticationFailed, "50110"),
        (200, body("50101"), AuthenticationFailed, "50101"),
        (200, body("50102"), TimestampOutsideWindow, "50102"),
        (200, body("50011"), RateLimitedUpstream, "50011"),
        (429, body("50011"), RateLimitedUpstream, "50011"),
        (200, body("50013"), ExchangeUnavailable, "50013"),
        (200, body("50004"), ExchangeUnavailable, "50004"),
        (200, body("51008"), InsufficientBalance, "51008"),
        (200, body("51008_1000"), InsufficientBalance, "51008_1000"),
        (200, body("51000"), OrderRejected, "51000"),
        (200, body("1", data=[{"sCode": "51008", "sMsg": "x"}]), InsufficientBalance, "51008"),
        (200, body("1", data=[{"sCode": "0"}, {"sCode": "51121"}]), OrderRejected, "51121"),
        (200, body("1"), OrderRejected, "1"),
        (200, body("58999"), ExchangeRejected, "58999"),
        (503, b"<html>busy</html>", ExchangeUnavailable, None),
        (429, b"", RateLimitedUpstream, None),
        (403, b"", AuthenticationFailed, None),
        (404, b"", ExchangeRejected, None),
    ],
)
def test_error_map(status: int, payload: bytes, error: type, code: str | None) -> None:
    mapped = okx.PROFILE.map_error(status, payload, {})
    assert type(mapped) is error
    assert mapped is not None
    assert (mapped.code, mapped.exchange, mapped.status) == (code, "okx", status)
    assert "FAKE-echo" not in str(mapped)


def test_successes_map_to_none() -> None:
    assert okx.PROFILE.map_error(200, body("0", data=[{"ordId": "1"}]), {}) is None
    # code 2: some orders of a batch were accepted; failing it would invite a duplicate resend
    assert (
        okx.PROFILE.map_error(200, body("2", data=[{"sCode": "0"}, {"sCode": "51008"}]), {}) is None
    )
    assert okx.PROFILE.map_error(200, b"not json", {}) is None


def test_rate_limit_retry_after() -> None:
    mapped = okx.PROFILE.map_error(200, body("50011"), {})
    assert isinstance(mapped, RateLimitedUpstream) and mapped.retry_after == 2.0
    mapped = okx.PROFILE.map_error(429, b"", {"Retry-After": "7"})
    assert isinstance(mapped, RateLimitedUpstream) and mapped.retry_after == 7.0


# -- key permissions ---------------------------------------------------------------------------


def config(perm: Any, ip: Any = "") -> bytes:
    entry: dict[str, Any] = {"uid": "1", "label": "bot", "perm": perm}
    if ip is not None:
        entry["ip"] = ip
    return json.dumps({"code": "0", "msg": "", "data": [entry]}).encode()


def test_permission_request_targets_account_config() -> None:
    assert okx.PROFILE.permission_request is okx.permission_request
    request = okx.permission_request("production")
    assert (request.method, str(request.url)) == ("GET", f"{HOST}/api/v5/account/config")
    assert okx.PROFILE.classify(request).kind == "account_read"
    demo = okx.permission_request("testnet")
    assert demo.url.path == "/api/v5/account/config"


def test_permissions_are_read_from_perm_and_ip() -> None:
    trade = okx.PROFILE.permissions(config("read_only,trade"))
    assert (trade.can_read, trade.can_trade, trade.can_withdraw, trade.ip_restricted) == (
        True,
        True,
        False,
        False,
    )
    withdraw = okx.PROFILE.permissions(config("read_only,withdraw,trade", "1.2.3.4,5.6.7.8"))
    assert withdraw.can_withdraw and withdraw.ip_restricted
    assert okx.PROFILE.permissions(config("read_only", None)).ip_restricted is None


def test_permission_answers_that_say_nothing_are_refused() -> None:
    with pytest.raises(AuthenticationFailed):
        okx.PROFILE.permissions(body("50111"))
    with pytest.raises(InvalidInput):
        okx.PROFILE.permissions(json.dumps({"code": "0", "data": [{"ip": ""}]}).encode())
    with pytest.raises(InvalidInput):
        okx.PROFILE.permissions(config(["trade"]))


# -- profile ------------------------------------------------------------------------------------


def test_profile_is_registered_with_urls_and_credential_rules() -> None:
    profile = get_profile("OKX")
    assert profile is okx.PROFILE
    assert profile.needs_passphrase and profile.key_types == ("hmac",)
    assert profile.base_url("/api/v5/trade/order", "production") == "https://www.okx.com"
    assert profile.base_url("/api/v5/trade/order", "testnet") == "https://openapi.okx.com"
    with pytest.raises(InvalidInput):
        profile.base_url("/api/v5/trade/order", "staging")
    with pytest.raises(InvalidInput, match="passphrase"):
        profile.check_credential("FAKE-key", Secret(SECRET), None, "hmac")
    with pytest.raises(InvalidInput):
        profile.check_credential("FAKE-key", Secret(SECRET), Secret(PASSPHRASE), "rsa")
    profile.check_credential("FAKE-key", Secret(SECRET), Secret(PASSPHRASE), "hmac")
