"""The emulated Binance's WebSocket side: the WebSocket API, user data streams, public streams.

    /ws-api/v3                     requests {"id", "method", "params"} -> {"id", "status", "result"}
    /ws/<symbol>@ticker|@bookTicker|@trade   one public stream, pushed every ``interval_ms``
    /stream?streams=a/b            combined streams, each event as {"stream", "data"}
    /ws/<listenKey>                the user data stream of the key that made the listen key

The WebSocket API signs differently from REST (exchange-auth.md §2.1): the
params other than ``signature`` are sorted by name and joined un-encoded. The
emulator checks that with its own code (signatures.py), then carries the
request out through the very handlers REST uses, so an order is the same
order whichever way it came, and the journal records it the same way (with
``transport="ws"``).

User data events (``executionReport``, ``outboundAccountPosition``) come from
watching the engine: every ``interval_ms`` each subscribed account's orders and
balances are compared with what was last pushed. That catches every change,
whether a REST call, a WebSocket order or a market move caused it.

``POST /__emulator__/ws/drop`` closes every WebSocket connection (code 1012,
"service restart"), for tests of reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from keybroker.emulator.binance_payloads import book_ticker, d8, spot_order_type, ticker_24h
from keybroker.emulator.engine import Order, Refused
from keybroker.emulator.journal import Entry
from keybroker.emulator.signatures import binance_signature_matches
from keybroker.emulator.wire import Call

if TYPE_CHECKING:
    from keybroker.emulator.app import EmulatorState

# WebSocket API method -> the REST endpoint that carries it out.
WS_API_METHODS: dict[str, tuple[str, str]] = {
    "ping": ("GET", "/api/v3/ping"),
    "time": ("GET", "/api/v3/time"),
    "depth": ("GET", "/api/v3/depth"),
    "ticker.price": ("GET", "/api/v3/ticker/price"),
    "ticker.book": ("GET", "/api/v3/ticker/bookTicker"),
    "order.place": ("POST", "/api/v3/order"),
    "order.cancel": ("DELETE", "/api/v3/order"),
    "order.status": ("GET", "/api/v3/order"),
    "openOrders.status": ("GET", "/api/v3/openOrders"),
    "account.status": ("GET", "/api/v3/account"),
}
SIGNED_ONLY = frozenset({"userDataStream.subscribe.signature"})


@dataclass
class Streams:
    """Open connections and the push interval, kept with the emulator's state."""

    interval_ms: int = 100
    sockets: set[WebSocket] = field(default_factory=set)

    async def drop_all(self) -> int:
        dropped = 0
        for socket in list(self.sockets):
            with contextlib.suppress(Exception):
                await socket.close(code=1012, reason="service restart")
                dropped += 1
        self.sockets.clear()
        return dropped


# --- public streams -------------------------------------------------------------------------------


def stream_event(state: EmulatorState, stream: str) -> dict[str, object] | None:
    """The next event of a public stream, or None for a stream the emulator does not know."""
    symbol, _, channel = stream.partition("@")
    venue: Any = state.venue
    try:
        market = venue.engine.market("spot", symbol.upper())
    except Refused:
        return None
    now = state.clock.now_ms()
    if channel == "bookTicker":
        body = book_ticker(market, now, usdm=False)
        return {
            "u": now,
            "s": body["symbol"],
            "b": body["bidPrice"],
            "B": body["bidQty"],
            "a": body["askPrice"],
            "A": body["askQty"],
        }
    if channel == "miniTicker":
        day = market.candles(3_600_000, now, limit=24)
        body = ticker_24h(market, day, now, usdm=False)
        return {
            "e": "24hrMiniTicker",
            "E": now,
            "s": body["symbol"],
            "c": body["lastPrice"],
            "o": body["openPrice"],
            "h": body["highPrice"],
            "l": body["lowPrice"],
            "v": body["volume"],
            "q": body["quoteVolume"],
        }
    if channel == "ticker":
        day = market.candles(3_600_000, now, limit=24)
        body = ticker_24h(market, day, now, usdm=False)
        return {
            "e": "24hrTicker",
            "E": now,
            "s": body["symbol"],
            "p": body["priceChange"],
            "P": body["priceChangePercent"],
            "c": body["lastPrice"],
            "Q": body["lastQty"],
            "b": body["bidPrice"],
            "B": body["bidQty"],
            "a": body["askPrice"],
            "A": body["askQty"],
            "o": body["openPrice"],
            "h": body["highPrice"],
            "l": body["lowPrice"],
            "v": body["volume"],
            "q": body["quoteVolume"],
            "O": body["openTime"],
            "C": body["closeTime"],
            "n": body["count"],
        }
    if channel == "trade":
        trades = market.trades(1)
        if not trades:
            return None
        t = trades[-1]
        return {
            "e": "trade",
            "E": now,
            "s": market.instrument.symbol,
            "t": t.trade_id,
            "p": d8(t.price),
            "q": d8(t.qty),
            "T": t.time_ms,
            "m": t.buyer_is_maker,
        }
    return None


