"""Bitfinex: our signer against ccxt's, used as an oracle.

ccxt signs with a throwaway secret and a frozen nonce; our signer gets the
request ccxt built with PLACEHOLDER credentials and must produce ccxt's real
signature and otherwise the same request. Bitfinex has no authenticated GET
(every /v2/auth call is a POST with a JSON body), so the "GET with query
parameters" case is covered by an authenticated read with body parameters and
a path parameter, and by the query-string rule below.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

import httpx
import pytest

from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret

ccxt = pytest.importorskip("ccxt")

PROFILE = get_profile("bitfinex")
SECRET = "keybroker-test-secret-not-real-0001"
API_KEY = "keybroker-test-key-not-real"
NONCE = 1700000000123456


def ccxt_sign(
    path: str, params: dict[str, Any], *, api_key: str, secret: str, nonce: int
) -> dict[str, Any]:
    exchange = ccxt.bitfinex({"apiKey": api_key, "secret": secret})
    exchange.nonce = lambda: nonce  # incrementing_nonce() starts from nonce()
    exchange.milliseconds = lambda: nonce
    signed: dict[str, Any] = exchange.sign(path, ["private"], "POST", copy.deepcopy(params))
    return signed


def to_request(signed: dict[str, Any]) -> httpx.Request:
    body = signed["body"]
    return httpx.Request(
        signed["method"],
        signed["url"],
        headers=signed["headers"],
        content=body.encode("utf-8") if body is not None else None,
    )


def assert_same_request(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert ours.method == theirs.method
    assert str(ours.url) == str(theirs.url)
    assert ours.read() == theirs.read()
    assert {k.lower(): v for k, v in ours.headers.items()} == {
        k.lower(): v for k, v in theirs.headers.items()
    }


def check(path: str, params: dict[str, Any]) -> httpx.Request:
    real = ccxt_sign(path, params, api_key=API_KEY, secret=SECRET, nonce=NONCE)
    placeholder = ccxt_sign(path, params, api_key="placeholder", secret="placeholder", nonce=1)
    credential = Credential("t", "bitfinex", API_KEY, Secret(SECRET), environment="production")
    ours = PROFILE.sign(to_request(placeholder), credential, nonce=NONCE)
    assert ours.headers["bfx-signature"] == real["headers"]["bfx-signature"]
    assert_same_request(ours, to_request(real))
    return ours


def test_order_submit_with_several_params_and_json_escaping() -> None:
    ours = check(
        "auth/w/order/submit",
        {
            "type": "EXCHANGE LIMIT",
            "symbol": "tBTCUSD",
            "amount": "-0.015",
            "price": "43210.5",
            "cid": 1700000000001,
            "flags": 4096,
            "tif": "2030-01-01 10:45:23",
            "meta": {"aff_code": 'k\u00e9y"br\\oker \u2603'},
        },
    )
    assert PROFILE.classify(ours).kind == "order_place"
    [intent] = PROFILE.parse_order(ours)
    assert (intent.symbol, intent.side, str(intent.quantity)) == ("tBTCUSD", "sell", "0.015")


def test_order_multi() -> None:
    order = {"type": "EXCHANGE LIMIT", "symbol": "tETHUSD", "amount": "1", "price": "2000"}
    ours = check("auth/w/order/multi", {"ops": [["on", order], ["oc", {"id": 42}]]})
    assert PROFILE.classify(ours).kind == "order_place"
    assert len(PROFILE.parse_order(ours)) == 1


def test_cancel_by_client_id() -> None:
    ours = check("auth/w/order/cancel", {"cid": 1700000000001, "cid_date": "2023-11-14"})
    assert PROFILE.classify(ours).kind == "order_cancel"


def test_cancel_multi() -> None:
    ours = check("auth/w/order/cancel/multi", {"id": [1, 2, 3]})
    assert PROFILE.classify(ours).kind == "order_cancel"


def test_read_with_path_and_body_params() -> None:
    # A path parameter with a character some encoders escape (":"): signed as sent.
    ours = check(
        "auth/r/orders/{symbol}/hist",
        {"symbol": "tTESTBTC:TESTUSD", "start": 1690000000000, "end": 1700000000000, "limit": 25},
    )
    assert ours.url.raw_path == b"/v2/auth/r/orders/tTESTBTC:TESTUSD/hist"
    assert PROFILE.classify(ours).kind == "order_read"


def test_permission_endpoint_matches_ccxts_call() -> None:
    real = ccxt_sign("auth/r/permissions", {}, api_key=API_KEY, secret=SECRET, nonce=NONCE)
    assert PROFILE.permission_request is not None
    request = PROFILE.permission_request("production")
    credential = Credential("t", "bitfinex", API_KEY, Secret(SECRET), environment="production")
    ours = PROFILE.sign(request, credential, nonce=NONCE)
    assert_same_request(ours, to_request(real))
    check("auth/r/permissions", {})


def test_query_string_on_a_private_call_follows_the_official_sdk_not_ccxt() -> None:
    # Deliberate: ccxt never sends a query on private calls. Bitfinex's official
    # Python SDK (bfxapi/rest/_interface/middleware.py) sends `params` as an
    # unsigned query and signs "/api/v2/" + endpoint + nonce + body; that rule is
    # written out here, independently of our signer.
    url = "https://api.bitfinex.com/v2/auth/r/movements/hist?limit=5"
    body = b'{"start":1}'
    credential = Credential("t", "bitfinex", API_KEY, Secret(SECRET), environment="production")
    ours = PROFILE.sign(httpx.Request("POST", url, content=body), credential, nonce=NONCE)
    message = f"/api/v2/auth/r/movements/hist{NONCE}".encode() + body
    assert ours.headers["bfx-signature"] == (
        hmac.new(SECRET.encode(), message, hashlib.sha384).hexdigest()
    )
    assert str(ours.url) == url


def test_nonce_scale_differs_from_ccxt_on_purpose() -> None:
    # ccxt counts milliseconds; keybroker counts microseconds (larger than both
    # ccxt's and the official SDK's), so a key either of them used keeps working.
    assert PROFILE.nonces.next("scale-check", 1_700_000_000_000) > 1_700_000_000_000 * 999
