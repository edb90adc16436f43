"""WebSocket orders with Redis: admitted by the shared store, or refused before any intent row.

A frame's order is admitted by Redis (shared counts and budgets) before its
intent row is written; REST overlaps the two (``admit_beside_intent``), the
WebSocket path does not (measured slower there: bench_websocket.py --redis,
where the admission's own Python work and the policy's second look cost more
than the wait for Redis they hide). These check that an order over the
WebSocket API never leaves when Redis (another gateway's orders, a silent
store) or the policy says no, with a refusal row and no intent row, and that
an allowed order has one intent row, its result row naming it. Real gateways
(in threads), a real redis-server, the emulator's Binance WebSocket API,
``websockets`` bots holding a token.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import websockets
from gateway_testkit import (
    LIMIT_BUY,
    Emulator,
    Gateway,
    StartEmulator,
    StartGateway,
    wait_until,
)
from redis_hosts import host, order_rows

from keybroker.secret import Secret
from redis_server import RedisServer, StartRedis


def ws_orders(exchange: Emulator) -> list[dict[str, Any]]:
    return [e for e in exchange.journal() if e["transport"] == "ws" and e["kind"] == "order"]


def frame(id_: object, **params: str) -> str:
    return json.dumps({"id": id_, "method": "order.place", "params": {**LIMIT_BUY, **params}})


def send_orders(gateway: Gateway, *frames: str) -> list[dict[str, Any]]:
    """Each frame in turn on one connection; the answer to each."""

    async def bot() -> list[dict[str, Any]]:
        url = gateway.url.replace("http://", "ws://") + "/bn/ws-api/v3"
        headers = {"X-Keybroker-Token": gateway.token}
        answers = []
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
            for text in frames:
                await ws.send(text)
                request_id = json.loads(text)["id"]
                while (answer := json.loads(await asyncio.wait_for(ws.recv(), 15)))[
                    "id"
                ] != request_id:
                    pass
                answers.append(answer)
        return answers

    return asyncio.run(asyncio.wait_for(bot(), 60))


def test_a_websocket_order_admitted_by_redis_has_one_intent_row_and_its_result(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    gw = gateway(*host(tmp_path, "a", exchange.url), redis_url=Secret(redis_clean.url), gateways=1)

    (answer,) = send_orders(gw, frame(1))

    assert answer["status"] == 200, answer
    assert len(ws_orders(exchange)) == 1
    assert wait_until(lambda: len(order_rows(gw.audit_path)) == 2)
    intent, result = order_rows(gw.audit_path)
    assert intent.row.kind == "intent" and intent.row.detail == "websocket"
    assert intent.row.order is not None and intent.row.order["symbol"] == "BTCUSDT"
    assert result.row.kind == "result" and result.row.intent_id == intent.id
    assert result.row.status == 200
    with redis_clean.client() as client:  # Redis counted it, once
        assert client.zcard("keybroker:orders:credential:bn") == 1


def test_a_websocket_order_another_gateways_orders_leave_no_room_for_never_leaves(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    a = gateway(*host(tmp_path, "a", exchange.url), **shared)
    b = gateway(*host(tmp_path, "b", exchange.url), **shared)
    for _ in range(4):  # the four a minute, all through b: a has counted none of them
        assert b.client().post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200

    (refused,) = send_orders(a, frame("late"))

    assert refused["status"] == 403, refused
    assert "max_orders_per_minute" in refused["error"]["msg"]
    assert ws_orders(exchange) == []  # it never left
    (denied,) = order_rows(a.audit_path)  # refused before any intent row
    assert denied.row.kind == "denied" and denied.row.rule == "max_orders_per_minute"
    assert denied.row.intent_id is None
    with redis_clean.client() as client:  # b's four, not a's refused one
        assert client.zcard("keybroker:orders:credential:bn") == 4


def test_a_websocket_order_fails_closed_when_redis_is_silent(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, start_redis: StartRedis
) -> None:
    exchange = emulator("binance")
    store = start_redis()
    gw = gateway(*host(tmp_path, "a", exchange.url), redis_url=Secret(store.url), gateways=1)
    assert send_orders(gw, frame(1))[0]["status"] == 200
    assert wait_until(lambda: len(order_rows(gw.audit_path)) == 2)  # its result row too
    assert store.process is not None
    store.process.send_signal(signal.SIGSTOP)  # Redis takes the order's script, never answers
    try:
        silent, still_down = send_orders(gw, frame(2), frame(3))
    finally:
        store.process.send_signal(signal.SIGCONT)

    for answer in (silent, still_down):
        assert answer["status"] == 503, answer
        assert "coordination_unavailable" in answer["error"]["msg"]
    assert len(ws_orders(exchange)) == 1  # nothing else left
    rows = order_rows(gw.audit_path)[2:]  # after the first order's two rows
    assert [(r.row.kind, r.row.intent_id) for r in rows] == [("denied", None)] * 2
    # Redis answers again: orders go, without a restart.
    assert wait_until(lambda: send_orders(gw, frame(4))[0]["status"] == 200, timeout=15)


def test_a_websocket_order_the_policy_refuses_as_things_stand_gets_no_intent_row(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    gw = gateway(*host(tmp_path, "a", exchange.url), redis_url=Secret(redis_clean.url), gateways=1)

    (refused,) = send_orders(gw, frame("big", quantity="1"))  # 50,000 > max_notional 5,000

    assert refused["status"] == 403 and "max_notional" in refused["error"]["msg"], refused
    assert ws_orders(exchange) == []
    assert [r.row.kind for r in order_rows(gw.audit_path)] == ["denied"]
