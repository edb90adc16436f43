"""WebSockets through the gateway: ``/{credential}/{exchange websocket path}`` (issue 11).

    ws://127.0.0.1:8787/binance-main/ws-api/v3          the WebSocket API: each frame judged,
                                                         audited and signed like a REST request
    ws://127.0.0.1:8787/binance-main/ws/btcusdt@ticker   market data: one upstream per stream,
    ws://127.0.0.1:8787/binance-main/stream?streams=a/b  shared by every bot that asks for it
    ws://127.0.0.1:8787/binance-main/ws                  market data by SUBSCRIBE frames
    ws://127.0.0.1:8787/binance-main/ws/<listenKey>      an account's events; kept alive here

The token rules are REST's (``auth.py`` runs first, for the upgrade too). The
profile's ``websocket`` section says what each path is and how the exchange
signs; nothing exchange-specific lives here.

Three kinds, three shapes:

- **api**: one upstream connection per bot connection. A request frame is read
  as its REST equivalent and goes through the REST pipeline's own steps —
  classification, policy (kill switch included), the limiter, a durable intent
  row — then it is signed and sent; the upstream answer with its id writes the
  result row. A refused frame gets the exchange's error shape and never leaves.
  When the upstream connection drops, the bot's connection is closed with a
  reason naming the orders left without an answer: keybroker never resends a
  frame (the bot looks them up by client order id, which the gateway added).
- **public**: a hub keyed by upstream URL, one connection per stream name. Each
  bot has a bounded queue; a bot that falls ``queue_limit`` messages behind is
  disconnected with a reason, never silently fed gaps, and never slows others.
- **user**: relayed one to one; the gateway keeps the listen key alive with the
  REST pipeline (signed, limited, audited like any request) while the bot listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import httpx
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Event, State
from websockets.speedups import apply_mask

from keybroker.audit import AuditRow
from keybroker.crypto.keys import RemoteKey
from keybroker.errors import BadToken, InvalidInput, KeybrokerError, KeyStoreError, RateLimited
from keybroker.exchanges import get_profile
from keybroker.exchanges.base import ExchangeProfile, RestTwin, WebSocketSupport, WsCall
from keybroker.gateway.auth import BOT_SCOPE_KEY, credential_of, token_of
from keybroker.gateway.pipeline import (
    Incoming,
    Job,
    deny,
    halted_while_waiting,
    handle,
    judge,
    row,
    take_budget,
)
from keybroker.gateway.remote_keys import RemoteKeys
from keybroker.gateway.state import Gateway
from keybroker.gateway.ws_protocol import WRITE_TEXT, frame_header
from keybroker.model import Credential
from keybroker.paper.keyless import is_keyless
from keybroker.policy.rules import HALTED_DETAIL
from keybroker.vault import BotToken

log = logging.getLogger("keybroker.gateway")

QUEUE_LIMIT = 1024
"""Messages a market-data bot may fall behind before it is disconnected."""
CONNECT_ATTEMPTS = 4
KEEPALIVE_S = 30 * 60.0
"""Binance closes a listen key after 60 minutes without a keep-alive; half of it."""
MAX_FRAME_BYTES = 1 << 20
MATCH_AFTER_S = 0.002
"""How long after relaying an answer it is matched to its request (``ApiSession``)."""


async def websocket_entry(websocket: WebSocket) -> None:
    """Every WebSocket upgrade outside ``/_/``: resolve, then serve by the path's kind."""
    gateway: Gateway = websocket.scope["state"]["gateway"]
    bot: BotToken | None = websocket.scope.get(BOT_SCOPE_KEY)
    if bot is None or websocket.url.path.startswith("/_/"):
        # The gateway's own endpoints (and the dashboard) speak no WebSocket; the
        # token middleware lets some of them through without a bot token.
        await websocket.close(code=1008, reason="keybroker: no WebSocket here")
        return
    raw_path: bytes = websocket.scope.get("raw_path") or websocket.url.path.encode()
    segment, _, rest = raw_path.lstrip(b"/").partition(b"/")
    name = unquote(segment.decode("ascii", "replace"))
    path = "/" + rest.decode("ascii", "replace")
    query = websocket.scope.get("query_string", b"").decode("ascii", "replace")
    await websocket.accept()
    try:
        credential = gateway.access.credential(name)
        profile = get_profile(credential.exchange)
        support = profile.websocket
        if support is None:
            raise InvalidInput(f"keybroker relays no WebSockets for {credential.exchange} yet")
        kind = support.kind(path)
        if kind is None:
            raise InvalidInput(
                f"{path} is not a {credential.exchange} WebSocket path keybroker knows"
            )
        target = upstream_url(credential, support, path + ("?" + query if query else ""))
    except KeybrokerError as error:
        await _refuse_upgrade(gateway, websocket, bot, name, path, str(error))
        return
    gateway.metrics.count("keybroker_websockets_total", credential=name, kind=kind)
    if kind == "public":
        await hub_of(websocket).serve(websocket, support, target, path, query)
    elif kind == "user":
        await UserStream(gateway, websocket, bot, credential, profile, path).run(target)
    else:
        await ApiSession(gateway, websocket, bot, credential, profile, support).run(target)


