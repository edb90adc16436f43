"""Listening: a TCP socket (TLS when given) and a Unix socket (mode 0600), served by uvicorn.

    >>> tcp, unix = bind_tcp("127.0.0.1", 8787), bind_uds(home / "gateway.sock")
    >>> GatewayServer(make_config(app), [tcp], [unix]).run()   # until SIGINT/SIGTERM
    >>> running = serve_in_thread(app)                         # tests: a free port, a stop()

Sockets are bound here, before uvicorn starts, so a busy port is one clear
error and port 0 gives a free port whose URL is known at once. The Unix socket
is created under umask 0177, so it is never reachable by others, not even
for the moment before a chmod. TLS applies to the TCP listeners only: the
Unix socket is for this user's processes and stays plain.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from keybroker.errors import InvalidInput
from keybroker.gateway.ws_protocol import GatewayWebSocketProtocol


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the gateway on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port; InvalidInput (one line) if that fails."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def bind_uds(path: Path) -> socket.socket:
    """A Unix socket at ``path``, mode 0600 from its creation.

    A stale socket file (no one listening) is replaced; a live one, or any
    other file at the path, is an error rather than something to delete.
    """
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise InvalidInput(f"{path} exists and is not a socket; remove it or choose --uds")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise InvalidInput(f"cannot check {path}: {exc.strerror or exc}") from exc
            path.unlink(missing_ok=True)
        else:
            raise InvalidInput(f"another gateway is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return sock


def url_of(sock: socket.socket, *, tls: bool = False) -> str:
    """``http://127.0.0.1:8787`` (``https`` with TLS) for a bound TCP socket."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def make_config(
    app: ASGIApp,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    quiet: bool = True,
) -> uvicorn.Config:
    """uvicorn settings: our own lifespan, no proxy headers trusted, no access log by default.

    The exchange's own Date and Server headers are passed through, so uvicorn
    adds none of its own.
    """
    return uvicorn.Config(
        app,
        lifespan="on",
        # uvicorn's websockets-sansio, plus a text frame written at once for the relay.
        ws=GatewayWebSocketProtocol,
        # Frames go to bots on this machine or a LAN: deflating each one for each of
        # 45 readers of a shared stream would cost CPU and latency to save nothing.
        ws_per_message_deflate=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level="warning" if quiet else "info",
        log_config=None,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        timeout_graceful_shutdown=3,
    )


class GatewayServer(uvicorn.Server):
    """uvicorn serving TCP sockets (with the config's TLS) and Unix sockets (always plain)."""

    def __init__(
        self,
        config: uvicorn.Config,
        tcp: list[socket.socket],
        unix: list[socket.socket],
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.tcp = tcp
        self.unix = unix
        self.on_ready = on_ready

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        # After a graceful shutdown uvicorn raises the signal that stopped it again,
        # under the handlers it found. SIGTERM's default would end the process
        # there, before the caller's cleanup (the socket file, the vault) ran; as
        # an interrupt it ends this call like Ctrl-C does.
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
        try:
            with contextlib.suppress(KeyboardInterrupt):
                super().run(sockets=self.tcp)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        config = self.config
        loop = asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        for sock in self.unix:
            server = await loop.create_server(create_protocol, sock=sock, backlog=config.backlog)
            self.servers.append(server)
        if self.on_ready is not None:
            self.on_ready()


@dataclass
class Running:
    """A gateway serving in a thread (tests): its URL, its socket path, and ``stop()``."""

    url: str
    uds: Path | None
    stop: Callable[[], None]


def serve_in_thread(app: ASGIApp, *, host: str = "127.0.0.1", uds: Path | None = None) -> Running:
    """Serve ``app`` on a free port (and ``uds``) in a daemon thread until ``stop()``."""
    tcp = bind_tcp(host, 0)
    unix = [bind_uds(uds)] if uds is not None else []
    server = GatewayServer(make_config(app), [tcp], unix)
    thread = threading.Thread(target=server.run, daemon=True, name="keybroker-gateway")
    thread.start()
    ready = threading.Event()
    while not server.started and thread.is_alive():
        ready.wait(0.01)
    if not server.started:
        tcp.close()
        raise RuntimeError("the gateway did not start")

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        tcp.close()
        for sock in unix:
            sock.close()
        if uds is not None:
            uds.unlink(missing_ok=True)

    return Running(url_of(tcp), uds, stop)