async def public_stream(websocket: WebSocket, state: EmulatorState, streams: list[str]) -> None:
    """Push each stream's event every interval; ``combined`` wraps them as {"stream", "data"}."""
    combined = websocket.url.path.startswith("/stream")
    if not streams or any(stream_event(state, s) is None for s in streams):
        await websocket.close(code=1008, reason="unknown stream")
        return
    _journal(state, "SUBSCRIBE", websocket.url.path, {"streams": streams}, kind="stream")
    while True:
        for stream in streams:
            event = stream_event(state, stream)
            frame = {"stream": stream, "data": event} if combined else event
            await websocket.send_text(json.dumps(frame, separators=(",", ":")))
        await _wait_or_frame(websocket, state.streams.interval_ms / 1000)


# --- user data ------------------------------------------------------------------------------------


class AccountWatch:
    """What was last pushed about one account: each order's (status, executed) and the balances."""

    def __init__(self, state: EmulatorState, api_key: str) -> None:
        self.state = state
        self.api_key = api_key
        self.orders: dict[int, tuple[str, Decimal]] = {}
        self.balances: dict[str, tuple[Decimal, Decimal]] = {}
        self.changes()  # what exists now is the starting point, not news

    def changes(self) -> list[dict[str, object]]:
        venue: Any = self.state.venue
        engine = venue.engine
        now = self.state.clock.now_ms()
        events: list[dict[str, object]] = []
        for order in engine.orders:
            if order.account != self.api_key or order.product != "spot":
                continue
            seen = (order.status, order.executed_qty)
            if self.orders.get(order.order_id) != seen:
                previous = self.orders.get(order.order_id)
                self.orders[order.order_id] = seen
                events.append(execution_report(order, previous, now))
        wallet = engine.account(self.api_key)
        balances = {
            asset: (wallet.free.get(asset, Decimal(0)), wallet.locked.get(asset, Decimal(0)))
            for asset in set(wallet.free) | set(wallet.locked)
        }
        changed = [asset for asset, value in balances.items() if self.balances.get(asset) != value]
        self.balances = balances
        if changed and events:
            events.append(
                {
                    "e": "outboundAccountPosition",
                    "E": now,
                    "u": now,
                    "B": [
                        {"a": a, "f": d8(balances[a][0]), "l": d8(balances[a][1])}
                        for a in sorted(changed)
                    ],
                }
            )
        return events


def execution_report(
    order: Order, previous: tuple[str, Decimal] | None, now_ms: int
) -> dict[str, object]:
    """Binance's executionReport for an order's latest state."""
    r = order.request
    if previous is None:
        execution = "NEW" if order.status in ("NEW", "PARTIALLY_FILLED", "FILLED") else "EXPIRED"
        if order.executed_qty > 0:
            execution = "TRADE"
    elif order.status == "CANCELED":
        execution = "CANCELED"
    elif order.executed_qty != previous[1]:
        execution = "TRADE"
    else:
        execution = order.status
    last_qty = order.executed_qty - (previous[1] if previous else Decimal(0))
    last = order.fills[-1] if order.fills and last_qty > 0 else None
    return {
        "e": "executionReport",
        "E": now_ms,
        "s": r.symbol,
        "c": r.client_order_id,
        "S": r.side,
        "o": spot_order_type(order),
        "f": r.time_in_force,
        "q": d8(r.quantity if r.quantity is not None else order.executed_qty),
        "p": d8(r.price or Decimal(0)),
        "x": execution,
        "X": order.status,
        "i": order.order_id,
        "l": d8(last_qty),
        "z": d8(order.executed_qty),
        "L": d8(last.price if last else Decimal(0)),
        "n": d8(last.fee if last else Decimal(0)),
        "N": (last.fee_asset if last else None),
        "T": order.updated_ms,
        "O": order.created_ms,
        "Z": d8(order.cumulative_quote),
    }


