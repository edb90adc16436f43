"""The emulated Bybit's WebSocket side: public tickers, the private order topic, the trade stream.

    /v5/public/spot  {"op": "subscribe", "args": ["tickers.BTCUSDT"]}
    /v5/private      {"op": "auth", "args": [api_key, expires, signature]}, then the
                     ``order`` topic: the key's order changes, pushed
    /v5/trade        auth, then {"reqId", "header": {"X-BAPI-TIMESTAMP", ...},
                     "op": "order.create" | "order.cancel" | "order.amend", "args": [order]}

Auth is checked as Bybit documents it (v5/ws/connect): ``expires`` in the future and
signature = hex HMAC-SHA256(secret, "GET/realtime" + expires), with this module's own
code. Pings (``{"op": "ping"}``) are answered with each stream's pong and journaled
(method ``PING``), so a test can see a client's heartbeat. A trade op's header timestamp
must satisfy ``server - recv_window <= timestamp < server + 1000``
(v5/websocket/trade/guideline); the op is then carried out by the REST
handler of its twin as the authenticated key, so a WebSocket order is the same order as
a REST one (journal ``transport="ws"``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from keybroker.emulator import bybit
from keybroker.emulator.binance_ws import _journal
from keybroker.emulator.engine import Refused
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.okx_ws import _next_frame, _parse
from keybroker.emulator.wire import Call

if TYPE_CHECKING:
    from keybroker.emulator.app import EmulatorState

OPS: dict[str, str] = {
    "order.create": "/v5/order/create",
    "order.cancel": "/v5/order/cancel",
    "order.amend": "/v5/order/amend",
}
CONN_ID = "emulator"


async def public(websocket: WebSocket, state: EmulatorState, category: str) -> None:
    """Subscribe frames; every interval, each subscribed ticker's latest state."""
    subscribed: list[str] = []
    while True:
        for topic in subscribed:
            data = _ticker(state, topic.split(".", 1)[1])
            now = state.clock.now_ms()
            push = {"topic": topic, "ts": now, "type": "snapshot", "cs": now, "data": data}
            await websocket.send_text(json.dumps(push))
        text = await _next_frame(websocket, state.streams.interval_ms / 1000)
        if text is None:
            continue
        frame = _parse(text)
        op = None if frame is None else frame.get("op")
        if frame is None or op not in ("subscribe", "unsubscribe", "ping"):
            await websocket.send_text(_failure(frame, "error:invalid op"))
            continue
        if op == "ping":
            _journal(state, "PING", f"/v5/public/{category}", {}, kind="heartbeat")
            await websocket.send_text(_answer(frame, "pong", "ping"))
            continue
        topics = frame.get("args") or []
        good = category == "spot" and all(
            isinstance(t, str) and t.startswith("tickers.") and _ticker(state, t[8:]) is not None
            for t in topics
        )
        if not topics or not good:
            await websocket.send_text(_failure(frame, f"error:handler not found,topic:{topics}"))
            continue
        for topic in topics:
            if op == "subscribe" and topic not in subscribed:
                subscribed.append(topic)
                path = f"/v5/public/{category}"
                _journal(state, "SUBSCRIBE", path, {"topic": topic}, kind="stream")
            elif op == "unsubscribe" and topic in subscribed:
                subscribed.remove(topic)
        await websocket.send_text(_answer(frame, "", str(op)))


async def private(websocket: WebSocket, state: EmulatorState) -> None:
    """Auth first; then the ``order`` topic pushes the key's order changes."""
    key: ApiKey | None = None
    watching = False
    seen: dict[int, tuple[str, Decimal]] = {}
    while True:
        if watching and key is not None:
            changed = _changed_orders(state, key.api_key, seen)
            if changed:
                now = state.clock.now_ms()
                push = {"id": f"emulator-{now}", "topic": "order", "creationTime": now}
                await websocket.send_text(json.dumps({**push, "data": changed}))
        text = await _next_frame(websocket, state.streams.interval_ms / 1000)
        if text is None:
            continue
        frame = _parse(text)
        op = None if frame is None else frame.get("op")
        if op == "auth" and frame is not None:
            key = _authenticate(state, frame)
            if key is None:
                await websocket.send_text(_failure(frame, "error:USVC1111", op="auth"))
                continue
            _journal(state, "AUTH", "/v5/private", {}, kind="login", api_key=key.api_key)
            await websocket.send_text(_answer(frame, "", "auth"))
        elif op == "ping" and frame is not None:
            _journal(state, "PING", "/v5/private", {}, kind="heartbeat")
            pong = {"req_id": frame.get("req_id"), "op": "pong", "conn_id": CONN_ID}
            await websocket.send_text(json.dumps({**pong, "args": [str(state.clock.now_ms())]}))
        elif key is None:
            await websocket.send_text(_failure(frame, "Request not authorized"))
        elif op == "subscribe" and frame is not None:
            topics = frame.get("args") or []
            if topics and all(t in ("order", "order.spot") for t in topics):
                watching = True
                _changed_orders(state, key.api_key, seen)  # what exists now is not news
                _journal(state, "SUBSCRIBE", "/v5/private order", {}, kind="user_stream")
                await websocket.send_text(_answer(frame, "", "subscribe"))
            else:
                await websocket.send_text(_failure(frame, f"error:handler not found {topics}"))
        else:
            await websocket.send_text(_failure(frame, "error:invalid op"))


