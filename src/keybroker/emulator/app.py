"""The emulator's Starlette app: one exchange venue behind faults, a journal and control endpoints.

    >>> app = create_app("binance", [ApiKey("k", Secret("not-a-real-secret"))])
    >>> base_url, stop = serve_in_thread(app)       # keybroker.emulator.server

Every path outside ``/__emulator__/`` goes to the venue (``binance.Binance``,
``okx.Okx`` or ``bybit.Bybit``), after the fault plan has had its say. Control endpoints, for
tests and bot CI (never faulted, limited or journaled):

- ``GET /__emulator__/journal[?since=SEQ]``: every request received, as JSON entries.
- ``POST /__emulator__/reset``: fresh markets, wallets, orders, limits, journal and clock.
- ``GET /__emulator__/market``: every market's product, symbol, mid, best bid/ask, steps.
- ``POST /__emulator__/market``: ``{"steps": N, "symbol"?: S}`` walks the markets (or one
  symbol) N steps; ``{"symbol": S, "price": "P", "product"?: X}`` jumps a symbol to P.
  Resting limit orders that the move crosses fill, as far as the book has volume.
- ``GET /__emulator__/clock``: ``{"now_ms": ..., "offset_ms": ...}``.
- ``POST /__emulator__/clock``: ``{"advance_ms": N}`` moves the emulator's clock: server
  time, recvWindow checks, rate-limit windows and bans all follow it.
- ``GET /__emulator__/accounts``: balances, locked amounts and positions per api key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from keybroker.clock import Clock, SystemClock
from keybroker.emulator import binance_ws, bybit_ws, okx_ws
from keybroker.emulator.binance import Binance
from keybroker.emulator.bybit import Bybit
from keybroker.emulator.config import EmulatorConfig
from keybroker.emulator.faults import Fault, FaultPlan
from keybroker.emulator.journal import Entry, Journal
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.okx import Okx
from keybroker.emulator.signatures import check_public_key
from keybroker.emulator.wire import DROP_EXTENSION, Answer, Call, Venue
from keybroker.errors import InvalidInput

EMULATED = ("binance", "okx", "bybit")


class EmulatorClock:
    """The emulator's time: a base clock plus an offset that ``POST /__emulator__/clock`` moves."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.offset_ms = 0

    def now_ms(self) -> int:
        return self.base.now_ms() + self.offset_ms


@dataclass
class EmulatorState:
    exchange: str
    keys: list[ApiKey]
    config: EmulatorConfig
    clock: EmulatorClock
    venue: Venue
    journal: Journal
    faults: FaultPlan
    streams: binance_ws.Streams = field(default_factory=binance_ws.Streams)

    def venue_keys(self) -> dict[str, ApiKey]:
        return {key.api_key: key for key in self.keys}

    def record_call(self, call: Call, answer: Answer, *, transport: str) -> None:
        _record(self, call, answer, None, transport=transport)

    def reset(self) -> None:
        self.clock.offset_ms = 0
        self.venue = _venue(self.exchange, self.keys, self.config, self.clock)
        self.journal.clear()
        self.faults = FaultPlan(self.config.faults)


def _venue(exchange: str, keys: list[ApiKey], config: EmulatorConfig, clock: Clock) -> Venue:
    if exchange == "binance":
        return Binance(keys, config, clock.now_ms)
    if exchange == "bybit":
        return Bybit(keys, config, clock.now_ms)
    return Okx(keys, config, clock.now_ms)


