"""OKX: our signer against ccxt's, used as an oracle.

ccxt signs with a throwaway secret and a frozen clock; our signer gets the
request ccxt built with PLACEHOLDER credentials and must produce ccxt's real
signature and otherwise the same request, byte for byte.

There is no deliberate signing difference for OKX: ccxt signs the query as it
sends it (``,`` as ``%2C``, space as ``+``), and so do we. The one deliberate
difference is the demo host (ccxt keeps www.okx.com, we use the 2026 docs'
openapi.okx.com): the host is not signed, which the last test shows.
"""

from __future__ import annotations

import copy
from typing import Any

import ccxt
import httpx
import pytest

from keybroker.exchanges import okx
from keybroker.model import Credential
from keybroker.secret import Secret

PROFILE = okx.PROFILE
API_KEY = "keybroker-test-okx-key-not-real"
SECRET = "FAKE0123456789ABCDEF0123456789AB"
PASSPHRASE = "FAKE-okx-passphrase-1"
NOW = 1_700_000_000_123


def credential(environment: str = "production") -> Credential:
    return Credential(
        "t", "okx", API_KEY, Secret(SECRET), Secret(PASSPHRASE), environment=environment
    )


def ccxt_sign(
    path: str,
    method: str,
    params: Any,
    *,
    api_key: str,
    secret: str,
    passphrase: str,
    now_ms: int,
    sandbox: bool = False,
) -> dict[str, Any]:
    exchange = ccxt.okx({"apiKey": api_key, "secret": secret, "password": passphrase})
    exchange.nonce = lambda: now_ms
    exchange.milliseconds = lambda: now_ms
    # Should ccxt add its broker client order id, keep its random suffix fixed.
    exchange.uuid16 = lambda: "0123456789abcdef"
    if sandbox:
        exchange.set_sandbox_mode(True)
    signed: dict[str, Any] = exchange.sign(path, ["private"], method, copy.deepcopy(params))
    # ccxt merges its instance headers (the demo header) only when it sends.
    signed["headers"] = {**exchange.headers, **(signed["headers"] or {})}
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


def check(path: str, method: str, params: Any, *, sandbox: bool = False) -> httpx.Request:
    real = ccxt_sign(
        path,
        method,
        params,
        api_key=API_KEY,
        secret=SECRET,
        passphrase=PASSPHRASE,
        now_ms=NOW,
        sandbox=sandbox,
    )
    placeholder = ccxt_sign(
        path,
        method,
        params,
        api_key="placeholder",
        secret="placeholder-secret",
        passphrase="placeholder",
        now_ms=1,
        sandbox=sandbox,
    )
    cred = credential("testnet" if sandbox else "production")
    ours = PROFILE.sign(to_request(placeholder), cred, now_ms=NOW)
    theirs = to_request(real)
    assert ours.headers["OK-ACCESS-SIGN"] == real["headers"]["OK-ACCESS-SIGN"]
    assert ours.method == theirs.method and str(ours.url) == str(theirs.url)
    assert ours.url.query == theirs.url.query  # httpx did not re-encode the query
    assert ours.read() == theirs.read()
    assert lowered(ours) == lowered(theirs)
    # signing ccxt's own signed request again changes nothing
    again = PROFILE.sign(theirs, cred, now_ms=NOW)
    assert lowered(again) == lowered(theirs) and again.url.raw_path == theirs.url.raw_path
    return ours


def test_place_order_with_several_params() -> None:
    signed = check(
        "trade/order",
        "POST",
        {
            "instId": "BTC-USDT-SWAP",
            "tdMode": "cross",
            "side": "sell",
            "posSide": "short",
            "ordType": "limit",
            "sz": "3",
            "px": "43210.5",
            "reduceOnly": True,
            "clOrdId": "kb20231114a",
        },
    )
    [intent] = PROFILE.parse_order(signed)
    assert (intent.symbol, intent.side, str(intent.price), intent.reduce_only) == (
        "BTC-USDT-SWAP",
        "sell",
        "43210.5",
        True,
    )


def test_spot_market_buy_without_client_order_id() -> None:
    signed = check(
        "trade/order",
        "POST",
        {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "25"},
    )
    [intent] = PROFILE.parse_order(signed)
    # OKX counts a spot market buy's sz in the quote currency by default
    assert (intent.quantity, intent.quote_quantity) == (None, 25)