async def trade(websocket: WebSocket, state: EmulatorState) -> None:
    """Auth first; then order.create / order.cancel / order.amend as the authenticated key."""
    key: ApiKey | None = None
    while True:
        text = await _next_frame(websocket, 30.0)
        if text is None:
            continue
        frame = _parse(text) or {}
        op = frame.get("op")
        reply: dict[str, object] = {}
        if frame.get("reqId") is not None:
            reply["reqId"] = frame["reqId"]
        if op == "auth":
            key = _authenticate(state, frame)
            if key is None:
                reply.update(retCode=10004, retMsg="invalid sign", op="auth", connId=CONN_ID)
            else:
                _journal(state, "AUTH", "/v5/trade", {}, kind="login", api_key=key.api_key)
                reply.update(retCode=0, retMsg="OK", op="auth", connId=CONN_ID)
        elif op == "ping":
            _journal(state, "PING", "/v5/trade", {}, kind="heartbeat")
            reply.update(retCode=0, retMsg="OK", op="pong", connId=CONN_ID)
        elif key is None:
            reply.update(retCode=10003, retMsg="Request not authorized", op=op, connId=CONN_ID)
        elif not isinstance(op, str) or op not in OPS:
            reply.update(retCode=10001, retMsg="Invalid op", op=op, connId=CONN_ID)
        else:
            reply.update(_op(state, key, frame, op))
        await websocket.send_text(json.dumps(reply, default=str))


def _authenticate(state: EmulatorState, frame: dict[str, Any]) -> ApiKey | None:
    args = frame.get("args")
    if not isinstance(args, list) or len(args) != 3:
        return None
    api_key, expires, signature = (str(a) for a in args)
    key = state.venue_keys().get(api_key)
    if key is None or not expires.isdigit() or int(expires) <= state.clock.now_ms():
        return None
    message = ("GET/realtime" + expires).encode()
    expected = hmac.new(key.secret.reveal(), message, hashlib.sha256).hexdigest()
    return key if hmac.compare_digest(expected, signature.lower()) else None


def _op(state: EmulatorState, key: ApiKey, frame: dict[str, Any], op: str) -> dict[str, object]:
    now = state.clock.now_ms()
    header = frame.get("header") if isinstance(frame.get("header"), dict) else {}
    stamp = str(header.get("X-BAPI-TIMESTAMP", "")) if header else ""
    window = str(header.get("X-BAPI-RECV-WINDOW", "5000")) if header else "5000"
    answer_header = {"Timenow": str(now), "Traceid": f"emulator-{now}"}
    base: dict[str, object] = {"op": op, "header": answer_header, "connId": CONN_ID}
    if not stamp.isdigit() or not window.isdigit():
        return {**base, "retCode": 10001, "retMsg": "X-BAPI-TIMESTAMP is required", "data": {}}
    if not now - int(window) <= int(stamp) < now + bybit.FUTURE_TOLERANCE_MS:
        return {**base, "retCode": 10002, "retMsg": "invalid request, check timestamp", "data": {}}
    args = frame.get("args")
    body = args[0] if isinstance(args, list) and len(args) == 1 else None
    if not isinstance(body, dict):
        return {**base, "retCode": 10001, "retMsg": "params error: args", "data": {}}
    call = Call("POST", OPS[op], b"", json.dumps(body).encode(), {}, "127.0.0.1", now)
    venue: Any = state.venue
    answer = venue.handle(call, verified_key=key)
    state.record_call(call, answer, transport="ws")
    payload = answer.body if isinstance(answer.body, dict) else {}
    return {
        **base,
        "retCode": payload.get("retCode", 10016),
        "retMsg": payload.get("retMsg", ""),
        "data": payload.get("result", {}),
        "retExtInfo": {},
    }


def _changed_orders(
    state: EmulatorState, account: str, seen: dict[int, tuple[str, Decimal]]
) -> list[dict[str, object]]:
    venue: Any = state.venue
    changed: list[dict[str, object]] = []
    for order in venue.engine.orders:
        if order.account != account or order.product != "spot":
            continue
        now = (order.status, order.executed_qty)
        if seen.get(order.order_id) != now:
            seen[order.order_id] = now
            changed.append(bybit.order_json(order))
    return changed


def _ticker(state: EmulatorState, symbol: str) -> dict[str, object] | None:
    venue: Any = state.venue
    try:
        return bybit.ticker(venue.engine.market("spot", symbol))
    except Refused:
        return None


def _answer(frame: dict[str, Any], ret_msg: str, op: str) -> str:
    answer: dict[str, object] = {"success": True, "ret_msg": ret_msg, "conn_id": CONN_ID}
    if frame.get("req_id") is not None:
        answer["req_id"] = frame["req_id"]
    answer["op"] = op
    return json.dumps(answer)


def _failure(frame: dict[str, Any] | None, ret_msg: str, *, op: str | None = None) -> str:
    answer: dict[str, object] = {"success": False, "ret_msg": ret_msg, "conn_id": CONN_ID}
    if frame is not None and frame.get("req_id") is not None:
        answer["req_id"] = frame["req_id"]
    answer["op"] = op if op is not None else (frame or {}).get("op", "")
    return json.dumps(answer)
