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
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

WRITE_TEXT = "keybroker.websocket.write_text"
"""The scope extension holding a connection's ``write_text(text) -> bool``."""


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, offering ``write_text`` in the scope."""

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
