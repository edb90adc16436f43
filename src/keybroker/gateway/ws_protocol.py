"""uvicorn's sans-I/O WebSocket server with one addition: a text frame written at once.

    >>> write = websocket.scope["extensions"].get(WRITE_TEXT)   # None under another server
    >>> write is not None and write('{"e":"trade"}')            # False: use the ASGI send
    True

The market-data relay (``websocket.py``) writes each upstream frame to every bot
that is keeping up, from the upstream connection's own callback. The ASGI send
is a coroutine that goes through Starlette's state checks, the middleware's
wrappers and ``websockets``' frame object before the same ``transport.write``;
on a busy machine, where every wake-up finds the caches cold, that path was a
third of the relay's added latency. ``write_text`` builds the frame header
itself and writes header and payload in one call.

It writes only when the ASGI send would have written at once: the handshake is
done, no close was sent or received, the socket is taking bytes (the transport
has not paused writing) and no extension was negotiated (the gateway turns
permessage-deflate off). Otherwise it returns False and writes nothing, and
the caller uses the ordinary send, which waits for the socket or raises.
Frames written either way leave in the order they were written: both end in
the same transport's ``write``.

The other way, a bot's request frame (an order over the WebSocket API) is cut
out of the bytes here (``_cut``), as ``websocket.Relayed`` does upstream:
``websockets``' generator-based parser took about 65 us of the ~115 us between
a frame's bytes arriving and its message being queued for the app (measured
inside a gateway at 100 orders/s). Only the plain case is cut here: a whole,
masked, unfragmented text frame of at most 64 KiB with no reserved bit, valid
UTF-8, on an open connection; it is queued exactly as uvicorn queues it
(``send_receive_event_to_app``). Any other frame (binary, fragments, ping,
pong, close) goes whole to ``websockets``, at a frame boundary; anything it
must refuse (unmasked, reserved bits, unknown opcode, over the size limit,
broken UTF-8), or a larger frame, hands it the rest of the connection, and it
answers as it always did.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.speedups import apply_mask  # websockets' own C unmasking

WRITE_TEXT = "keybroker.websocket.write_text"
"""The scope extension holding a connection's ``write_text(text) -> bool``."""


_MAX_CUT = 65536
"""Frames cut here are at most this long: a longer one, and what follows, is websockets'."""
_OPCODES = frozenset({0, 1, 2, 8, 9, 10})
"""Continuation, text, binary; close, ping, pong (RFC 6455 section 5.2)."""


def frame_header(buffer: bytes, at: int, end: int) -> tuple[int, int, int, int] | None:
    """RFC 6455's first byte, second byte, payload length and header size (mask key not
    counted) of the frame starting at ``at``; None while its length bytes have not all come."""
    first, second = buffer[at], buffer[at + 1]
    length = second & 0x7F
    if length == 126:
        if end - at < 4:
            return None
        return first, second, int.from_bytes(buffer[at + 2 : at + 4]), 4
    if length == 127:
        if end - at < 10:
            return None
        return first, second, int.from_bytes(buffer[at + 2 : at + 10]), 10
    return first, second, length, 2


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, offering ``write_text`` in the scope, and
    reading plain text frames itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first = True  # the upgrade request is the first data (uvicorn rebuilds it)
        self._armed = False  # the request was read whole: frames may be cut once open
        self._cutting = False
        self._partial = b""  # the start of a frame not complete yet

    def data_received(self, data: bytes) -> None:
        if self._cutting:
            self._cut(self._partial + data if self._partial else data)
            return
        if self._armed:  # the bot's first bytes after the request
            self._armed = False
            conn = self.conn
            if self.handshake_complete and conn.state is State.OPEN and not conn.extensions:
                self._cutting = True
                self._cut(data)
                return
        super().data_received(data)  # websockets reads everything from here on
        if self._first:
            self._first = False
            # Exactly the request, nothing after it: websockets waits at a frame boundary.
            self._armed = data.endswith(b"\r\n\r\n") and getattr(self, "scope", None) is not None

    def _cut(self, buffer: bytes) -> None:
        at, end = 0, len(buffer)
        conn = self.conn
        while end - at >= 2:
            header = frame_header(buffer, at, end)
            if header is None:
                break
            first, second, length, head = header
            opcode = first & 0x0F
            if not second & 0x80 or first & 0x70 or opcode not in _OPCODES or length > _MAX_CUT:
                self._hand_over(buffer[at:])  # websockets refuses it, or reads a long frame
                return
            if end - at < head + 4 + length:
                break
            start, at = at, at + head + 4 + length
            if first == 0x81 and conn.current_size is None and not self.close_sent:
                mask = buffer[start + head : start + head + 4]
                payload = apply_mask(buffer[start + head + 4 : at], mask)
                limits = (conn.max_message_size, conn.max_fragment_size)
                decoded = _utf8(payload) if all(n is None or length <= n for n in limits) else None
                if decoded is not None:
                    self._queue_text(decoded)
                    continue
                self._hand_over(buffer[start:])  # too big or not UTF-8: websockets fails it
                return
            WebSocketsSansIOProtocol.data_received(self, buffer[start:at])  # websockets' own
            if conn.state is not State.OPEN or conn.parser_exc is not None:
                self._hand_over(buffer[at:])  # closing: websockets reads the rest
                return
        self._partial = buffer[at:]

    def _queue_text(self, text: str) -> None:
        """uvicorn's ``send_receive_event_to_app`` for one whole text frame, with the text
        decoded once (the UTF-8 check's own decoding), not checked and then decoded again.
        Reading pauses as uvicorn's does: the app's next read resumes it."""
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _hand_over(self, rest: bytes) -> None:
        """websockets reads everything from ``rest`` on (a frame boundary)."""
        self._cutting, self._partial = False, b""
        if rest:
            WebSocketsSansIOProtocol.data_received(self, rest)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the upgrade was refused
        if scope is not None:
            scope["extensions"][WRITE_TEXT] = self.write_text

    def write_text(self, text: str) -> bool:
        """Write ``text`` as one text frame now; False (nothing written) when the ASGI
        send must do it: the connection is not open, or its socket is full."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        payload = text.encode()
        size = len(payload)
        if size < 126:
            head = bytes((0x81, size))  # FIN + text; a server's frames are not masked
        elif size < 65536:
            head = bytes((0x81, 126)) + size.to_bytes(2)
        else:
            head = bytes((0x81, 127)) + size.to_bytes(8)
        self.transport.write(head + payload)
        return True


def _utf8(payload: bytes) -> str | None:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None
