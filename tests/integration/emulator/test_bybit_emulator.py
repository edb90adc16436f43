"""The emulated Bybit: REST authentication and orders, and its WebSocket auth and trade stream.

Requests are signed here with hashlib/hmac by Bybit's documented rules (REST:
timestamp + api_key + recv_window + payload; WebSocket: "GET/realtime" + expires),
never with keybroker's signers.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
import websockets
from emulator_testkit import Serve, journal

from keybroker.emulator import ApiKey
from keybroker.secret import Secret

SECRET = "test-bybit-emulator-secret-not-real"
KEY = ApiKey("test-bybit-emulator-key", Secret(SECRET))
ORDER = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
         "qty": "0.001", "price": "50000", "orderLinkId": "mine1"}  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


def signed(
    http: httpx.Client,
    method: str,
    path: str,
    params: Mapping[str, str] | None = None,
    body: object = None,
    *,
    secret: str = SECRET,
    stamp: int | None = None,
) -> dict[str, Any]:
    stamp_text, window = str(stamp if stamp is not None else now_ms()), "5000"
    query = httpx.QueryParams(params or {})
    payload = str(query).encode() if method == "GET" else json.dumps(body).encode()
    message = (stamp_text + KEY.api_key + window).encode() + payload
    headers = {
        "X-BAPI-API-KEY": KEY.api_key,
        "X-BAPI-TIMESTAMP": stamp_text,
        "X-BAPI-RECV-WINDOW": window,
        "X-BAPI-SIGN": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }
    if method == "GET":
        response = http.get(path, params=query, headers=headers)
    else:
        response = http.post(path, content=payload, headers=headers)
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
def bybit(serve: Serve) -> httpx.Client:
    return serve("bybit", keys=[KEY])


def test_a_signed_order_rests_is_listed_and_cancels(bybit: httpx.Client) -> None:
    placed = signed(bybit, "POST", "/v5/order/create", body=ORDER)
    assert placed["retCode"] == 0 and placed["result"]["orderLinkId"] == "mine1"
    listed = signed(bybit, "GET", "/v5/order/realtime", {"category": "spot", "symbol": "BTCUSDT"})
    assert [o["orderLinkId"] for o in listed["result"]["list"]] == ["mine1"]
    assert listed["result"]["list"][0]["orderStatus"] == "New"
    cancel = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": "mine1"}
    assert signed(bybit, "POST", "/v5/order/cancel", body=cancel)["retCode"] == 0
    again = signed(bybit, "POST", "/v5/order/cancel", body=cancel)
    assert again["retCode"] == 110001
    amend = signed(bybit, "POST", "/v5/order/amend", body={**cancel, "qty": "0.002"})
    assert amend["retCode"] == 10001 and "not emulated" in amend["retMsg"]
    ticker = bybit.get("/v5/market/tickers", params={"category": "spot", "symbol": "BTCUSDT"})
    assert float(ticker.json()["result"]["list"][0]["lastPrice"]) > 0


def test_wrong_signature_stale_timestamp_and_unknown_key_are_refused(
    bybit: httpx.Client,
) -> None:
    assert signed(bybit, "POST", "/v5/order/create", body=ORDER, secret="wrong")["retCode"] == 10004
    stale = signed(bybit, "POST", "/v5/order/create", body=ORDER, stamp=now_ms() - 60_000)
    assert stale["retCode"] == 10002
    early = signed(bybit, "POST", "/v5/order/create", body=ORDER, stamp=now_ms() + 30_000)
    assert early["retCode"] == 10002
    nobody = bybit.post("/v5/order/create", json=ORDER, headers={"X-BAPI-API-KEY": "nobody"})
    assert nobody.json()["retCode"] == 10003
    assert [e for e in journal(bybit) if e["orders"]] == []


def auth_frame(secret: str = SECRET, expires: int | None = None) -> str:
    expires = expires if expires is not None else now_ms() + 10_000
    signature = hmac.new(
        secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return json.dumps({"op": "auth", "args": [KEY.api_key, expires, signature]})


def test_websocket_auth_is_checked_and_trade_ops_need_it(bybit: httpx.Client) -> None:
    base = str(bybit.base_url).replace("http://", "ws://").rstrip("/")

    async def run() -> list[dict[str, Any]]:
        answers = []
        async with websockets.connect(base + "/v5/trade") as trade:
            header = {"X-BAPI-TIMESTAMP": str(now_ms())}
            op = {"reqId": "1", "header": header, "op": "order.create", "args": [ORDER]}
            await trade.send(json.dumps(op))
            answers.append(json.loads(await trade.recv()))  # not authenticated
            await trade.send(auth_frame(secret="wrong"))
            answers.append(json.loads(await trade.recv()))
            await trade.send(auth_frame(expires=now_ms() - 1))
            answers.append(json.loads(await trade.recv()))
            await trade.send(auth_frame())
            answers.append(json.loads(await trade.recv()))
            stale = {**op, "reqId": "2", "header": {"X-BAPI-TIMESTAMP": str(now_ms() - 60_000)}}
            await trade.send(json.dumps(stale))
            answers.append(json.loads(await trade.recv()))
            await trade.send(json.dumps({**op, "reqId": "3"}))
            answers.append(json.loads(await trade.recv()))
        async with websockets.connect(base + "/v5/private") as private:
            await private.send(auth_frame(secret="wrong"))
            answers.append(json.loads(await private.recv()))
        return answers

    unauth, wrong, expired, ok, stale, placed, private_wrong = asyncio.run(run())
    assert unauth["retCode"] == 10003 and unauth["reqId"] == "1"
    assert wrong["retCode"] == 10004 and expired["retCode"] == 10004
    assert ok == {"retCode": 0, "retMsg": "OK", "op": "auth", "connId": "emulator"}
    assert stale["retCode"] == 10002
    assert placed["retCode"] == 0 and placed["reqId"] == "3" and placed["op"] == "order.create"
    assert private_wrong["success"] is False and private_wrong["op"] == "auth"
    entries = journal(bybit)
    orders = [e for e in entries if e["orders"]]
    assert len(orders) == 1 and orders[0]["transport"] == "ws"
    assert [e["path"] for e in entries if e["method"] == "AUTH"] == ["/v5/trade"]
    assert SECRET not in json.dumps(entries)