def test_get_with_query_params() -> None:
    check(
        "trade/orders-history",
        "GET",
        {"instType": "SPOT", "instId": "BTC-USDT", "state": "filled", "limit": "50"},
    )


def test_query_values_that_need_url_encoding() -> None:
    signed = check(
        "account/balance",
        "GET",
        {"ccy": "BTC,ETH,USDT", "note": "a b&c=d/é?+~"},
    )
    assert b"ccy=BTC%2CETH%2CUSDT" in signed.url.query


def test_batch_orders_with_json_escaping() -> None:
    orders = [
        {
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "sz": "0.001",
            "px": "20000",
            "clOrdId": "kbbatch1",
            "tag": 'caf\u00e9 "quoted" \\ back\u2603',
        },
        {
            "instId": "ETH-USDT",
            "tdMode": "cash",
            "side": "sell",
            "ordType": "limit",
            "sz": "0.1",
            "px": "3000",
            "clOrdId": "kbbatch2",
        },
    ]
    signed = check("trade/batch-orders", "POST", orders)
    intents = PROFILE.parse_order(signed)
    assert [i.client_order_id for i in intents] == ["kbbatch1", "kbbatch2"]


def test_cancel_order() -> None:
    check("trade/cancel-order", "POST", {"instId": "BTC-USDT", "ordId": "590908157585625111"})


def test_cancel_batch_orders() -> None:
    check(
        "trade/cancel-batch-orders",
        "POST",
        [{"instId": "BTC-USDT", "ordId": "1"}, {"instId": "ETH-USDT", "clOrdId": "kb2"}],
    )


def test_permission_endpoint() -> None:
    signed = check("account/config", "GET", {})
    ours = PROFILE.sign(okx.permission_request("production"), credential(), now_ms=NOW)
    assert ours.url.raw_path == signed.url.raw_path
    assert ours.headers["OK-ACCESS-SIGN"] == signed.headers["OK-ACCESS-SIGN"]


@pytest.mark.parametrize("path", ["account/balance", "trade/order"])
def test_demo_credentials_match_ccxt_sandbox_mode(path: str) -> None:
    method = "GET" if path == "account/balance" else "POST"
    params: dict[str, str] = (
        {"ccy": "USDT"}
        if method == "GET"
        else {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
              "sz": "1", "px": "1", "clOrdId": "kbdemo"}
    )  # fmt: skip
    signed = check(path, method, params, sandbox=True)
    assert signed.headers.get_list("x-simulated-trading") == ["1"]


def test_production_credentials_strip_a_demo_header_ccxt_added() -> None:
    params = {"ccy": "USDT"}
    demo_placeholder = ccxt_sign(
        "account/balance",
        "GET",
        params,
        api_key="placeholder",
        secret="placeholder-secret",
        passphrase="placeholder",
        now_ms=1,
        sandbox=True,
    )
    live = ccxt_sign(
        "account/balance",
        "GET",
        params,
        api_key=API_KEY,
        secret=SECRET,
        passphrase=PASSPHRASE,
        now_ms=NOW,
    )
    ours = PROFILE.sign(to_request(demo_placeholder), credential("production"), now_ms=NOW)
    assert "x-simulated-trading" not in ours.headers
    assert lowered(ours) == lowered(to_request(live))


def test_the_demo_host_is_not_part_of_the_signature() -> None:
    signed = ccxt_sign(
        "account/balance",
        "GET",
        {"ccy": "BTC"},
        api_key=API_KEY,
        secret=SECRET,
        passphrase=PASSPHRASE,
        now_ms=NOW,
        sandbox=True,
    )
    moved = to_request(signed)
    moved = httpx.Request(
        "GET",
        moved.url.copy_with(host=httpx.URL(okx.base_url("/", "testnet")).host),
        headers=[(k, v) for k, v in moved.headers.multi_items() if k.lower() != "host"],
    )
    ours = PROFILE.sign(moved, credential("testnet"), now_ms=NOW)
    assert ours.url.host == "openapi.okx.com"
    assert ours.headers["OK-ACCESS-SIGN"] == signed["headers"]["OK-ACCESS-SIGN"]
