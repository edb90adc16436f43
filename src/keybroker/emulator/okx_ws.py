"""The emulated OKX's WebSocket side: public tickers, login, the orders channel, order ops.

    /ws/v5/public    {"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]}
    /ws/v5/private   {"op": "login", "args": [{"apiKey", "passphrase", "timestamp", "sign"}]},
                     then the ``orders`` channel and the ops order, cancel-order,
                     batch-orders, batch-cancel-orders and amend-order

Login is checked as OKX does (sign = base64 HMAC-SHA256 of timestamp + "GET" +
"/users/self/verify", timestamp in seconds within 30 s) with the emulator's own
code. An op is carried out by the REST handler of the same name, as the logged-in
key, so a WebSocket order is the same order as a REST one (journal ``transport="ws"``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from keybroker.emulator import okx_payloads as payloads
from keybroker.emulator.binance_ws import _journal
from keybroker.emulator.engine import Refused
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.wire import Call

if TYPE_CHECKING:
    from keybroker.emulator.app import EmulatorState

OPS: dict[str, str] = {
    "order": "/api/v5/trade/order",
    "batch-orders": "/api/v5/trade/batch-orders",
    "cancel-order": "/api/v5/trade/cancel-order",
    "batch-cancel-orders": "/api/v5/trade/cancel-batch-orders",
    "amend-order": "/api/v5/trade/amend-order",
}
LOGIN_WINDOW_S = 30


async def public(websocket: WebSocket, state: EmulatorState) -> None:
    """Subscribe frames; every interval, each subscribed ticker's latest state."""
    subscribed: list[dict[str, str]] = []
    while True:
        for arg in subscribed:
            data = _ticker(state, arg["instId"])
            await websocket.send_text(json.dumps({"arg": arg, "data": [data]}))
        text = await _next_frame(websocket, state.streams.interval_ms / 1000)
        if text is None:
            continue
        if text == "ping":
            await websocket.send_text("pong")
            continue
        frame = _parse(text)
        if frame is None or frame.get("op") not in ("subscribe", "unsubscribe"):
            await websocket.send_text(_error("60012", f"Invalid request: {text[:60]}"))
            continue
        for arg in frame.get("args") or []:
            if (
                not isinstance(arg, dict)
                or arg.get("channel") != "tickers"
                or _ticker(state, str(arg.get("instId"))) is None
            ):
                await websocket.send_text(_error("60018", f"Wrong URL or channel: {arg}"))
                continue
            clean = {"channel": "tickers", "instId": str(arg["instId"])}
            if frame["op"] == "subscribe":
                subscribed.append(clean)
                _journal(state, "SUBSCRIBE", "/ws/v5/public", dict(clean), kind="stream")
            elif clean in subscribed:
                subscribed.remove(clean)
            await websocket.send_text(
                json.dumps({"event": frame["op"], "arg": clean, "connId": "emulator"})
            )


async def private(websocket: WebSocket, state: EmulatorState) -> None:
    """Login first; then the orders channel and order ops as the logged-in key."""
    key: ApiKey | None = None
    watching = False
    seen: dict[int, tuple[str, Decimal]] = {}
    while True:
        if watching and key is not None:
            for order in _changed_orders(state, key.api_key, seen):
                await websocket.send_text(json.dumps(order, default=str))
        text = await _next_frame(websocket, state.streams.interval_ms / 1000)
        if text is None:
            continue
        if text == "ping":
            await websocket.send_text("pong")
            continue
        frame = _parse(text)
        if frame is None:
            await websocket.send_text(_error("60012", "Invalid request"))
            continue
        op = frame.get("op")
        if op == "login":
            key = _login(state, frame)
            if key is None:
                await websocket.send_text(_error("60009", "Login failed."))
                continue
            _journal(state, "LOGIN", "/ws/v5/private", {}, kind="login", api_key=key.api_key)
            await websocket.send_text('{"event":"login","code":"0","msg":"","connId":"emulator"}')
        elif key is None:
            await websocket.send_text(_error("60011", "Please log in"))
        elif op == "subscribe":
            args = frame.get("args") or []
            if args and all(isinstance(a, dict) and a.get("channel") == "orders" for a in args):
                watching = True
                _changed_orders(state, key.api_key, seen)  # what exists now is not news
                _journal(state, "SUBSCRIBE", "/ws/v5/private orders", {}, kind="user_stream")
                for arg in args:
                    await websocket.send_text(
                        json.dumps({"event": "subscribe", "arg": arg, "connId": "emulator"})
                    )
            else:
                await websocket.send_text(_error("60018", "Wrong URL or channel"))
        elif isinstance(op, str) and op in OPS:
            await websocket.send_text(json.dumps(_op(state, key, frame, op), default=str))
        else:
            await websocket.send_text(_error("60012", f"Invalid request: {text[:60]}"))