async def user_stream(websocket: WebSocket, state: EmulatorState, listen_key: str) -> None:
    """``/ws/<listenKey>``: the owner's events as they happen, until the key expires."""
    venue: Any = state.venue
    api_key = venue.listen_key_owner(listen_key, state.clock.now_ms())
    if api_key is None:
        await websocket.close(code=1008, reason="invalid listen key")
        return
    _journal(state, "SUBSCRIBE", "/ws/<listenKey>", {}, kind="user_stream", api_key=api_key)
    watch = AccountWatch(state, api_key)
    while True:
        if venue.listen_key_owner(listen_key, state.clock.now_ms()) is None:
            await websocket.send_text('{"e":"listenKeyExpired"}')
            await websocket.close(code=1000, reason="listen key expired")
            return
        for event in watch.changes():
            await websocket.send_text(json.dumps(event, separators=(",", ":")))
        await _wait_or_frame(websocket, state.streams.interval_ms / 1000)


# --- the WebSocket API ----------------------------------------------------------------------------


async def ws_api(websocket: WebSocket, state: EmulatorState) -> None:
    """``/ws-api/v3``: one request per frame, each answered on the same connection, plus the
    user data events of an account subscribed with ``userDataStream.subscribe.signature``."""
    outbox: asyncio.Queue[str] = asyncio.Queue()
    watches: dict[int, AccountWatch] = {}
    pusher = asyncio.create_task(_push_user_data(state, watches, outbox))
    sender = asyncio.create_task(_send_all(websocket, outbox))
    try:
        while True:
            text = await websocket.receive_text()
            outbox.put_nowait(json.dumps(ws_api_answer(state, text, watches), default=str))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        pusher.cancel()
        sender.cancel()


def ws_api_answer(
    state: EmulatorState, text: str, watches: dict[int, AccountWatch]
) -> dict[str, object]:
    """The answer to one WebSocket API request frame."""
    try:
        frame = json.loads(text)
    except ValueError:
        return _ws_error(None, 400, -1013, "Malformed request.")
    if not isinstance(frame, dict):
        return _ws_error(None, 400, -1013, "Malformed request.")
    request_id = frame.get("id")
    method = frame.get("method")
    params = frame.get("params") or {}
    if not isinstance(method, str) or not isinstance(params, dict):
        return _ws_error(request_id, 400, -1013, "Malformed request.")
    text_params = {str(name): _text(value) for name, value in params.items()}
    now = state.clock.now_ms()
    if method in SIGNED_ONLY:
        return _subscribe(state, request_id, text_params, watches, now)
    if method == "userDataStream.unsubscribe":
        watches.clear()
        return {"id": request_id, "status": 200, "result": {}}
    route = WS_API_METHODS.get(method)
    if route is None:
        return _ws_error(request_id, 400, -1013, f"Unknown method '{method}'.")
    api_key = text_params.pop("apiKey", None)
    headers = {"x-mbx-apikey": api_key} if api_key else {}
    if "signature" in text_params:
        signature = text_params.pop("signature")
        payload = _ws_payload({**text_params, **({"apiKey": api_key} if api_key else {})})
        key = state.venue_keys().get(api_key or "")
        if key is None:
            return _ws_error(request_id, 401, -2015, "Invalid API-key, IP, or permissions.")
        if not binance_signature_matches(key, payload.encode("utf-8"), signature):
            return _ws_error(request_id, 400, -1022, "Signature for this request is not valid.")
        timing = _check_timing(text_params, now)
        if timing is not None:
            return _ws_error(request_id, 400, -1021, timing)
    else:
        key = None
    # Verified here under the WebSocket rule; the REST handler then carries it out as
    # the verified key's request (``verified_key``), exactly as an order sent over REST.
    http_method, path = route
    query = _rest_query(text_params)
    call = Call(http_method, path, query.encode("utf-8"), b"", headers, "127.0.0.1", now)
    venue: Any = state.venue
    answer = venue.handle(call, verified_key=key)
    state.record_call(call, answer, transport="ws")
    if answer.status >= 400:
        body: Any = answer.body
        code = body.get("code", -1000) if isinstance(body, dict) else -1000
        msg = body.get("msg", "error") if isinstance(body, dict) else "error"
        return _ws_error(request_id, answer.status, code, msg)
    return {"id": request_id, "status": 200, "result": answer.body}