def create_app(
    exchange: str,
    keys: Sequence[ApiKey],
    config: EmulatorConfig | None = None,
    *,
    clock: Clock | None = None,
) -> Starlette:
    """An emulator of ``exchange`` (binance, okx or bybit) accepting ``keys``; InvalidInput
    if unusable."""
    if exchange not in EMULATED:
        raise InvalidInput(f"the emulator speaks {', '.join(EMULATED)}, not {exchange!r}")
    if not keys:
        raise InvalidInput("the emulator needs at least one api key")
    for key in keys:
        check_public_key(key)
        if exchange == "okx" and (key.passphrase is None or key.key_type != "hmac"):
            raise InvalidInput(f"key {key.api_key}: OKX keys are hmac keys with a passphrase")
        if exchange == "bybit" and key.key_type != "hmac":
            raise InvalidInput(f"key {key.api_key}: the emulated Bybit takes hmac keys only")
    config = config or EmulatorConfig()
    emulator_clock = EmulatorClock(clock or SystemClock())
    state = EmulatorState(
        exchange=exchange,
        keys=list(keys),
        config=config,
        clock=emulator_clock,
        venue=_venue(exchange, list(keys), config, emulator_clock),
        journal=Journal(),
        faults=FaultPlan(config.faults),
    )
    app = Starlette(
        routes=[
            Route("/__emulator__/journal", _journal, methods=["GET"]),
            Route("/__emulator__/reset", _reset, methods=["POST"]),
            Route("/__emulator__/market", _market, methods=["GET", "POST"]),
            Route("/__emulator__/clock", _clock, methods=["GET", "POST"]),
            Route("/__emulator__/accounts", _accounts, methods=["GET"]),
            Route("/__emulator__/ws/drop", _drop_websockets, methods=["POST"]),
            *_websocket_routes(exchange),
            Route("/{path:path}", _exchange, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
    )
    app.state.emulator = state
    return app


def _state(request: Request | WebSocket) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


# --- WebSockets (binance_ws.py) ----------------------------------------------------------------


def _websocket_routes(exchange: str) -> list[WebSocketRoute]:
    if exchange == "okx":
        return [
            WebSocketRoute("/ws/v5/public", _okx_public),
            WebSocketRoute("/ws/v5/private", _okx_private),
        ]
    if exchange == "bybit":
        return [
            WebSocketRoute("/v5/public/{category}", _bybit_public),
            WebSocketRoute("/v5/private", _bybit_private),
            WebSocketRoute("/v5/trade", _bybit_trade),
        ]
    return [
        WebSocketRoute("/ws-api/v3", _ws_api),
        WebSocketRoute("/ws/{name}", _ws_stream),
        WebSocketRoute("/stream", _ws_combined),
    ]


async def _ws_api(websocket: WebSocket) -> None:
    state = _state(websocket)
    await binance_ws.serve_socket(websocket, state, lambda: binance_ws.ws_api(websocket, state))


async def _ws_stream(websocket: WebSocket) -> None:
    state = _state(websocket)
    name = websocket.path_params["name"]
    if "@" in name:
        run = lambda: binance_ws.public_stream(websocket, state, [name])  # noqa: E731
    else:
        run = lambda: binance_ws.user_stream(websocket, state, name)  # noqa: E731
    await binance_ws.serve_socket(websocket, state, run)


async def _ws_combined(websocket: WebSocket) -> None:
    state = _state(websocket)
    streams = [s for s in websocket.query_params.get("streams", "").split("/") if s]
    await binance_ws.serve_socket(
        websocket, state, lambda: binance_ws.public_stream(websocket, state, streams)
    )


async def _okx_public(websocket: WebSocket) -> None:
    state = _state(websocket)
    await binance_ws.serve_socket(websocket, state, lambda: okx_ws.public(websocket, state))


async def _okx_private(websocket: WebSocket) -> None:
    state = _state(websocket)
    await binance_ws.serve_socket(websocket, state, lambda: okx_ws.private(websocket, state))


async def _bybit_public(websocket: WebSocket) -> None:
    state = _state(websocket)
    category = websocket.path_params["category"]
    await binance_ws.serve_socket(
        websocket, state, lambda: bybit_ws.public(websocket, state, category)
    )


async def _bybit_private(websocket: WebSocket) -> None:
    state = _state(websocket)
    await binance_ws.serve_socket(websocket, state, lambda: bybit_ws.private(websocket, state))


async def _bybit_trade(websocket: WebSocket) -> None:
    state = _state(websocket)
    await binance_ws.serve_socket(websocket, state, lambda: bybit_ws.trade(websocket, state))


async def _drop_websockets(request: Request) -> Response:
    dropped = await _state(request).streams.drop_all()
    return JSONResponse({"dropped": dropped})


# --- the exchange -----------------------------------------------------------------------------


async def _exchange(request: Request) -> Response:
    state = _state(request)
    body = await request.body()
    call = _call(request, body, state.clock.now_ms())
    is_private, is_order = state.venue.classify(call)
    plan = state.faults
    fault = plan.draw(is_private=is_private, is_order=is_order)
    if plan.spec.latency_ms and plan.in_scope(is_private=is_private, is_order=is_order):
        await asyncio.sleep(plan.spec.latency_ms / 1000)
        call = _call(request, body, state.clock.now_ms())
    if fault is Fault.ERROR_5XX:
        answer = state.venue.server_error()
        answer.params = _raw_params(call)
        _record(state, call, answer, fault)
        return _response(answer)
    if fault is Fault.TIMEOUT:
        _record(state, call, Answer(0, None, params=_raw_params(call)), fault)
        return _Hang(plan.spec.hang_ms / 1000)
    answer = state.venue.handle(call)
    if fault is Fault.DROP_AFTER_PROCESS:
        _record(state, call, answer, fault)
        return _Dropped()
    _record(state, call, answer, None)
    return _response(answer)


def _call(request: Request, body: bytes, now_ms: int) -> Call:
    return Call(
        method=request.method,
        path=request.url.path,
        query=request.scope.get("query_string", b""),
        body=body,
        headers={name.lower(): value for name, value in request.headers.items()},
        client=request.client.host if request.client else "",
        now_ms=now_ms,
    )


def _response(answer: Answer) -> Response:
    return Response(answer.encode(), answer.status, answer.headers, "application/json")


def _record(
    state: EmulatorState,
    call: Call,
    answer: Answer,
    fault: Fault | None,
    *,
    transport: str = "rest",
) -> None:
    api_key = (
        answer.api_key
        or call.headers.get("x-mbx-apikey")
        or call.headers.get("ok-access-key")
        or call.headers.get("x-bapi-api-key")
    )
    state.journal.record(
        Entry(
            method=call.method,
            path=call.path,
            params=answer.params,
            time_ms=call.now_ms,
            api_key=api_key,
            kind=answer.kind,
            accepted=answer.accepted,
            status=answer.status,
            code=answer.code,
            fault=fault.value if fault else None,
            orders=answer.orders,
            withdrawal=answer.withdrawal,
            transport=transport,
        )
    )


def _raw_params(call: Call) -> dict[str, object]:
    params: dict[str, object] = dict(parse_qsl(call.query.decode("utf-8", "replace")))
    text = call.body.decode("utf-8", "replace")
    if text.lstrip().startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            params.update(parsed)
        elif isinstance(parsed, list):
            params["batch"] = parsed
    elif text:
        params.update(parse_qsl(text))
    params.pop("signature", None)
    return params


class _Dropped(Response):
    """No response at all: the connection is closed as if the exchange fell over mid-request."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drop = scope.get("extensions", {}).get(DROP_EXTENSION)
        if drop is None:
            raise ConnectionAbortedError("dropped; serve with keybroker.emulator.server to close")
        drop()
        # connection_lost runs on a later loop turn; once it has, uvicorn sends nothing.
        await asyncio.sleep(0.05)


class _Hang(_Dropped):
    """Hold the request unanswered until the client gives up or ``seconds`` pass, then drop it."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(self.seconds):
                while (await receive())["type"] != "http.disconnect":
                    pass
        except TimeoutError:
            pass
        await super().__call__(scope, receive, send)


# --- control ----------------------------------------------------------------------------------


async def _journal(request: Request) -> Response:
    since = request.query_params.get("since", "0")
    if not since.isdigit():
        return _control_error("since must be a sequence number")
    entries = _state(request).journal.entries(int(since))
    return JSONResponse({"entries": [entry.to_json() for entry in entries]})


async def _reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"reset": True})