def upstream_url(credential: Credential, support: WebSocketSupport, path_and_query: str) -> str:
    """The exchange's WebSocket URL for the path, or the credential's base_url override
    (http -> ws, https -> wss: the override points at one host for everything)."""
    if credential.base_url:
        base = credential.base_url.rstrip("/")
        if support.override_url is not None:
            return support.override_url(base, path_and_query)
        if base.startswith("https://"):
            base = "wss://" + base[len("https://") :]
        elif base.startswith("http://"):
            base = "ws://" + base[len("http://") :]
        return base + path_and_query
    return support.url(path_and_query, credential.environment)


async def _refuse_upgrade(
    gateway: Gateway, websocket: WebSocket, bot: BotToken, credential: str, path: str, detail: str
) -> None:
    await gateway.audit.append(
        AuditRow(
            "denied",
            bot=bot.bot,
            credential=credential,
            method="WEBSOCKET",
            path=path,
            decision="deny",
            rule="websocket_refused",
            detail=detail,
        )
    )
    await _close(websocket, 1008, detail)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    # A close reason is at most 123 bytes (RFC 6455 §5.5).
    text = reason.encode("utf-8")[:120].decode("utf-8", "ignore")
    with contextlib.suppress(Exception):
        await websocket.close(code=code, reason=text)


def token_ended(gateway: Gateway, token: str) -> str | None:
    """Why the bot's token no longer holds (revoked, expired), or None while it does.

    The upgrade checked the token once; a connection lives for hours. This asks
    the gateway's token cache again (a dict lookup while nothing changed; a
    revocation by ``keybroker tokens revoke`` empties it within ``poll_interval_s``,
    as for REST). A vault that cannot answer now is asked again next time.
    """
    try:
        gateway.access.check_token(token)
    except BadToken as error:
        return str(error)
    except KeybrokerError:
        return None
    return None


def watch_token(websocket: WebSocket, me: Subscriber) -> asyncio.Task[None]:
    """A task that closes the bot's connection ``me`` (1008) once its token is revoked or
    expires: a bot cut off over REST must not keep its streams, nor an API session it
    opened before. The caller cancels it when the connection ends."""
    gateway: Gateway = websocket.scope["state"]["gateway"]
    bot: BotToken = websocket.scope[BOT_SCOPE_KEY]
    raw_path: bytes = websocket.scope.get("raw_path") or websocket.url.path.encode()
    credential = credential_of(raw_path)
    token = token_of(Headers(scope=websocket.scope))
    return asyncio.create_task(_watch_token(gateway, token, bot, credential, me))


async def _watch_token(
    gateway: Gateway, token: str, bot: BotToken, credential: str, me: Subscriber
) -> None:
    while me.reason is None:
        await asyncio.sleep(gateway.config.poll_interval_s)
        ended = token_ended(gateway, token)
        if ended is not None and me.reason is None:
            await gateway.audit.append(
                AuditRow(
                    "event",
                    bot=bot.bot,
                    credential=credential,
                    detail=f"websocket closed: {ended}",
                )
            )
            me.end(1008, f"keybroker: {ended}")


