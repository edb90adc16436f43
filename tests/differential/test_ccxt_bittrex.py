"""Bittrex v3: our signer against ccxt's rule, re-implemented here because ccxt dropped Bittrex.

ccxt 4.5.90 has no ``ccxt.bittrex`` (the last release that shipped it was
4.0.50, after the exchange announced its closure). ``ccxt_4_0_50_sign`` below
is an independent re-implementation of that version's ``sign()`` (private
API), written from its source and the v3 documentation; it shares no code with
keybroker's signer. If a future ccxt brings Bittrex back, the real one is
compared too.

Deliberate difference (spec §1): ccxt put private GET parameters into the URL
with ``rawencode`` (no percent-encoding), so a value with a space or "&" made
it sign one URL and send another. keybroker signs the URL exactly as sent.
"""

from __future__ import annotations

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

PROFILE = get_profile("bittrex")
SECRET = "keybroker-test-secret-not-real-0001"
API_KEY = "keybroker-test-key-not-real"
TS = 1600000000123
CREDENTIAL = Credential("t", "bittrex", API_KEY, Secret(SECRET), environment="production")


def ccxt_4_0_50_sign(
    path: str,
    method: str,
    params: dict[str, Any],
    *,
    api_key: str,
    secret: str,
    ts: int,
    subaccount_id: str | None = None,
) -> dict[str, Any]:
    """ccxt 4.0.50 ``bittrex.sign(path, 'private', method, params)``, re-implemented."""
    params = copy.deepcopy(params)
    url = "https://api.bittrex.com/v3/"
    for key in list(params):
        if "{" + key + "}" in path:
            path = path.replace("{" + key + "}", str(params.pop(key)))
    url += path
    body = None
    hash_string = ""
    if method == "POST":
        body = json.dumps(params, separators=(",", ":"), ensure_ascii=False)
        hash_string = body
    elif params:
        url += "?" + "&".join(f"{key}={value}" for key, value in params.items())  # rawencode
    content_hash = hashlib.sha512(hash_string.encode()).hexdigest()
    auth = f"{ts}{url}{method}{content_hash}{subaccount_id or ''}"
    signature = hmac.new(secret.encode(), auth.encode(), hashlib.sha512).hexdigest()
    headers = {
        "Api-Key": api_key,
        "Api-Timestamp": str(ts),
        "Api-Content-Hash": content_hash,
        "Api-Signature": signature,
    }
    if subaccount_id is not None:
        headers["Api-Subaccount-Id"] = subaccount_id
    if method == "POST":
        headers["Content-Type"] = "application/json"
    return {"url": url, "method": method, "body": body, "headers": headers}


def oracles() -> list[Any]:
    found: list[Any] = [ccxt_4_0_50_sign]
    if hasattr(ccxt, "bittrex"):  # pragma: no cover - not in ccxt 4.5.90

        def real_ccxt(path: str, method: str, params: dict[str, Any], **kw: Any) -> Any:
            exchange = ccxt.bittrex({"apiKey": kw["api_key"], "secret": kw["secret"]})
            exchange.milliseconds = lambda: kw["ts"]
            if kw.get("subaccount_id") is not None:
                exchange.options["subaccountId"] = kw["subaccount_id"]
            return exchange.sign(path, "private", method, copy.deepcopy(params))

        found.append(real_ccxt)
    return found


def to_request(signed: dict[str, Any]) -> httpx.Request:
    body = signed["body"]
    return httpx.Request(
        signed["method"],
        signed["url"],
        headers=signed["headers"],
        content=body.encode("utf-8") if body is not None else None,
    )


