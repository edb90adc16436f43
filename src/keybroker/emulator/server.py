"""Run an emulator app on uvicorn: in the foreground (the CLI) or in a thread (tests).

    >>> base_url, stop = serve_in_thread(create_app("okx", keys))
    >>> httpx.get(base_url + "/api/v5/public/time").json()
    >>> stop()

The socket is bound here, before uvicorn starts, so a busy port is one clear
error and port 0 yields a free port whose URL is known at once. Connections
are tracked so that the app can close one without answering (the
``drop_after_process`` and ``timeout`` faults): uvicorn itself always answers
500 when an app fails to respond, which is not what a dropped connection looks like.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import threading
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from keybroker.emulator.wire import DROP_EXTENSION
from keybroker.errors import InvalidInput

Transports = dict[tuple[str, int], asyncio.Transport]


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port; InvalidInput (one line) if that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: ASGIApp, sock: socket.socket, on_ready: Callable[[str], None]) -> None:
    """Serve on ``sock`` until Ctrl-C; call ``on_ready(base_url)`` once accepting connections."""
    url = base_url(sock)

    class _Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                on_ready(url)

    server = _Announcing(_config(app, quiet=False))
    # uvicorn shuts down gracefully on Ctrl-C, then re-raises it; stopping is the point.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


def serve_in_thread(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], None]]:
    """Start serving in a daemon thread; return (base URL, stop). ``stop`` waits for shutdown."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(app, quiet=True))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="keybroker-emulator"
    )
    thread.start()
    ready = threading.Event()
    while not server.started and thread.is_alive():
        ready.wait(0.01)
    if not server.started:
        sock.close()
        raise RuntimeError("the emulator did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return base_url(sock), stop


# stdout carries only the key line and the base URL, for scripts that read them;
# access logs there would fill a pipe nobody drains and stall the server.
_LOGGING_TO_STDERR = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
_LOGGING_TO_STDERR["handlers"]["access"]["stream"] = "ext://sys.stderr"


def _config(app: ASGIApp, *, quiet: bool) -> uvicorn.Config:
    transports: Transports = {}
    return uvicorn.Config(
        _Droppable(app, transports),
        http=_tracking_protocol(transports),
        ws="websockets-sansio",
        lifespan="off",
        log_level="warning" if quiet else "info",
        log_config=None if quiet else _LOGGING_TO_STDERR,
        access_log=not quiet,
        timeout_graceful_shutdown=1,
    )


def _tracking_protocol(transports: Transports) -> type[H11Protocol]:
    class Tracking(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None:
                transports[self.client] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                transports.pop(self.client, None)
            super().connection_lost(exc)

    return Tracking


class _Droppable:
    """Gives each HTTP request a ``drop()`` that aborts its connection, via a scope extension."""

    def __init__(self, app: ASGIApp, transports: Transports) -> None:
        self.app = app
        self.transports = transports

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client"):
            client = (str(scope["client"][0]), int(scope["client"][1]))

            def drop() -> None:
                transport = self.transports.get(client)
                if transport is not None:
                    transport.abort()

            scope.setdefault("extensions", {})[DROP_EXTENSION] = drop
        await self.app(scope, receive, send)
