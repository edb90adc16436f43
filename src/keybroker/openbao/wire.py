"""HTTP/1.1 POSTs to OpenBao over kept-alive connections (aiohttp).

    >>> wire = Wire("http://127.0.0.1:8200", ca_cert=None, timeout_s=5)
    >>> status, body = await wire.post("/v1/transit/hmac/k/sha2-256", b'{"input":"..."}', headers)
    >>> await wire.aclose()

Why not httpx here: a transit HMAC is a small JSON POST answered in well
under a millisecond, and on this project's 2-core machine httpx's async
stack (httpcore, anyio, its models) took about 2 ms around each one, which
is the whole latency budget of signing in OpenBao (issue #10, point 5).
aiohttp, which the gateway already uses for the exchanges, takes a quarter
of that; a hand-written client was faster still by ~0.25 ms a call, but an
HTTP parser of our own on the path to the key store is not worth it.

Connections are kept alive and reused, up to ``max_connections`` at a time.
A kept connection the server has closed meanwhile (OpenBao drops idle ones
after ``http_idle_timeout``) fails before a single byte of answer; that one
call is sent once more on a new connection (a transit HMAC or signature is
safe to ask twice). Every other failure is raised to the caller as
``OSError`` (``TimeoutError`` for the deadline, ``ConnectionError`` for a
closed peer) or ``ValueError`` for an answer that is not HTTP;
``client.AsyncOpenBao`` turns them into ``KeyStoreUnavailable``/``KeyStoreError``.
Nothing of a request or an answer goes into an error message: they carry
tokens and signatures.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp

MAX_BODY_BYTES = 16 * 1024 * 1024


def _header_value(value: str) -> str:
    # A token from a file or an answer must not be able to add a header line.
    if "\r" in value or "\n" in value:
        raise ValueError("a header value holds a line break")
    return value


class Wire:
    """Kept-alive HTTP/1.1 connections to one OpenBao server."""

    def __init__(
        self,
        addr: str,
        *,
        ca_cert: Path | None,
        timeout_s: float,
        max_connections: int = 32,
    ) -> None:
        url = urlsplit(addr)
        if url.scheme not in ("http", "https") or url.hostname is None:
            raise ValueError("an OpenBao address is http(s)://host[:port]")
        self._base = addr.rstrip("/")
        self._shown = f"{url.scheme}://{url.netloc}"
        self._tls = url.scheme == "https"
        self._ca_cert = ca_cert
        self._max_connections = max_connections
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.connections_opened = 0
        """New connections made so far (tests read it to see connections being reused)."""

    def __repr__(self) -> str:
        return f"Wire({self._shown})"

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``: (status, answer); OSError/ValueError on failure."""
        sent = {
            "Content-Type": "application/json",
            **{name: _header_value(value) for name, value in headers.items()},
        }
        session = self._open()
        for attempt in (1, 2):
            trace = SimpleNamespace(reused=False)
            try:
                async with session.post(
                    self._base + path, data=body, headers=sent, trace_request_ctx=trace
                ) as response:
                    length = response.content_length
                    if length is not None and length > MAX_BODY_BYTES:
                        raise ValueError("OpenBao's answer is too large")
                    answer = await response.read()
                    return response.status, answer
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if trace.reused and attempt == 1:
                    continue  # a kept connection the server had closed: once more, anew
                if isinstance(exc, aiohttp.ClientConnectorCertificateError):
                    raise exc.certificate_error from None
                if isinstance(exc, aiohttp.ClientOSError):
                    raise
                raise ConnectionError("OpenBao closed the connection") from None
            except aiohttp.ClientPayloadError:
                raise ConnectionError("OpenBao closed the connection mid-answer") from None
            except aiohttp.ClientResponseError:
                raise ValueError("OpenBao's answer is not HTTP/1.x") from None
            except aiohttp.ClientConnectionError as exc:
                if isinstance(exc, OSError):
                    raise
                raise ConnectionError(type(exc).__name__) from None
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConnectionError("the connection pool to OpenBao is closed")
        if self._session is None:
            context: ssl.SSLContext | bool = False
            if self._tls:
                cafile = None if self._ca_cert is None else str(self._ca_cert)
                context = ssl.create_default_context(cafile=cafile)
            tracing = aiohttp.TraceConfig()
            tracing.on_connection_create_end.append(self._created)
            tracing.on_connection_reuseconn.append(self._reused)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=context),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                trace_configs=[tracing],
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def _created(self, session: object, context: SimpleNamespace, params: object) -> None:
        self.connections_opened += 1

    @staticmethod
    async def _reused(session: object, context: SimpleNamespace, params: object) -> None:
        if context.trace_request_ctx is not None:
            context.trace_request_ctx.reused = True
