"""Coinbase Exchange: our signer against ccxt's, used as an oracle.

ccxt signs with a throwaway secret and passphrase and a frozen clock; our
signer gets the request ccxt built with PLACEHOLDER credentials and must
produce ccxt's real signature and otherwise the same request. Coinbase
Exchange has no key-permission endpoint; the account read stands in for it.

Where we differ on purpose (exchange-auth.md §8.3, §12.2): for a DELETE with
parameters, ccxt moves them into a JSON body and signs that body. We recommend
the query string, as Coinbase documents for cancels, and sign it as part of
``requestPath``. Our signer signs whatever it is given (so ccxt's form still
gets ccxt's signature); the last test shows the query form verifies under
Coinbase's rule, written here independently of our signer.
"""

from __future__ import annotations

import base64
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

PROFILE = get_profile("coinbase-exchange")
API_KEY = "keybroker-cbx-test-key-not-real"
SECRET = base64.b64encode(b"keybroker-cbx-test-secret-not-real-0001".ljust(64, b"c")).decode()
PASSPHRASE = "not-a-real-passphrase"
NOW_MS = 1_700_000_000_123
CREDENTIAL = Credential(
    "c", "coinbase-exchange", API_KEY, Secret(SECRET), passphrase=Secret(PASSPHRASE)
)


def ccxt_sign(
    path: str,
    method: str,
    params: dict[str, Any],
    *,
    api_key: str,
    secret: str,
    passphrase: str,
    now_ms: int,
) -> dict[str, Any]:
    exchange = ccxt.coinbaseexchange({"apiKey": api_key, "secret": secret, "password": passphrase})
    exchange.milliseconds = lambda: now_ms
    exchange.seconds = lambda: now_ms // 1000  # its nonce() is seconds()
    signed: dict[str, Any] = exchange.sign(path, ["private"], method, copy.deepcopy(params))
    return signed


def to_request(signed: dict[str, Any]) -> httpx.Request:
    body = signed["body"]
    return httpx.Request(
        signed["method"],
        signed["url"],
        headers=signed["headers"] or {},
        content=body.encode("utf-8") if body is not None else None,
    )


def assert_same_request(ours: httpx.Request, theirs: httpx.Request) -> None:
    assert ours.method == theirs.method
    assert str(ours.url) == str(theirs.url)
    assert ours.read() == theirs.read()

    # ccxt always sends Content-Type: application/json, even without a body; we add it
    # only when there is a body to describe. It is not signed.
    def comparable(request: httpx.Request) -> dict[str, str]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not request.read():
            headers.pop("content-type", None)
        return headers

    assert comparable(ours) == comparable(theirs)


def coinbase_verifies(request: httpx.Request) -> bool:
    """Coinbase's rule from its docs, independent of our signer.

    ``base64(HMAC-SHA256(b64decode(secret), timestamp + METHOD + path?query + body))``.
    """
    prehash = (
        request.headers["CB-ACCESS-TIMESTAMP"].encode()
        + request.method.encode()
        + request.url.raw_path
        + request.read()
    )
    digest = hmac.new(base64.b64decode(SECRET), prehash, hashlib.sha256).digest()
    return hmac.compare_digest(base64.b64encode(digest), request.headers["CB-ACCESS-SIGN"].encode())


CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "place-order-several-params-json-escaping": (
        "orders",
        "POST",
        {
            "product_id": "BTC-USD",
            "side": "buy",
            "type": "limit",
            "price": "43210.5",
            "size": "0.015",
            "time_in_force": "GTC",
            "post_only": True,
            "client_oid": 'kb-é"1\\',
        },
    ),
    "get-with-query-and-url-encoding": (
        "orders",
        "GET",
        {"status": "open", "product_id": "BTC USD/é&x", "limit": 10},
    ),
    "cancel": ("orders/{id}", "DELETE", {"id": "d0c5340b-6d6c-49d9-b567-48c4bfca13d2"}),
    "cancel-by-client-id": ("orders/client:{client_oid}", "DELETE", {"client_oid": "kb-1"}),
    "cancel-with-params-ccxt-json-body": (
        "orders/{id}",
        "DELETE",
        {"id": "d0c5340b-6d6c-49d9-b567-48c4bfca13d2", "product_id": "BTC-USD"},
    ),
    "account-read": ("accounts/{id}/ledger", "GET", {"id": "a-1", "limit": 5}),
}


@pytest.mark.parametrize(("path", "method", "params"), CASES.values(), ids=list(CASES))
def test_our_signature_equals_ccxts(path: str, method: str, params: dict[str, Any]) -> None:
    placeholder = ccxt_sign(
        path,
        method,
        params,
        api_key="PLACEHOLDER",
        secret=base64.b64encode(bytes(32)).decode(),
        passphrase="placeholder",
        now_ms=1_000,
    )
    theirs = ccxt_sign(
        path, method, params, api_key=API_KEY, secret=SECRET, passphrase=PASSPHRASE, now_ms=NOW_MS
    )
    ours = PROFILE.sign(to_request(placeholder), CREDENTIAL, now_ms=NOW_MS)
    assert_same_request(ours, to_request(theirs))
    assert coinbase_verifies(ours)


def test_cancel_with_query_string_verifies_under_coinbases_rule() -> None:
    theirs = ccxt_sign(
        "orders/{id}",
        "DELETE",
        {"id": "o-1", "product_id": "BTC-USD"},
        api_key=API_KEY,
        secret=SECRET,
        passphrase=PASSPHRASE,
        now_ms=NOW_MS,
    )
    assert theirs["body"] == '{"product_id":"BTC-USD"}'  # ccxt's form: a body on a DELETE
    recommended = httpx.Request(
        "DELETE", "https://api.exchange.coinbase.com/orders/o-1?product_id=BTC-USD"
    )
    ours = PROFILE.sign(recommended, CREDENTIAL, now_ms=NOW_MS)
    assert ours.read() == b"" and ours.url.query == b"product_id=BTC-USD"
    assert coinbase_verifies(ours)
    assert ours.headers["CB-ACCESS-SIGN"] != theirs["headers"]["CB-ACCESS-SIGN"]
