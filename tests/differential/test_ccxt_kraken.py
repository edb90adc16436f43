"""Kraken: our signer against ccxt's, used as an oracle.

ccxt signs with a throwaway secret and a frozen nonce; our signer gets the
request ccxt built with PLACEHOLDER credentials (and another nonce) and must
produce ccxt's real signature and otherwise the same request, byte for byte.
Kraken has no authenticated GET (every private call is a POST with the
parameters in the body), so the "GET with query parameters" case is an
authenticated read with body parameters.

Where we differ on purpose: given a JSON body without a nonce we insert it as
a JSON number (Kraken's reference types it int64; ccxt always builds the body
itself and writes a string). The last test shows that form verifies under
Kraken's rule, written here independently of our signer.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret

ccxt = pytest.importorskip("ccxt")

PROFILE = get_profile("kraken")
API_KEY = "keybroker-kraken-test-key-not-real"
SECRET = base64.b64encode(b"keybroker-kraken-test-secret-not-real-".ljust(64, b"k")).decode()
PLACEHOLDER_SECRET = base64.b64encode(bytes(64)).decode()
NONCE = 1700000000123
CREDENTIAL = Credential("k", "kraken", API_KEY, Secret(SECRET), environment="production")


def ccxt_sign(
    path: str, params: dict[str, Any], *, api_key: str, secret: str, nonce: int
) -> dict[str, Any]:
    exchange = ccxt.kraken({"apiKey": api_key, "secret": secret})
    exchange.milliseconds = lambda: nonce  # nonce() and incrementing_nonce() start here
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


def kraken_verifies(request: httpx.Request) -> bool:
    """Kraken's check from its docs: HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body))."""
    body = request.read()
    if request.headers["Content-Type"].startswith("application/json"):
        nonce = str(json.loads(body)["nonce"]).encode()
    else:
        fields = dict(part.split(b"=", 1) for part in body.split(b"&"))
        nonce = fields[b"nonce"]
    message = request.url.raw_path.split(b"?")[0] + hashlib.sha256(nonce + body).digest()
    digest = hmac.new(base64.b64decode(SECRET), message, hashlib.sha512).digest()
    return hmac.compare_digest(base64.b64encode(digest), request.headers["API-Sign"].encode())


CASES = {
    "add-order-several-params-and-url-encoding": (
        "AddOrder",
        {
            "pair": "XBTUSD",
            "type": "sell",
            "ordertype": "stop-loss-limit",
            "price": "30000",
            "price2": "29950.5",
            "volume": "0.25",
            "oflags": "post,fciq",
            "cl_ord_id": "kb order/1 é&x=y+z",
            "leverage": "2",
            "reduce_only": True,
        },
    ),
    "add-order-batch-json-escaping": (
        "AddOrderBatch",
        {
            "pair": "XBTUSD",
            "orders": [
                {
                    "type": "buy",
                    "ordertype": "limit",
                    "volume": "1.5",
                    "price": "25000",
                    "cl_ord_id": 'a"b\\é',
                },
                {"type": "sell", "ordertype": "limit", "volume": "2", "price": "26000.1"},
            ],
        },
    ),
    "cancel-order": ("CancelOrder", {"txid": "OEPPJX-34RMM-OROGZE"}),
    "cancel-order-batch": ("CancelOrderBatch", {"orders": ["OEPPJX-34RMM-OROGZE", "cl-1"]}),
    "read-with-params": ("ClosedOrders", {"trades": True, "start": "1700000000", "ofs": 50}),
    "permission-endpoint": ("GetApiKeyInfo", {}),
}


@pytest.mark.parametrize(("path", "params"), CASES.values(), ids=list(CASES))
def test_our_signature_equals_ccxts(path: str, params: dict[str, Any]) -> None:
    placeholder = ccxt_sign(path, params, api_key="PLACEHOLDER", secret=PLACEHOLDER_SECRET, nonce=1)
    theirs = ccxt_sign(path, params, api_key=API_KEY, secret=SECRET, nonce=NONCE)
    ours = PROFILE.sign(to_request(placeholder), CREDENTIAL, nonce=NONCE)
    assert_same_request(ours, to_request(theirs))
    assert kraken_verifies(ours)


def test_published_example_through_ccxt() -> None:
    secret = (
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    )
    params = {
        "ordertype": "limit",
        "pair": "XBTUSD",
        "price": "37500",
        "type": "buy",
        "volume": "1.25",
    }
    theirs = ccxt_sign("AddOrder", params, api_key="k", secret=secret, nonce=1616492376594)
    placeholder = ccxt_sign("AddOrder", params, api_key="k", secret=PLACEHOLDER_SECRET, nonce=5)
    ours = PROFILE.sign(
        to_request(placeholder),
        Credential("k", "kraken", "k", Secret(secret), environment="production"),
        nonce=1616492376594,
    )
    expected = (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    )
    assert ours.headers["API-Sign"] == theirs["headers"]["API-Sign"] == expected


def test_permission_request_matches_ccxts_call() -> None:
    assert PROFILE.permission_request is not None
    ours = PROFILE.sign(PROFILE.permission_request("production"), CREDENTIAL, nonce=NONCE)
    theirs = ccxt_sign("GetApiKeyInfo", {}, api_key=API_KEY, secret=SECRET, nonce=NONCE)
    assert_same_request(ours, to_request(theirs))


def test_json_body_without_nonce_verifies_under_krakens_rule() -> None:
    # Deliberate difference: ccxt never sees this shape (it writes the nonce as a string).
    request = httpx.Request(
        "POST",
        "https://api.kraken.com/0/private/AmendOrder",
        headers={"Content-Type": "application/json"},
        content=b'{"cl_ord_id":"c1","order_qty":"3","limit_price":"99.5"}',
    )
    ours = PROFILE.sign(request, CREDENTIAL, nonce=NONCE)
    assert (
        ours.read()
        == b'{"nonce":1700000000123,"cl_ord_id":"c1","order_qty":"3","limit_price":"99.5"}'
    )
    assert kraken_verifies(ours)