def check(path: str, method: str, params: dict[str, Any], sub: str | None = None) -> httpx.Request:
    ours = None
    for oracle in oracles():
        real = oracle(
            path, method, params, api_key=API_KEY, secret=SECRET, ts=TS, subaccount_id=sub
        )
        placeholder = oracle(
            path, method, params, api_key="placeholder", secret="ph", ts=1, subaccount_id=sub
        )
        ours = PROFILE.sign(to_request(placeholder), CREDENTIAL, now_ms=TS)
        theirs = to_request(real)
        assert ours.headers["Api-Signature"] == real["headers"]["Api-Signature"]
        assert str(ours.url) == str(theirs.url) and ours.read() == theirs.read()
        assert {k.lower(): v for k, v in ours.headers.items()} == {
            k.lower(): v for k, v in theirs.headers.items()
        }
    assert ours is not None
    return ours


def documented_rule_verifies(request: httpx.Request, secret: str) -> bool:
    """Bittrex's check (§11) from what arrives: the URL as received, the body as received."""
    content_hash = hashlib.sha512(request.read()).hexdigest()
    if content_hash != request.headers["Api-Content-Hash"]:
        return False
    url = "https://" + request.headers["host"] + request.url.raw_path.decode()
    presign = (
        request.headers["Api-Timestamp"]
        + url
        + request.method
        + content_hash
        + request.headers.get("Api-Subaccount-Id", "")
    )
    expected = hmac.new(secret.encode(), presign.encode(), hashlib.sha512).hexdigest()
    return hmac.compare_digest(expected, request.headers["Api-Signature"])


def test_ccxt_no_longer_ships_bittrex() -> None:
    # Documents why the oracle is a re-implementation; see the module docstring.
    assert not hasattr(ccxt, "bittrex") or len(oracles()) == 2


def test_order_placement_with_several_params_and_json_escaping() -> None:
    ours = check(
        "orders",
        "POST",
        {
            "marketSymbol": "BTC-USDT",
            "direction": "BUY",
            "type": "LIMIT",
            "quantity": "0.1",
            "limit": "30000.5",
            "timeInForce": "GOOD_TIL_CANCELLED",
            "clientOrderId": 'k\u00e9y"broker\\1',
        },
    )
    assert documented_rule_verifies(ours, SECRET)
    [intent] = PROFILE.parse_order(ours)
    assert intent.side == "buy" and str(intent.price) == "30000.5"


def test_get_with_query_params() -> None:
    ours = check("orders/closed", "GET", {"marketSymbol": "BTC-USDT", "pageSize": 10})
    assert documented_rule_verifies(ours, SECRET)
    assert PROFILE.classify(ours).kind == "order_read"


def test_cancel() -> None:
    ours = check("orders/{orderId}", "DELETE", {"orderId": "3a7d9c1e-0000-4000-8000-000000000001"})
    assert documented_rule_verifies(ours, SECRET)
    assert PROFILE.classify(ours).kind == "order_cancel"


def test_subaccount_is_part_of_the_signature() -> None:
    ours = check("balances", "GET", {}, sub="7d1f4a2b-0000-4000-8000-000000000002")
    assert documented_rule_verifies(ours, SECRET)


def test_no_permission_endpoint() -> None:
    assert PROFILE.permission_request is None and "no endpoint" in PROFILE.permission_note


def test_value_needing_url_encoding_ccxt_signs_a_url_it_does_not_send() -> None:
    params = {"marketSymbol": "BTC-USDT", "nextPageToken": "a b&c=d"}
    theirs = ccxt_4_0_50_sign("orders/closed", "GET", params, api_key=API_KEY, secret=SECRET, ts=TS)
    sent = to_request(theirs)  # an HTTP client has to escape the space before sending
    assert " " in theirs["url"] and b"a%20b" in sent.url.raw_path
    assert not documented_rule_verifies(sent, SECRET)  # ccxt's quirk
    # keybroker signs the URL exactly as it goes out, so it verifies.
    request = httpx.Request(
        "GET", "https://api.bittrex.com/v3/orders/closed", params={"nextPageToken": "a b&c=d"}
    )
    ours = PROFILE.sign(request, CREDENTIAL, now_ms=TS)
    assert ours.url.query == request.url.query
    assert documented_rule_verifies(ours, SECRET)
