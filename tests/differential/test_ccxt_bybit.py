"""Bybit: our signer against ccxt's, used as an oracle, and where we differ on purpose.

ccxt signs with a throwaway secret (HMAC, or an RSA key generated here) and a
frozen clock; our signer gets the request ccxt built with PLACEHOLDER
credentials and must produce ccxt's real signature and otherwise the same
request, byte for byte.

Deliberate difference (spec §5.1, §12.2): ccxt builds GET queries with
``rawencode`` (no percent-encoding) and signs that text, but no HTTP client can
send a space or a non-ASCII character in a URL as is: httpx encodes them, so
the query Bybit receives is not the one ccxt signed. keybroker signs the query
as it goes on the wire. The tests below show that our request verifies under
Bybit's documented rule (written out here, independently of the signer) and
that ccxt's does not.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from typing import Any

import ccxt
import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keybroker.exchanges import bybit
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = bybit.PROFILE
API_KEY = "keybroker-test-bybit-key-not-real"
SECRET = "FAKEbybitSECRETnotREAL0123456789ab"
NOW = 1_700_000_000_123


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def credential(secret: str = SECRET, key_type: str = "hmac") -> Credential:
    return Credential(
        "t", "bybit", API_KEY, Secret(secret), key_type=key_type, environment="production"
    )


def ccxt_sign(
    path: str,
    method: str,
    params: Any,
    *,
    api_key: str,
    secret: str,
    now_ms: int,
    recv_window: int | None = None,
) -> dict[str, Any]:
    exchange = ccxt.bybit({"apiKey": api_key, "secret": secret})
    exchange.nonce = lambda: now_ms
    exchange.milliseconds = lambda: now_ms
    if recv_window is not None:
        exchange.options["recvWindow"] = recv_window
    signed: dict[str, Any] = exchange.sign(path, ["private"], method, copy.deepcopy(params))
    return signed


def to_request(signed: dict[str, Any]) -> httpx.Request:
    body = signed["body"]
    return httpx.Request(
        signed["method"],
        signed["url"],
        headers=signed["headers"],
        content=body.encode("utf-8") if body is not None else None,
    )


def lowered(request: httpx.Request) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def check(
    path: str,
    method: str,
    params: Any,
    *,
    secret: str = SECRET,
    key_type: str = "hmac",
    recv_window: int | None = None,
) -> httpx.Request:
    real = ccxt_sign(
        path, method, params, api_key=API_KEY, secret=secret, now_ms=NOW, recv_window=recv_window
    )
    placeholder = ccxt_sign(
        path,
        method,
        params,
        api_key="placeholder",
        secret="placeholder-secret",
        now_ms=1,
        recv_window=recv_window,
    )
    cred = credential(secret, key_type)
    ours = PROFILE.sign(to_request(placeholder), cred, now_ms=NOW)
    theirs = to_request(real)
    assert ours.headers["X-BAPI-SIGN"] == real["headers"]["X-BAPI-SIGN"]
    assert ours.method == theirs.method and str(ours.url) == str(theirs.url)
    assert ours.url.query == theirs.url.query  # httpx did not re-encode the query
    assert ours.read() == theirs.read()
    assert lowered(ours) == lowered(theirs)
    again = PROFILE.sign(theirs, cred, now_ms=NOW)
    assert lowered(again) == lowered(theirs) and again.url.raw_path == theirs.url.raw_path
    return ours


# -- Bybit's documented rule, independent of keybroker's signer ---------------------------------


def received_payload(request: httpx.Request) -> bytes:
    """What Bybit signs over, taken from the request as it arrives: timestamp + api key +
    recv window + (the query string as received, for GET | the body as received)."""
    head = (
        request.headers["X-BAPI-TIMESTAMP"]
        + request.headers["X-BAPI-API-KEY"]
        + request.headers["X-BAPI-RECV-WINDOW"]
    )
    return head.encode() + (request.url.query if request.method == "GET" else request.read())


def bybit_accepts(request: httpx.Request, secret: str) -> bool:
    expected = hmac.new(secret.encode(), received_payload(request), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers["X-BAPI-SIGN"])


# -- ccxt as oracle ------------------------------------------------------------


def test_create_order_with_several_params() -> None:
    signed = check(
        "v5/order/create",
        "POST",
        {
            "category": "linear",
            "symbol": "BTCUSDT",
            "side": "Sell",
            "orderType": "Limit",
            "qty": "0.25",
            "price": "43210.5",
            "timeInForce": "PostOnly",
            "orderLinkId": "kb20231114a",
            "reduceOnly": True,
            "positionIdx": 2,
        },
    )
    [intent] = PROFILE.parse_order(signed)
    assert (intent.symbol, intent.side, str(intent.quantity), intent.reduce_only) == (
        "BTCUSDT",
        "sell",
        "0.25",
        True,
    )


def test_get_with_query_params() -> None:
    check(
        "v5/order/realtime",
        "GET",
        {"category": "option", "symbol": "BTC-29JUL22-25000-C", "openOnly": 0, "limit": 20},
    )


def test_query_values_that_httpx_leaves_as_they_are() -> None:
    # "," ":" and "/" are legal in a query; ccxt sends them raw and httpx keeps them.
    check("v5/execution/list", "GET", {"category": "spot", "cursor": "page:2,abc/xyz"})


def test_batch_create_with_json_escaping() -> None:
    body = {
        "category": "spot",
        "request": [
            {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "50"},
            {
                "symbol": "ETHUSDT",
                "side": "Sell",
                "orderType": "Limit",
                "qty": "0.1",
                "price": "3000",
                "orderLinkId": 'caf\u00e9 "quoted" \\ back\u2603',
            },
        ],
    }
    signed = check("v5/order/create-batch", "POST", body)
    intents = PROFILE.parse_order(signed)
    # a spot market buy counts qty in the quote coin
    assert (intents[0].quantity, intents[0].quote_quantity) == (None, 50)
    assert (str(intents[1].quantity), intents[1].quote_quantity) == ("0.1", None)


def test_cancel_order() -> None:
    check(
        "v5/order/cancel", "POST", {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "kb1"}
    )


def test_cancel_all() -> None:
    check("v5/order/cancel-all", "POST", {"category": "linear", "settleCoin": "USDT"})


def test_permission_endpoint() -> None:
    signed = check("v5/user/query-api", "GET", {})
    ours = PROFILE.sign(bybit.permission_request("production"), credential(), now_ms=NOW)
    assert ours.url.path == signed.url.path
    assert ours.headers["X-BAPI-SIGN"] == signed.headers["X-BAPI-SIGN"]


def test_a_recv_window_set_by_the_client_is_kept() -> None:
    signed = check(
        "v5/position/list", "GET", {"category": "linear", "symbol": "BTCUSDT"}, recv_window=20000
    )
    assert signed.headers["X-BAPI-RECV-WINDOW"] == "20000"


@pytest.mark.parametrize(
    ("path", "method", "params"),
    [
        ("v5/order/realtime", "GET", {"category": "linear", "symbol": "BTCUSDT"}),
        (
            "v5/order/create",
            "POST",
            {
                "category": "linear",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "1",
                "price": "2",
            },
        ),
    ],
)
def test_rsa_keys_match_ccxt(rsa_pem: str, path: str, method: str, params: Any) -> None:
    signed = check(path, method, params, secret=rsa_pem, key_type="rsa")
    public = serialization.load_pem_private_key(rsa_pem.encode(), password=None).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        base64.b64decode(signed.headers["X-BAPI-SIGN"]),
        received_payload(signed),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


# -- where we differ from ccxt on purpose ----------------------------------------


@pytest.mark.parametrize("value", ["a b", "caf\u00e9", 'quote"d<>'])
def test_query_values_ccxt_signs_unencoded_verify_only_in_our_form(value: str) -> None:
    params = {"category": "spot", "symbol": "BTCUSDT", "cursor": value}
    real = ccxt_sign("v5/order/history", "GET", params, api_key=API_KEY, secret=SECRET, now_ms=NOW)
    placeholder = ccxt_sign(
        "v5/order/history", "GET", params, api_key="placeholder", secret="ph", now_ms=1
    )
    # ccxt signed the raw text; what httpx will put on the wire is encoded.
    assert value in real["url"]
    ccxt_on_the_wire = to_request(real)
    assert value.encode() not in ccxt_on_the_wire.url.query
    assert not bybit_accepts(ccxt_on_the_wire, SECRET)

    ours = PROFILE.sign(to_request(placeholder), credential(), now_ms=NOW)
    assert ours.headers["X-BAPI-SIGN"] != real["headers"]["X-BAPI-SIGN"]
    assert ours.url.query == ccxt_on_the_wire.url.query
    assert bybit_accepts(ours, SECRET)
    # the value Bybit decodes from our query is the one the bot asked for
    decoded = dict(httpx.QueryParams(ours.url.query.decode()))
    assert decoded["cursor"] == value
