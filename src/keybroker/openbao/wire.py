"""HTTP/1.1 POSTs to OpenBao on asyncio streams, over kept-alive connections.

    >>> wire = Wire("http://127.0.0.1:8200", ca_cert=None, timeout_s=5)
    >>> status, body = await wire.post("/v1/transit/hmac/k/sha2-256", b'{"input":"..."}', headers)
    >>> await wire.aclose()

Why not httpx here: a transit HMAC is a small JSON POST answered in well
under a millisecond, and on this project's 2-core machine httpx's async
stack (httpcore, anyio, its models) took about 2 ms around each one, which
is the whole latency budget of signing in OpenBao (issue #10, point 5). The
gateway's calls to OpenBao are all one shape, a POST with a JSON body whose
answer has a ``Content-Length`` or is chunked, so this speaks exactly that
much HTTP/1.1 and nothing more (no redirects, no proxies, no cookies).
aiohttp (the gateway's client for the exchanges) was tried in its place:
0.3 ms slower per call from a bare loop, and about 1 ms more added to an
order through the gateway (``bench/bench_openbao.py``, same load, A/B).

Connections are kept alive and reused, newest first, up to
``max_connections`` at a time. A kept connection the server has closed
meanwhile (OpenBao drops idle ones after ``http_idle_timeout``) fails before
a single byte of answer; that one call is sent once more on a new connection.
Every other failure is raised to the caller as ``OSError`` (``TimeoutError``
for the deadline, ``ConnectionError`` for a closed peer) or ``ValueError``
for an answer that is not HTTP; ``client.AsyncOpenBao`` turns them into
``KeyStoreUnavailable``/``KeyStoreError``. Nothing of a request or an answer
goes into an error message: they carry tokens and signatures.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
# Answers that never have a body (RFC 9110 §6.4.1).
_NO_BODY = frozenset({204, 304})


class _Connection:
    """One TCP (or TLS) connection; ``answered`` says whether any byte of an answer came."""

    __slots__ = ("answered", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.answered = False

    def close(self) -> None:
        self.writer.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send ``request``, read one answer: (status, body, whether the connection stays open)."""
        self.answered = False
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.answered = True
        status, length, chunked, keep = _parse_head(head)
        if status in _NO_BODY or 100 <= status < 200:
            return status, b"", keep
        if chunked:
            return status, await self._read_chunks(), keep
        if length is not None:
            return status, await self.reader.readexactly(length), keep
        # Neither: the body runs to the end of the connection (HTTP/1.0 style).
        parts: list[bytes] = []
        total = 0
        while part := await self.reader.read(65536):
            total += len(part)
            if total > MAX_BODY_BYTES:
                raise ValueError("OpenBao's answer is too large")
            parts.append(part)
        return status, b"".join(parts), False

    async def _read_chunks(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await self.reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("OpenBao's chunked answer is malformed") from None
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers: none expected, none kept
                return b"".join(parts)
            total += size
            if size < 0 or total > MAX_BODY_BYTES:
                raise ValueError("OpenBao's answer is too large")
            parts.append(await self.reader.readexactly(size))
            if await self.reader.readexactly(2) != b"\r\n":
                raise ValueError("OpenBao's chunked answer is malformed")


def _parse_head(head: bytes) -> tuple[int, int | None, bool, bool]:
    """(status, content length, chunked, keep-alive) from a status line and headers."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError("OpenBao's answer is not HTTP/1.x")
    status = int(parts[1])
    keep = parts[0] == b"HTTP/1.1"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                raise ValueError("OpenBao's answer has a bad or too large Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = value.lower().endswith(b"chunked")
        elif name == b"connection":
            tokens = {token.strip() for token in value.lower().split(b",")}
            if b"close" in tokens:
                keep = False
            elif b"keep-alive" in tokens:
                keep = True
    return status, length, chunked, keep


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
        self._tls = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if url.port is None else f"{host}:{url.port}"
        self._ca_cert = ca_cert
        self._ssl: ssl.SSLContext | None = None
        self.timeout_s = timeout_s
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False
        self.connections_opened = 0
        """New connections made so far (tests read it to see connections being reused)."""

    def __repr__(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"Wire({scheme}://{self._host_header}, idle={len(self._idle)})"

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``: (status, answer); OSError/ValueError on failure."""
        request = self._request(path, body, headers)
        async with asyncio.timeout(self.timeout_s), self._slots:
            while True:
                connection = self._kept()
                reused = connection is not None
                if connection is None:
                    connection = await self._open()
                try:
                    status, answer, keep = await connection.exchange(request)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    connection.close()
                    if reused and not connection.answered:
                        continue  # a kept connection the server had closed: once more, anew
                    if isinstance(exc, OSError):
                        raise
                    raise ConnectionError("OpenBao closed the connection mid-answer") from None
                except BaseException:  # deadline, cancel, a malformed answer: state unknown
                    connection.close()
                    raise
                if keep and not self._closed:
                    self._idle.append(connection)
                else:
                    connection.close()
                return status, answer

    def _kept(self) -> _Connection | None:
        """The newest kept connection not already closed by the server, if any."""
        while self._idle:
            connection = self._idle.pop()
            if not connection.reader.at_eof():
                return connection
            connection.close()
        return None

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [
            f"POST {path} HTTP/1.1",
            f"Host: {self._host_header}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {_header_value(value)}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _open(self) -> _Connection:
        if self._closed:
            raise ConnectionError("the connection pool to OpenBao is closed")
        context: ssl.SSLContext | None = None
        if self._tls:
            if self._ssl is None:
                cafile = None if self._ca_cert is None else str(self._ca_cert)
                self._ssl = ssl.create_default_context(cafile=cafile)
            context = self._ssl
        reader, writer = await asyncio.open_connection(
            self._host,
            self._port,
            ssl=context,
            server_hostname=self._host if context is not None else None,
            limit=MAX_HEAD_BYTES,
        )
        self.connections_opened += 1
        return _Connection(reader, writer)
