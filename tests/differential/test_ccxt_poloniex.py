"""Poloniex: our signer against ccxt's, used as an oracle, and where we differ on purpose.

ccxt signs with a throwaway secret and a frozen clock; our signer gets the
request ccxt built with PLACEHOLDER credentials and must produce ccxt's real
signature and otherwise the same request.

Deliberate difference (spec §10.1, §12.2): ccxt percent-encodes a GET
``symbol`` before urlencoding it again, so a non-ASCII symbol reaches the
server double-encoded. keybroker signs the request it is given; for a symbol
sent once-encoded, the test below shows that our signature verifies under
Poloniex's documented rule, written out here independently of the signer.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import pytest

from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret

ccxt = pytest.importorskip("ccxt")

PROFILE = get_profile("poloniex")
SECRET = "keybroker-test-secret-not-real-0001"
API_KEY = "keybroker-test-key-not-real"
TS = 1659259836247
CREDENTIAL = Credential("t", "poloniex", API_KEY, Secret(SECRET), environment="production")


def ccxt_sign(
    path: str, method: str, params: Any, *, api_key: str, secret: str, ts: int
) -> dict[str, Any]:
    exchange = ccxt.poloniex({"apiKey": api_key, "secret": secret})
    exchange.nonce = lambda: ts
    exchange.milliseconds = lambda: ts
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


def check(path: str, method: str, params: Any) -> httpx.Request:
    real = ccxt_sign(path, method, params, api_key=API_KEY, secret=SECRET, ts=TS)
    placeholder = ccxt_sign(path, method, params, api_key="placeholder", secret="ph", ts=1)
    ours = PROFILE.sign(to_request(placeholder), CREDENTIAL, now_ms=TS)
    theirs = to_request(real)
    assert ours.headers["signature"] == real["headers"]["signature"]
    assert ours.method == theirs.method and str(ours.url) == str(theirs.url)
    assert ours.url.query == theirs.url.query  # httpx did not re-encode the query
    assert ours.read() == theirs.read()
    assert {k.lower(): v for k, v in ours.headers.items()} == {
        k.lower(): v for k, v in theirs.headers.items()
    }
    return ours


# -- the exchange's documented rule, independent of keybroker's signer -----------------------

UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def encode_value(raw: bytes) -> str:
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in raw)


def server_verifies(request: httpx.Request, secret: str) -> bool:
    """Poloniex's check as documented (§10.1), from what arrives on the wire.

    GET: decode the query the server received into name/value pairs ("+" is a
    space), add signTimestamp from its header, sort by name, percent-encode the
    UTF-8 values (space as %20), join with "&". Other verbs: requestBody=<raw
    body>&signTimestamp=<ts>, or the timestamp alone without a body.
    """
    timestamp = request.headers["signTimestamp"]
    raw_path, _, raw_query = request.url.raw_path.partition(b"?")
    if request.method == "GET":
        pairs: list[tuple[bytes, bytes]] = []
        for item in raw_query.split(b"&") if raw_query else []:
            name, _, value = item.partition(b"=")
            pairs.append(
                (
                    unquote_to_bytes(name.replace(b"+", b" ")),
                    unquote_to_bytes(value.replace(b"+", b" ")),
                )
            )
        pairs.append((b"signTimestamp", timestamp.encode()))
        pairs.sort(key=lambda pair: pair[0])
        params = "&".join(f"{encode_value(n)}={encode_value(v)}" for n, v in pairs)
    else:
        body = request.read()
        params = (f"requestBody={body.decode()}&" if body else "") + f"signTimestamp={timestamp}"
    message = f"{request.method}\n{raw_path.decode()}\n{params}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    return hmac.compare_digest(expected.decode(), request.headers["signature"])


# -- ccxt as oracle -------------------------------------------------------------------------------


def test_order_placement_with_several_params_and_json_escaping() -> None:
    ours = check(
        "orders",
        "POST",
        {
            "symbol": "BTC_USDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "price": "30000.1",
            "quantity": "0.0015",
            "clientOrderId": 'kb-\u00e9"\\1',
            "stpMode": "EXPIRE_TAKER",
        },
    )
    assert server_verifies(ours, SECRET)
    [intent] = PROFILE.parse_order(ours)
    assert intent.client_order_id == 'kb-\u00e9"\\1'


def test_get_with_query_params() -> None:
    ours = check("orders", "GET", {"symbol": "ETH_USDT", "side": "BUY", "limit": 5})
    assert server_verifies(ours, SECRET)
    assert PROFILE.classify(ours).kind == "order_read"


def test_get_with_values_that_need_url_encoding() -> None:
    ours = check(
        "orders/history",
        "GET",
        {"symbol": "BTC_USDT", "direction": "PRE", "from": "a b/c&d=e+f~!*'()"},
    )
    assert server_verifies(ours, SECRET)


def test_cancel_by_id() -> None:
    ours = check("orders/{id}", "DELETE", {"id": "21934611974062080"})
    assert server_verifies(ours, SECRET)
    assert PROFILE.classify(ours).kind == "order_cancel"


def test_cancel_by_ids_with_body() -> None:
    ours = check(
        "orders/cancelByIds", "DELETE", {"orderIds": ["1234567890"], "clientOrderIds": ["my-1"]}
    )
    assert server_verifies(ours, SECRET)
    assert PROFILE.classify(ours).kind == "order_cancel"


def test_batch_orders() -> None:
    orders = [
        {"symbol": "BTC_USDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "2"},
        {"symbol": "ETH_USDT", "side": "SELL", "type": "MARKET", "quantity": "3"},
    ]
    ours = check("orders/batch", "POST", orders)
    assert server_verifies(ours, SECRET)
    assert len(PROFILE.parse_order(ours)) == 2


def test_ccxt_has_no_key_permission_call_either() -> None:
    # No permission endpoint exists in the spot API (§10.4): neither ccxt's API
    # map nor keybroker's profile has one, and the profile says why.
    paths = [
        path
        for verbs in ccxt.poloniex().api["private"].values()
        for path in verbs
        if "permission" in path.lower() or "apikey" in path.lower()
    ]
    assert paths == []
    assert PROFILE.permission_request is None and PROFILE.permission_note


# -- deliberate differences -----------------------------------------------------------------------


def test_non_ascii_symbol_ccxt_double_encodes_and_we_sign_what_is_sent() -> None:
    symbol = "\u7d22\u62c9\u62c9_USDT"
    # Given ccxt's own (double-encoded) request, we reproduce ccxt's signature:
    # we sign what is sent and never rewrite a request.
    ccxt_form = check("orders", "GET", {"symbol": symbol, "limit": 5})
    assert b"%25E7%25B4%25A2" in ccxt_form.url.query
    # What the server decodes from ccxt's URL is the escaped text, not the symbol.
    sent_value = ccxt_form.url.query.split(b"&")[0].split(b"=")[1]
    assert unquote_to_bytes(sent_value).decode() != symbol
    # A bot that sends the symbol once-encoded (httpx's params= does) gets a
    # signature that verifies under the documented rule.
    request = httpx.Request(
        "GET", "https://api.poloniex.com/orders", params={"symbol": symbol, "limit": 5}
    )
    assert request.url.query == b"symbol=%E7%B4%A2%E6%8B%89%E6%8B%89_USDT&limit=5"
    ours = PROFILE.sign(request, CREDENTIAL, now_ms=TS)
    assert server_verifies(ours, SECRET)
    assert ours.url.query == request.url.query
    # ...and one byte of difference in what was sent makes it fail.
    tampered = httpx.Request(
        "GET", str(ours.url).replace("limit=5", "limit=6"), headers=ours.headers
    )
    assert not server_verifies(tampered, SECRET)


def test_space_sent_as_plus_verifies_as_the_server_decodes_it() -> None:
    # httpx (and the Poloniex Python sample) write a space as "+"; the server
    # decodes it to a space. ccxt never sends "+", so this has no ccxt twin.
    request = httpx.Request(
        "GET", "https://api.poloniex.com/orders/history", params={"from": "a b", "limit": 5}
    )
    assert request.url.query == b"from=a+b&limit=5"
    assert server_verifies(PROFILE.sign(request, CREDENTIAL, now_ms=TS), SECRET)
