"""A tiny exchange stand-in on 127.0.0.1 that records every request it receives.

The emulator speaks only Binance and OKX; for the seven other exchanges a
test needs an upstream that can prove a negative ("nothing was forwarded")
or read what was signed (Kraken's nonces). This server keeps the method,
raw path, headers and body of every request, whatever its verb or path, and
answers a fixed JSON body that every profile's error mapper reads as a
success (Kraken's ``{"error": [], "result": {}}`` shape), or what a test's
``responder`` says: another (status, body), or ``DROP`` to close the
connection without answering, as an exchange does when it resets after it
got (and maybe acted on) an order.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Recorded:
    """One request as it reached the upstream."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        """The body read as a form (Kraken's private calls)."""
        return parse_qs(self.body.decode("utf-8", "replace"))


DROP = "drop"
"""A responder's answer: close the connection after reading the request, sending nothing."""

Reply = tuple[int, bytes] | str | None
Responder = Callable[[Recorded], Reply]


class RecordingServer:
    """A threading HTTP server that records requests; ``url`` is its base URL."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.requests: list[Recorded] = []
        self.responder = responder
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, dict(self.headers.items()), body)
                with recorder._lock:
                    recorder.requests.append(recorded)
                reply = recorder.responder(recorded) if recorder.responder else None
                if reply == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, answer = (200, b'{"error":[],"result":{}}')
                if isinstance(reply, tuple):
                    status, answer = reply
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _record

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the test reads ``requests``

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def received(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)


@contextmanager
def recording_server(responder: Responder | None = None) -> Iterator[RecordingServer]:
    """A started RecordingServer, stopped on exit."""
    server = RecordingServer(responder).start()
    try:
        yield server
    finally:
        server.stop()