def _subscribe(
    state: EmulatorState,
    request_id: object,
    params: dict[str, str],
    watches: dict[int, AccountWatch],
    now: int,
) -> dict[str, object]:
    api_key = params.get("apiKey", "")
    signature = params.pop("signature", "")
    key = state.venue_keys().get(api_key)
    if key is None:
        return _ws_error(request_id, 401, -2015, "Invalid API-key, IP, or permissions.")
    if not signature or not binance_signature_matches(
        key, _ws_payload(params).encode("utf-8"), signature
    ):
        return _ws_error(request_id, 400, -1022, "Signature for this request is not valid.")
    timing = _check_timing(params, now)
    if timing is not None:
        return _ws_error(request_id, 400, -1021, timing)
    subscription = len(watches)
    watches[subscription] = AccountWatch(state, api_key)
    _journal(
        state, "SUBSCRIBE", "/ws-api/v3 userDataStream", {}, kind="user_stream", api_key=api_key
    )
    return {"id": request_id, "status": 200, "result": {"subscriptionId": subscription}}


async def _push_user_data(
    state: EmulatorState, watches: Mapping[int, AccountWatch], outbox: asyncio.Queue[str]
) -> None:
    while True:
        await asyncio.sleep(state.streams.interval_ms / 1000)
        for subscription, watch in list(watches.items()):
            for event in watch.changes():
                outbox.put_nowait(
                    json.dumps({"subscriptionId": subscription, "event": event}, default=str)
                )


async def _send_all(websocket: WebSocket, outbox: asyncio.Queue[str]) -> None:
    with contextlib.suppress(Exception):
        while True:
            await websocket.send_text(await outbox.get())


def _check_timing(params: Mapping[str, str], now_ms: int) -> str | None:
    """Binance's timestamp rule (exchange-auth.md §2.2), or None when it holds."""
    timestamp = params.get("timestamp", "")
    if not timestamp.isdigit():
        return "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
    window = params.get("recvWindow", "5000")
    limit = int(window) if window.isdigit() else 5000
    if int(timestamp) >= now_ms + 1000:
        return "Timestamp for this request was 1000ms ahead of the server's time."
    if now_ms - int(timestamp) > limit:
        return "Timestamp for this request is outside of the recvWindow."
    return None


def _ws_payload(params: Mapping[str, str]) -> str:
    """The WebSocket API's signed text: every param but ``signature``, sorted, un-encoded."""
    return "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "signature")


def _rest_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in sorted(params.items()))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ws_error(request_id: object, status: int, code: int, msg: str) -> dict[str, object]:
    return {"id": request_id, "status": status, "error": {"code": code, "msg": msg}}


async def _wait_or_frame(websocket: WebSocket, seconds: float) -> None:
    """Sleep ``seconds``, noticing a close from the client meanwhile (its frames are ignored)."""
    try:
        async with asyncio.timeout(seconds):
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
    except TimeoutError:
        return


def _journal(
    state: EmulatorState,
    method: str,
    path: str,
    params: dict[str, object],
    *,
    kind: str,
    api_key: str | None = None,
) -> None:
    state.journal.record(
        Entry(
            method=method,
            path=path,
            params=params,
            time_ms=state.clock.now_ms(),
            api_key=api_key,
            kind=kind,
            accepted=True,
            transport="ws",
        )
    )


async def serve_socket(websocket: WebSocket, state: EmulatorState, run: Callable[[], Any]) -> None:
    """Accept, track for ``drop_all``, run, and forget the connection however it ends."""
    await websocket.accept()
    state.streams.sockets.add(websocket)
    try:
        await run()
    except (WebSocketDisconnect, RuntimeError, ConnectionError):
        pass
    finally:
        state.streams.sockets.discard(websocket)
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()