def _login(state: EmulatorState, frame: dict[str, Any]) -> ApiKey | None:
    args = frame.get("args") or [{}]
    arg = args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else {}
    key = state.venue_keys().get(str(arg.get("apiKey", "")))
    timestamp = str(arg.get("timestamp", ""))
    if key is None or key.passphrase is None or not timestamp.isdigit():
        return None
    if abs(state.clock.now_ms() / 1000 - int(timestamp)) > LOGIN_WINDOW_S:
        return None
    if str(arg.get("passphrase", "")).encode() != key.passphrase.reveal():
        return None
    prehash = (timestamp + "GET" + "/users/self/verify").encode()
    expected = base64.b64encode(hmac.new(key.secret.reveal(), prehash, hashlib.sha256).digest())
    given = str(arg.get("sign", "")).encode("ascii", "replace")
    return key if hmac.compare_digest(expected, given) else None


def _op(state: EmulatorState, key: ApiKey, frame: dict[str, Any], op: str) -> dict[str, object]:
    args = frame.get("args") or []
    body = args if op.startswith("batch") else (args[0] if args else {})
    now = state.clock.now_ms()
    call = Call("POST", OPS[op], b"", json.dumps(body).encode(), {}, "127.0.0.1", now)
    venue: Any = state.venue
    answer = venue.handle(call, verified_key=key)
    state.record_call(call, answer, transport="ws")
    reply: dict[str, object] = {"id": frame.get("id"), "op": op}
    if isinstance(answer.body, dict):
        reply.update(answer.body)
    return reply


def _changed_orders(
    state: EmulatorState, account: str, seen: dict[int, tuple[str, Decimal]]
) -> list[dict[str, object]]:
    venue: Any = state.venue
    pushes: list[dict[str, object]] = []
    for order in venue.engine.orders:
        if order.account != account or order.product != "spot":
            continue
        now = (order.status, order.executed_qty)
        if seen.get(order.order_id) != now:
            seen[order.order_id] = now
            spec = venue.engine.markets["spot"][order.symbol].instrument
            pushes.append(
                {
                    "arg": {"channel": "orders", "instType": "SPOT", "uid": "emulator"},
                    "data": [payloads.okx_order(order, spec)],
                }
            )
    return pushes


def _ticker(state: EmulatorState, inst_id: str) -> dict[str, object] | None:
    venue: Any = state.venue
    try:
        market = venue.engine.market("spot", inst_id)
    except Refused:
        return None
    now = state.clock.now_ms()
    return payloads.ticker(market, market.candles(3_600_000, now, limit=24), now)


def _parse(text: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def _error(code: str, msg: str) -> str:
    return json.dumps({"event": "error", "code": code, "msg": msg, "connId": "emulator"})


async def _next_frame(websocket: WebSocket, seconds: float) -> str | None:
    """The bot's next frame if one arrives within ``seconds``; None otherwise."""
    try:
        async with asyncio.timeout(seconds):
            message = await websocket.receive()
    except TimeoutError:
        return None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None and message.get("bytes") is not None:
        with contextlib.suppress(UnicodeDecodeError):
            text = message["bytes"].decode()
    return text