async def _market(request: Request) -> Response:
    state = _state(request)
    engine, now = state.venue.engine, state.clock.now_ms()
    if request.method == "POST":
        command = await _json_object(request)
        if command is None:
            return _control_error("send a JSON object")
        symbol = command.get("symbol")
        if "price" in command:
            try:
                price = Decimal(str(command["price"]))
            except InvalidOperation:
                return _control_error("price must be a number")
            if not isinstance(symbol, str) or not price.is_finite() or price <= 0:
                return _control_error("give a symbol and a positive price")
            product = command.get("product")
            if engine.move(symbol, price, now, product if isinstance(product, str) else None) == 0:
                return _control_error(f"no market {symbol!r}")
        else:
            steps = command.get("steps", 1)
            if not isinstance(steps, int) or not 1 <= steps <= 100_000:
                return _control_error("steps must be an integer from 1 to 100000")
            engine.step(now, steps, symbol if isinstance(symbol, str) else None)
    markets = [
        {
            "product": product,
            "symbol": symbol,
            "mid": str(market.mid),
            "best_bid": str(market.best_bid()),
            "best_ask": str(market.best_ask()),
            "steps": market.steps,
        }
        for product, markets in engine.markets.items()
        for symbol, market in markets.items()
    ]
    return JSONResponse({"markets": markets})


async def _clock(request: Request) -> Response:
    clock = _state(request).clock
    if request.method == "POST":
        command = await _json_object(request)
        advance = None if command is None else command.get("advance_ms")
        if not isinstance(advance, int):
            return _control_error('send {"advance_ms": N} with an integer N')
        clock.offset_ms += advance
    return JSONResponse({"now_ms": clock.now_ms(), "offset_ms": clock.offset_ms})


async def _accounts(request: Request) -> Response:
    state = _state(request)
    engine = state.venue.engine
    accounts = {}
    for key in state.keys:
        wallet = engine.account(key.api_key)
        accounts[key.api_key] = {
            "free": {asset: str(amount) for asset, amount in sorted(wallet.free.items())},
            "locked": {asset: str(amount) for asset, amount in sorted(wallet.locked.items())},
            "margin_balance": str(wallet.margin_balance),
            "positions": {
                symbol: {"amount": str(p.amount), "entry_price": str(p.entry_price)}
                for symbol, p in sorted(wallet.positions.items())
            },
        }
    return JSONResponse({"accounts": accounts})


async def _json_object(request: Request) -> dict[str, object] | None:
    try:
        value = json.loads(await request.body() or b"{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _control_error(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)