async def _connect(url: str, listener: Callable[[str], None] | None = None) -> ClientConnection:
    """Connect upstream (TLS verified for wss), retrying with backoff; OSError when it fails.

    With ``listener``, every message goes to it as it is read (``Relayed``), none to
    ``recv()``.
    """
    factory = None
    if listener is not None:
        # websockets calls the factory as it would the class; a partial carries the listener.
        factory = cast(type[ClientConnection], functools.partial(Relayed, listener=listener))
    delay = 0.1
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            # No permessage-deflate: on small JSON frames inflating costs more time than
            # the bytes saved, and every frame of a trading stream is latency.
            return await connect(
                url,
                open_timeout=10,
                max_size=MAX_FRAME_BYTES,
                ping_interval=20,
                compression=None,
                create_connection=factory,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as error:
            if attempt == CONNECT_ATTEMPTS - 1:
                raise OSError(
                    f"the exchange's WebSocket is unreachable ({type(error).__name__})"
                ) from None
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


# -- public: one upstream per stream, fanned out --------------------------------------------------
#
# The relay's hot path holds no queue and no task between the exchange and a bot that keeps
# up: the upstream connection gives each whole message to its channel inside the transport's
# own callback (``Relayed``), and the channel writes it at once to every bot with nothing
# waiting (``Subscriber.offer``). Only a bot that is behind goes through its queue and its
# writer task. Each turn of the event loop saved is tens of microseconds on a busy machine
# (measured with bench/bench_websocket.py: the relay added 200-290 us at p50 with two).


class Relayed(ClientConnection):
    """An upstream connection that gives every whole message to ``listener`` as it is read.

    ``websockets`` parses each frame through a chain of generators and queues messages
    for ``recv()``, which wakes a reading task on a later turn of the loop: on a busy
    machine, where every wake-up finds the caches cold, that was most of the relay's
    cost. Here, once the handshake is done, the frames an exchange sends (unmasked,
    no extension: ``compression=None``) are cut out of the bytes directly and each whole
    message goes to ``listener`` inside ``data_received``; so ``listener`` must never
    block (the hub's only offers the message to bounded per-bot queues).

    What is not a plain data frame is ``websockets``' to handle, so the protocol keeps
    its own rules: a ping, a pong or a close is handed to it whole (it always sees whole
    frames, at a frame boundary); a masked frame, reserved bits, an unknown opcode or a
    frame over ``max_size`` hands it the rest of the connection, and it fails the
    connection as it would have. A broken fragmented message fails it here, with the
    close code ``websockets`` uses.
    """

    def __init__(self, *args: Any, listener: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener = listener
        self._head = b""  # the handshake's answer, until its blank line
        self._frames = False  # past the handshake: frames are cut here
        self._buffer = b""  # the start of a frame not complete yet
        self._fragments: list[bytes] = []  # a fragmented message so far
        self._fragmented = 0

    def data_received(self, data: bytes) -> None:
        if self._frames:
            self._cut(self._buffer + data if self._buffer else data)
        elif self.response is not None:
            super().data_received(data)  # websockets reads everything from here on
        else:
            head = self._head + data
            end = head.find(b"\r\n\r\n")
            if end < 0 and len(head) <= _MAX_HEAD:
                self._head = head
                return
            self._head = b""
            cut = len(head) if end < 0 else end + 4
            super().data_received(head[:cut])  # the protocol reads the answer
            rest = head[cut:]
            if self.response is not None and self.protocol.state is State.OPEN:
                self._frames = True
                self._cut(rest)
            elif rest:
                super().data_received(rest)

    def eof_received(self) -> None:
        if self._head:  # an answer cut short: the protocol reports it
            head, self._head = self._head, b""
            super().data_received(head)
        super().eof_received()

    def _cut(self, buffer: bytes) -> None:
        at, end = 0, len(buffer)
        while end - at >= 2:
            header = frame_header(buffer, at, end)
            if header is None:
                break
            first, second, length, head = header
            opcode = first & 0x0F
            if second & 0x80 or first & 0x70 or opcode not in _OPCODES or length > MAX_FRAME_BYTES:
                self._frames = False  # not ours to judge: websockets fails the connection
                super().data_received(buffer[at:])
                return
            if end - at < head + length:
                break
            start, at = at, at + head + length
            if opcode & 0x08:  # ping, pong, close: websockets' own handling
                super().data_received(buffer[start:at])
                if self.protocol.state is not State.OPEN:  # closing: it reads the rest
                    self._frames = False
                    if at < end:
                        super().data_received(buffer[at:])
                    return
                continue
            payload = buffer[start + head : at]
            if opcode:  # text or binary: a new message
                if self._fragments:
                    self._fail(CloseCode.PROTOCOL_ERROR, "expected a continuation frame")
                    return
                if first & 0x80:
                    self._deliver(payload)
                else:
                    self._fragments, self._fragmented = [payload], length
                continue
            if not self._fragments:
                self._fail(CloseCode.PROTOCOL_ERROR, "unexpected continuation frame")
                return
            self._fragments.append(payload)
            self._fragmented += length
            if self._fragmented > MAX_FRAME_BYTES:
                self._fail(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            if first & 0x80:
                parts, self._fragments = self._fragments, []
                self._deliver(b"".join(parts))
        self._buffer = buffer[at:]

    def write_text(self, text: str) -> bool:
        """``text`` as one text frame, masked as a client's must be, written now; False
        (nothing written) when ``send()`` must do it (see ``write_frame``)."""
        return self.write_frame(masked_frame(text))

    def write_frame(self, frame: bytes) -> bool:
        """A whole masked text frame (``masked_frame``) written now; False (nothing
        written) when ``send()`` must do it: the connection is not open, a fragmented
        send is in progress, or the socket is full.

        ``send()`` goes through an async context manager, the protocol's frame object and
        its writer before the same ``transport.write``; a signed order waiting for it on
        a busy machine lost ~35 us. Both end in that one ``write``, so frames written
        either way leave in order.
        """
        protocol = self.protocol
        if (
            protocol.state is not State.OPEN
            or protocol.expect_continuation_frame
            or protocol.extensions
            or protocol.writes  # nothing of the protocol's own may be waiting
            or self.send_in_progress is not None
            or self.paused
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(frame)
        return True

    def _deliver(self, payload: bytes) -> None:
        try:
            self.listener(payload.decode("utf-8", "replace"))
        except Exception as error:  # one bad frame must not break the transport's callback
            # The type only: a message or traceback could quote the frame.
            log.error("an upstream WebSocket frame could not be relayed (%s)", type(error).__name__)

    def _fail(self, code: CloseCode, reason: str) -> None:
        self._frames, self._buffer, self._fragments = False, b"", []
        self.protocol.fail(code, reason)
        super().data_received(b"")  # writes the close frame and sets the close deadline

    def process_event(self, event: Event) -> None:
        # Data frames reach the protocol only in the connection's last moments (after a
        # frame websockets refuses, or while closing); they still go to the listener,
        # never to recv(), where nobody would read them.
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake's answer
            return
        if event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY:
            if event.fin:
                self._deliver(bytes(event.data))
            return
        if event.opcode is not Opcode.CONT:
            super().process_event(event)  # a pong: websockets' keep-alive


def masked_frame(text: str) -> bytes:
    """``text`` as one whole text frame from a client: FIN, masked with a fresh key
    (RFC 6455 section 5.3); no extension (the gateway's upstreams have none)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))  # FIN + text; masked
    elif size < 65536:
        head = bytes((0x81, 0x80 | 126)) + size.to_bytes(2)
    else:
        head = bytes((0x81, 0x80 | 127)) + size.to_bytes(8)
    mask = secrets.token_bytes(4)
    return head + mask + apply_mask(payload, mask)


_MAX_HEAD = 65536
"""Bytes of a handshake answer held back until its blank line (websockets allows less)."""
_OPCODES = frozenset({0, 1, 2, 8, 9, 10})
"""Continuation, text, binary; close, ping, pong (RFC 6455 section 5.2)."""


@dataclass(eq=False)
class Subscriber:
    """One bot's connection: frames written to it at once, or a bounded queue and a writer.

    ``write`` puts a frame on the bot's socket at once (``write_now``, the server's
    ``ws_protocol.write_text``) when nothing is waiting for this bot and its socket
    takes bytes: a bot that keeps up. Otherwise the frame joins the queue, which the
    writer task (``_drain``) sends in order through the ASGI send. A bot ``QUEUE_LIMIT``
    frames behind is ended with a reason: it gets nothing more and is closed, never
    fed a stream with gaps, never slowing the others.
    """

    websocket: WebSocket
    wrap: Callable[[str, str], str]
    write_now: Callable[[str], bool] | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    reason: tuple[int, str] | None = None
    writing: bool = False
    """The writer is sending a queued frame: a new frame must wait behind it."""

    @classmethod
    def of(cls, websocket: WebSocket, wrap: Callable[[str, str], str]) -> Subscriber:
        """The subscriber for a bot's connection, with the server's ``write_text`` if any."""
        extensions = websocket.scope.get("extensions") or {}
        return cls(websocket, wrap, extensions.get(WRITE_TEXT))

    def offer(self, stream: str, message: str) -> None:
        """A frame of ``stream`` for this bot (combined streams name their stream)."""
        if self.reason is None:
            self.write(self.wrap(stream, message))

    def write(self, text: str) -> None:
        """``text`` to the bot now, or in order after what is waiting; never blocks."""
        if self.reason is not None:
            return
        if not self.writing and self.queue.empty():
            write_now = self.write_now
            if write_now is not None and write_now(text):
                return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.end(1008, f"keybroker: this bot fell {QUEUE_LIMIT} messages behind; reconnect")

    def end(self, code: int, reason: str) -> None:
        if self.reason is None:
            self.reason = (code, reason)
            if self.queue.full():  # it fell behind: closed now, not fed the rest first
                while not self.queue.empty():
                    self.queue.get_nowait()
            self.queue.put_nowait(None)


@dataclass(eq=False)
class Channel:
    """One upstream stream and the bots reading it."""

    url: str  # with "#<stream>": several streams may share one upstream path
    stream: str
    is_data: Callable[[str], bool]
    subscribers: set[Subscriber] = field(default_factory=set)
    upstream: ClientConnection | None = None
    watcher: asyncio.Task[None] | None = None
    beat: asyncio.Task[None] | None = None

    def relay(self, text: str) -> None:
        """Each upstream message, as it is read: data goes to every bot on the stream."""
        if self.is_data(text):
            for subscriber in tuple(self.subscribers):
                subscriber.offer(self.stream, text)


class StreamHub:
    """Shared market-data streams: identical subscriptions make one upstream connection."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    async def serve(
        self, websocket: WebSocket, support: WebSocketSupport, target: str, path: str, query: str
    ) -> None:
        base = target[: len(target) - len(path) - (len(query) + 1 if query else 0)]
        names, combined = support.streams_of(path, query)
        me = Subscriber.of(websocket, _combined if combined else _raw)
        joined: list[Channel] = []
        writer = asyncio.create_task(_drain(me))
        watcher = watch_token(websocket, me)
        try:
            for name in names:
                joined.append(await self.join(me, support, base, name))
            while me.reason is None:
                text = await websocket.receive_text()
                local = support.local_answer(text)
                if local is not None:  # e.g. an application-level ping
                    me.write(local)
                    continue
                request = support.subscription(text)
                if request is None:
                    me.write(
                        support.error_frame(None, 400, "invalid_frame", "send SUBSCRIBE frames")
                    )
                    continue
                request_id, action, streams = request
                for name in (support.stream_in(path, s) for s in streams):
                    if action.lower() == "subscribe":
                        joined.append(await self.join(me, support, base, name))
                    else:
                        for channel in [c for c in joined if c.stream == name]:
                            joined.remove(channel)
                            await self.leave(me, channel)
                for reply in support.subscription_replies(request_id, action, streams):
                    me.write(reply)
        except OSError as error:
            me.end(1011, str(error))
        except (WebSocketDisconnect, RuntimeError):
            me.end(1000, "bye")
        finally:
            watcher.cancel()
            for channel in joined:
                await self.leave(me, channel)
            me.end(1000, "bye")
            with contextlib.suppress(Exception):
                await writer

    async def join(
        self, me: Subscriber, support: WebSocketSupport, base: str, stream: str
    ) -> Channel:
        url = base + support.stream_path(stream)
        key = url + "#" + stream
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            channel = self.channels.get(key)
            if channel is None:
                channel = Channel(key, stream, support.is_data)
                channel.subscribers.add(me)  # first: the stream's first frames are its too
                try:
                    channel.upstream = upstream = await _connect(url, channel.relay)
                    first = support.stream_subscribe(stream)
                    if first is not None:
                        await upstream.send(first)
                except BaseException:
                    channel.subscribers.discard(me)
                    if channel.upstream is not None:
                        await channel.upstream.close()
                    raise
                channel.watcher = asyncio.create_task(self._watch(channel, upstream))
                channel.beat = asyncio.create_task(_heartbeat(upstream, support))
                self.channels[key] = channel
            channel.subscribers.add(me)
            return channel

    async def leave(self, me: Subscriber, channel: Channel) -> None:
        channel.subscribers.discard(me)
        if not channel.subscribers and self.channels.get(channel.url) is channel:
            del self.channels[channel.url]
            if channel.watcher is not None:
                channel.watcher.cancel()
            if channel.beat is not None:
                channel.beat.cancel()
            if channel.upstream is not None:
                await channel.upstream.close()

    async def _watch(self, channel: Channel, upstream: ClientConnection) -> None:
        """Wait for the exchange to close the stream; then every reader is told."""
        await upstream.wait_closed()
        # Every message read before the close was relayed as it came (Relayed).
        if channel.beat is not None:
            channel.beat.cancel()
        if self.channels.get(channel.url) is channel:
            del self.channels[channel.url]
        for subscriber in list(channel.subscribers):
            subscriber.end(1012, "keybroker: the exchange closed the stream; reconnect")


async def _heartbeat(upstream: ClientConnection, support: WebSocketSupport) -> None:
    """The profile's application-level ping, every interval, while the connection lives."""
    if support.heartbeat is None:
        return
    with contextlib.suppress(ConnectionClosed):
        while True:
            seconds, frame = support.heartbeat()
            await asyncio.sleep(seconds)
            await upstream.send(frame)


def _raw(stream: str, message: str) -> str:
    return message


@functools.lru_cache(maxsize=1024)
def _combined_head(stream: str) -> str:
    return '{"stream":' + json.dumps(stream) + ',"data":'


def _combined(stream: str, message: str) -> str:
    return _combined_head(stream) + message + "}"


async def _drain(me: Subscriber) -> None:
    """Write the queue to the bot in order; close with the reason once the subscriber ended."""
    with contextlib.suppress(Exception):  # the bot went away: nothing to tell it
        while True:
            text = await me.queue.get()
            if text is None:
                break
            me.writing = True
            try:
                await me.websocket.send_text(text)
            finally:
                me.writing = False
    me.end(1000, "bye")
    code, reason = me.reason or (1000, "bye")
    await _close(me.websocket, code, reason)


def hub_of(websocket: WebSocket) -> StreamHub:
    """The app's one hub (kept on the app's state: it lives as long as the server)."""
    state = websocket.app.state
    hub: StreamHub | None = getattr(state, "ws_hub", None)
    if hub is None:
        hub = state.ws_hub = StreamHub()
    return hub


# -- user: an account's stream, kept alive ------------------------------------------------------


async def _until_gone(websocket: WebSocket) -> None:
    """Read (and drop) what a bot sends on a stream that takes nothing, until it leaves."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


class UserStream:
    """Relay an account's event stream and keep its listen key alive through the pipeline."""

    def __init__(
        self,
        gateway: Gateway,
        websocket: WebSocket,
        bot: BotToken,
        credential: Credential,
        profile: ExchangeProfile,
        path: str,
    ) -> None:
        self.gateway, self.websocket, self.bot = gateway, websocket, bot
        self.credential, self.profile, self.path = credential, profile, path

    async def run(self, target: str) -> None:
        me = Subscriber.of(self.websocket, _raw)  # the account's events, as they are read
        try:
            upstream = await _connect(target, me.write)
        except OSError as error:
            await _close(self.websocket, 1011, str(error))
            return
        writer = asyncio.create_task(_drain(me))
        keeper = asyncio.create_task(self._keep_alive())
        watcher = watch_token(self.websocket, me)
        closed = asyncio.ensure_future(upstream.wait_closed())
        gone = asyncio.ensure_future(_until_gone(self.websocket))
        try:
            await asyncio.wait({closed, gone, writer}, return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                me.end(1012, "keybroker: the exchange closed the stream")
        finally:
            me.end(1000, "bye")
            for task in (keeper, watcher, gone, closed):
                task.cancel()
            await upstream.close()
            with contextlib.suppress(Exception):
                await writer

    async def _keep_alive(self) -> None:
        support = self.profile.websocket
        request = None if support is None else support.keepalive(self.path)
        if request is None:
            return
        method, path, query = request
        while True:
            await asyncio.sleep(self.gateway.config.ws_keepalive_s)
            incoming = Incoming(method, self.credential.name, path, query, [], b"", self.bot)
            response = await handle(self.gateway, incoming)
            if response.status_code >= 400:
                log.warning("stream keep-alive refused: HTTP %s", response.status_code)


async def _frames_until(
    websocket: WebSocket, stop: asyncio.Future[None]
) -> AsyncGenerator[str, None]:
    """The bot's text frames, until ``stop`` completes (the exchange closed the connection).

    Waiting on both in a new task per frame (``asyncio.wait``) cost a task and a turn of
    the loop on every frame a bot sends. Here the frames are awaited directly, and
    ``stop`` cancels the wait, only while it waits: a frame being judged is never cut
    off halfway (the caller sees ``stop`` once it is done with it).
    """
    here = asyncio.current_task()
    assert here is not None
    waiting = stopped = False

    def interrupt(_: object) -> None:
        nonlocal stopped
        if waiting and not stopped:
            stopped = True
            here.cancel()

    stop.add_done_callback(interrupt)
    try:
        while not stop.done():
            waiting = True
            try:
                text = await websocket.receive_text()
            except asyncio.CancelledError:
                if stopped and here.uncancel() == 0:
                    return  # stop's own cancellation, and nobody else's
                raise
            finally:
                waiting = False
            yield text
    finally:
        stop.remove_done_callback(interrupt)


# -- api: request frames, judged like REST, signed here -------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed request frame: its text, and the same as a masked client frame on the
    wire (``Relayed.write_frame``), both built before the intent row is durable and
    neither sent before. Its repr shows neither: the frame carries the signature."""

    text: str = field(repr=False)
    wire: bytes = field(repr=False)


@dataclass
class Pending:
    job: Job
    intent_id: int
    sent_ms: int


class ApiSession:
    """One bot connection to an exchange's WebSocket API, and its own upstream connection."""

    def __init__(
        self,
        gateway: Gateway,
        websocket: WebSocket,
        bot: BotToken,
        credential: Credential,
        profile: ExchangeProfile,
        support: WebSocketSupport,
    ) -> None:
        self.gateway, self.websocket, self.bot = gateway, websocket, bot
        self.credential, self.profile, self.support = credential, profile, support
        self.pending: dict[object, Pending] = {}
        self.me = Subscriber.of(websocket, _raw)  # what the bot is sent, in order
        self._login: asyncio.Queue[str] | None = None
        self._answers: list[tuple[str, int]] = []  # relayed (with when), not matched yet
        self._matching: asyncio.TimerHandle | None = None
        self._token = token_of(Headers(scope=websocket.scope))  # checked again per frame

    async def run(self, target: str) -> None:
        try:
            upstream = cast(Relayed, await _connect(target, self._from_exchange))
        except OSError as error:
            await _close(self.websocket, 1011, str(error))
            return
        writer = asyncio.create_task(_drain(self.me))
        if self.support.login_frame is not None:
            refused = await self._log_in(upstream, self.support.login_frame)
            if refused is not None:
                await upstream.close()
                self.me.end(1011, refused)
                with contextlib.suppress(Exception):
                    await writer
                return
        beat = asyncio.create_task(_heartbeat(upstream, self.support))
        watcher = watch_token(self.websocket, self.me)
        closed = asyncio.ensure_future(upstream.wait_closed())
        try:
            async with contextlib.aclosing(_frames_until(self.websocket, closed)) as frames:
                async for text in frames:
                    local = self.support.local_answer(text)
                    if local is not None:  # e.g. the bot's own login, with placeholder keys
                        self.me.write(local)
                        continue
                    signed = await self._judge(text)
                    if signed is not None and not upstream.write_frame(signed.wire):
                        await upstream.send(signed.text)
        except (WebSocketDisconnect, RuntimeError, KeyError):
            pass
        except ConnectionClosed:
            pass
        finally:
            closed.cancel()
            beat.cancel()
            watcher.cancel()
            await upstream.close()
            lost = await self._lost()
            if lost:
                self.me.end(
                    1012,
                    f"keybroker: exchange connection lost; {lost} request(s) unanswered, "
                    "look orders up by client order id; nothing is resent",
                )
            else:
                self.me.end(1012, "keybroker: exchange connection closed")
            with contextlib.suppress(Exception):
                await writer

    def _from_exchange(self, text: str) -> None:
        """Each upstream frame as it is read (``Relayed``): to the bot at once; an answer to
        a pending request then writes its result row, as REST's does, after the answer.

        The bot needs a CPU to read its answer just as this process has written it, and
        on a small machine the exchange's side is often still busy on the other: the
        answer's matching and result row (~0.2 ms) waited for here delayed the bot by as
        much. So the frame is matched ``MATCH_AFTER_S`` later, once this process slept
        (``_match_answers``), or before the bot's next frame is judged, whichever comes
        first, and before the session ends: every answer is matched, in order.
        """
        if self._login is not None:  # the answer to the gateway's own login
            self._login.put_nowait(text)
            return
        if self.support.is_heartbeat_answer(text):
            return  # the answer to the gateway's own ping
        self.me.write(text)
        self._answers.append((text, self.gateway.clock.now_ms()))
        if self._matching is None:
            loop = asyncio.get_running_loop()
            self._matching = loop.call_later(MATCH_AFTER_S, self._match_answers)

    def _match_answers(self) -> None:
        """Match the answers relayed so far to their requests: each one answered writes
        its result row (``_result``) and frees its id."""
        if self._matching is not None:
            self._matching.cancel()
            self._matching = None
        answers, self._answers = self._answers, []
        for text, received_ms in answers:
            try:
                request_id = self.support.response_id(text)
                if request_id is not None:
                    pending = self.pending.pop(id_key(request_id), None)
                    if pending is not None:
                        self._result(pending, text, received_ms)
            except Exception as error:  # one bad answer must not cost the others their rows
                # The type only: a message could quote the frame.
                log.error("an answer could not be matched (%s)", type(error).__name__)

    async def _log_in(
        self, upstream: ClientConnection, login: Callable[[Credential, int], str]
    ) -> str | None:
        """Authenticate the upstream connection; None when it held, else why not."""
        answers = self._login = asyncio.Queue()
        now = self.gateway.clock.now_ms()
        try:
            await upstream.send(await self._signed(lambda held: login(held, now)))
        except KeyStoreError as error:
            self._login = None
            return f"keybroker: the WebSocket login could not be signed: {error}"
        closed = asyncio.ensure_future(upstream.wait_closed())
        try:
            async with asyncio.timeout(10):
                while True:
                    reading = asyncio.ensure_future(answers.get())
                    await asyncio.wait({reading, closed}, return_when=asyncio.FIRST_COMPLETED)
                    if not reading.done():
                        reading.cancel()
                        break
                    verdict = self.support.login_answer(reading.result())
                    if verdict is True:
                        return None
                    if verdict is False:
                        break
        except TimeoutError:
            pass
        finally:
            closed.cancel()
            self._login = None
            while not answers.empty():  # what came after the answer is the bot's
                self._from_exchange(answers.get_nowait())
        self.gateway.alert(
            "AuthenticationFailed", bot=self.bot.bot, credential=self.credential.name
        )
        await self.gateway.audit.append(
            AuditRow(
                "event",
                bot=self.bot.bot,
                credential=self.credential.name,
                detail="the exchange refused the gateway's WebSocket login",
            )
        )
        return "keybroker: the exchange refused the WebSocket login; check the credential"

    async def _judge(self, text: str) -> Signed | None:
        """Steps 2-7 for one frame: the signed frame to send, or None after answering a refusal."""
        self.gateway.in_flight += 1  # a REST request or a frame alone commits inline
        try:
            return await self._judge_frame(text)
        finally:
            self.gateway.in_flight -= 1

    async def _judge_frame(self, text: str) -> Signed | None:
        gateway, name = self.gateway, self.credential.name
        if self._answers:  # the ids answered so far are free again, as the bot saw
            self._match_answers()
        ended = token_ended(gateway, self._token)
        if ended is not None:  # revoked or expired since the upgrade: nothing more is sent
            request_id = self.support.request_id(text)
            await self._refuse(text, request_id, 401, "bad_token", ended, method="WEBSOCKET")
            self.me.end(1008, f"keybroker: {ended}")
            return None
        try:
            call = self.support.read_call(text)
        except InvalidInput as error:
            request_id = self.support.request_id(text)
            await self._refuse(
                text, request_id, 400, "invalid_frame", str(error), method="WEBSOCKET"
            )
            return None
        key = id_key(call.request_id)
        if call.request_id is not None and key in self.pending:
            await self._refuse(
                text,
                call.request_id,
                400,
                "duplicate_id",
                "a request with this id is still waiting for its answer",
                method=call.method,
            )
            return None
        twin = call.rest
        incoming = Incoming(
            twin.method,
            name,
            twin.path.encode("ascii"),
            twin.query.encode("ascii"),
            [("content-type", twin.content_type)] if twin.content_type else [],
            twin.content,
            self.bot,
        )
        try:
            # judge's own vault read, made here: the paper check needs the policy first,
            # and one read (one PRAGMA) serves both, as for a REST request.
            read = credential, policy = gateway.access.credential_and_policy(name)
        except KeybrokerError as error:
            await self._refuse(
                text, call.request_id, 503, "vault_unavailable", str(error), method=call.method
            )
            return None
        if not same_key(credential, self.credential):
            # Rotated (or re-pointed) since the upgrade: this session signs, and on OKX and
            # Bybit is logged in, with the old key. The bot reconnects to use the new one.
            detail = f"the key of {name} was changed since this connection opened; reconnect"
            await self._refuse(
                text, call.request_id, 503, "credential_changed", detail, method=call.method
            )
            self.me.end(1012, f"keybroker: {detail}")
            return None
        if policy.is_paper or is_keyless(credential):
            # The paper venue answers over REST; over a WebSocket a paper order would
            # reach the exchange, so a paper credential's frames are refused here.
            detail = (
                f"{name} trades on paper: use REST for its orders and account "
                "(WebSocket market data works: /ws/... public streams)"
            )
            await self._refuse(
                text, call.request_id, 400, "paper_refused", detail, method=call.method
            )
            return None
        # Steps 2-4 exactly as for REST: classification, shared halts and counts, exchange
        # facts, the policy, the order counted. A refusal comes back audited.
        judged = await judge(gateway, incoming, time.perf_counter(), read)
        if isinstance(judged, Response):
            status, code, message = _refusal_of(judged)
            self.me.write(self._error(text, call.request_id, status, code, message))
            return None
        job = judged
        request = job.request
        waited_from = time.perf_counter()
        try:
            await take_budget(gateway, job, request)
        except RateLimited as limited:
            await deny(gateway, job, "rate_limited", str(limited), error=limited)
            self.me.write(self._error(text, call.request_id, 429, "rate_limited", str(limited)))
            return None
        if halted_while_waiting(gateway, job, waited_from):  # a halt while it queued
            denied = await deny(gateway, job, "kill_switch", HALTED_DETAIL)
            status, code, message = _refusal_of(denied)
            self.me.write(self._error(text, call.request_id, status, code, message))
            return None
        intent = row(job, "intent", decision="allow", detail="websocket")
        call_out = judged_call(call, request)
        now = gateway.clock.now_ms()
        # A key held here is used now, while judge's work is still in the CPU's caches
        # (after the intent row's fsync they are cold: the same steps cost about twice as
        # much). The frame is only built: it leaves in ``run``, once the row is durable.
        signed = self._sign_here(call_out, now)
        intent_id = await gateway.write_now(intent)
        if signed is None:  # a remote key (OpenBao): its round trip comes after the row
            try:
                text_out = await self._signed(
                    lambda held: self.support.sign_call(call_out, held, now)
                )
            except KeyStoreError as error:
                await gateway.write_now(
                    row(job, "result", intent_id=intent_id, detail=f"not sent: {error}")
                )
                self.me.write(
                    self._error(text, call.request_id, 503, "key_store_unavailable", str(error))
                )
                return None
            signed = Signed(text_out, masked_frame(text_out))
        if call.request_id is None:  # nothing to match an answer by (OKX subscriptions)
            gateway.write_later(
                row(job, "result", intent_id=intent_id, detail="websocket frame sent")
            )
        else:
            self.pending[key] = Pending(job, intent_id, now)
        return signed

    def _sign_here(self, call: WsCall, now: int) -> Signed | None:
        """``call`` signed with a key this process holds; None for a remote one."""
        if isinstance(self.credential.secret, RemoteKey):
            return None
        text = self.support.sign_call(call, self.credential, now)
        return Signed(text, masked_frame(text))

    async def _signed(self, work: Callable[[Credential], str]) -> str:
        """``work`` run with the credential, its key wherever it lives (OpenBao: two passes)."""
        if not isinstance(self.credential.secret, RemoteKey):
            return work(self.credential)
        remote = self.gateway.remote_keys or RemoteKeys.absent(self.gateway.alert)
        return await remote.run(self.profile.name, self.credential, work)

    def _result(self, pending: Pending, text: str, received_ms: int) -> None:
        """The answer's result row, written with the next commit (``Gateway.write_later``)."""
        read = self.support.answer_status or _status_of
        status, code = read(text)
        latency = received_ms - pending.sent_ms
        self.gateway.write_later(
            row(
                pending.job,
                "result",
                intent_id=pending.intent_id,
                status=status,
                venue_code=code,
                latency_ms=latency,
            )
        )

    async def _lost(self) -> int:
        """Result rows for requests that never got an answer; how many there were."""
        self._match_answers()  # the answers read before the end are not lost
        lost = list(self.pending.values())
        self.pending.clear()
        for pending in lost:
            await self.gateway.audit.append(
                row(
                    pending.job,
                    "result",
                    intent_id=pending.intent_id,
                    detail="websocket closed before an answer; not resent",
                )
            )
        return len(lost)

    def _error(self, text: str, request_id: object, status: int, code: str, message: str) -> str:
        """The exchange-shaped refusal of the bot's frame ``text``."""
        if self.support.refusal is not None:
            return self.support.refusal(text, request_id, status, code, message)
        return self.support.error_frame(request_id, status, code, message)

    async def _refuse(
        self,
        text: str,
        request_id: object,
        status: int,
        code: str,
        detail: str,
        *,
        method: str,
    ) -> None:
        await self.gateway.audit.append(
            AuditRow(
                "denied",
                bot=self.bot.bot,
                credential=self.credential.name,
                exchange=self.credential.exchange,
                environment=self.credential.environment,
                method=method,
                path="/ws-api",
                decision="deny",
                rule=code,
                detail=detail,
            )
        )
        self.me.write(self._error(text, request_id, status, code, detail))


def same_key(now: Credential, then: Credential) -> bool:
    """Whether ``now`` (the vault's credential for this frame) signs as ``then`` (the one
    a WebSocket API session opened with): the same api key, key type, environment, base
    URL (``Credential``'s equality), and the same secret and passphrase, or remote key."""
    if now is then:
        return True
    if now != then:
        return False
    new, old = now.secret, then.secret
    if isinstance(new, RemoteKey) or isinstance(old, RemoteKey):
        return (
            isinstance(new, RemoteKey)
            and isinstance(old, RemoteKey)
            and (new.store, new.key_name) == (old.store, old.key_name)
        )
    return new == old and now.passphrase == then.passphrase


def judged_call(call: WsCall, judged: httpx.Request) -> WsCall:
    """The call to sign, rebuilt from the request the pipeline judged: what is sent is what
    was judged, with the client order id the gateway may have added, in the query
    (Binance's params) or the body (OKX, Bybit)."""
    twin = RestTwin.of(judged)
    return WsCall(call.request_id, call.method, query_params(twin.query), twin, call.frame)


def query_params(query: str) -> dict[str, str]:
    """``dict(parse_qsl(query, keep_blank_values=True))``; a query with nothing escaped
    (no "%", no "+": a plain order's) is split here, without parse_qsl's per-field
    unquoting, which was most of the ~30 us of rebuilding a signed call."""
    if "%" in query or "+" in query:
        return dict(parse_qsl(query, keep_blank_values=True))
    params: dict[str, str] = {}
    for field_ in query.split("&"):
        if field_:
            name, _, value = field_.partition("=")
            params[name] = value
    return params


def id_key(request_id: object) -> object:
    """The key a request's answer is matched by: equal for equal JSON ids, and only then.

    A text or an integer id (what bots send) is its own key, tagged with its type so
    that 1 and "1" stay apart; anything else (a float, true, an object) is keyed by
    its canonical JSON, as every id was before: ``json.dumps`` with keyword arguments
    builds an encoder per call, twice per order.
    """
    kind = type(request_id)
    if kind is str or kind is int:
        return (kind is int, request_id)
    return json.dumps(request_id, sort_keys=True, default=str)


def _refusal_of(response: Response) -> tuple[int, str, str]:
    """(status, error code, message) of the pipeline's own refusal, for an error frame."""
    code = response.headers.get("x-keybroker-error", "refused")
    try:
        body = json.loads(bytes(response.body))
    except ValueError:
        body = {}
    rule = body.get("rule") if isinstance(body, dict) else None
    detail = body.get("detail", "") if isinstance(body, dict) else ""
    label = f"{code} ({rule})" if rule else code
    return response.status_code, code, f"keybroker {label}: {detail}"


def _status_of(text: str) -> tuple[int | None, str | None]:
    try:
        frame = json.loads(text)
    except ValueError:
        return None, None
    status = frame.get("status") if isinstance(frame, dict) else None
    error = frame.get("error") if isinstance(frame, dict) else None
    code = str(error.get("code")) if isinstance(error, dict) and "code" in error else None
    return (status if isinstance(status, int) else None), code
