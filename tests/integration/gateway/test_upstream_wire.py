"""What the gateway's upstream client puts on the wire, and how it fails, against real sockets.

Each test runs ``Upstream`` (aiohttp underneath) against a small server on
127.0.0.1 that records the bytes it received: the request goes out exactly
as built and signed (raw path and query, headers, body; nothing added),
redirects are returned rather than followed, an unverifiable certificate is
refused before any byte of the request leaves, the pool is bounded, and each
kind of failure says whether the exchange may have received the request.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keybroker.gateway.upstream import Failure, Received, Upstream

Answer = Callable[[bytes], bytes | None]  # request head -> raw response (None: close, no answer)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class WireServer:
    """Accepts connections on loopback, keeps every request's head and body as received."""

    answer: Answer
    tls: ssl.SSLContext | None = None
    delay_s: float = 0.0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    accepted: int = 0
    open_now: int = 0
    most_open: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                with self._lock:
                    self.heads.append(head)
                    self.bodies.append(body)
                if self.delay_s:
                    time.sleep(self.delay_s)
                response = self.answer(head)
                if response is None:
                    return
                conn.sendall(response)
        except OSError:
            return
        finally:
            with self._lock:
                self.open_now -= 1
            conn.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., WireServer]]:
    servers: list[WireServer] = []

    def start(answer: Answer = lambda _head: OK, **options: object) -> WireServer:
        server = WireServer(answer, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def exchange(
    *requests: httpx.Request, timeout_s: float = 5.0, max_connections: int = 200
) -> list[Received | Failure]:
    async def run() -> list[Received | Failure]:
        upstream = Upstream(
            timeout_s=timeout_s, retries=0, backoff_s=0.0, max_connections=max_connections
        )
        try:
            return list(await asyncio.gather(*(upstream.send_once(r) for r in requests)))
        finally:
            await upstream.aclose()

    return asyncio.run(run())


def test_the_request_goes_out_exactly_as_built(serve: Callable[..., WireServer]) -> None:
    server = serve()
    path = "/api/v3/order?symbol=BTC%2fUSDT&a=%C3%A9&x=1&x=2&blank="
    request = httpx.Request(
        "POST",
        server.url + path,
        headers=[
            ("X-MBX-APIKEY", "fake-key-not-real"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
        ],
        content=b"quantity=0.001&price=50000",
    )
    (outcome,) = exchange(request)
    assert isinstance(outcome, Received) and outcome.status == 200
    (head,) = server.heads
    request_line, *lines = head.decode("latin-1").split("\r\n")
    assert request_line == f"POST {path} HTTP/1.1"
    names = [line.split(":", 1)[0].lower() for line in lines]
    values = [line.split(":", 1)[1].strip() for line in lines]
    # The built request's own headers, and framing; no User-Agent, Accept, Accept-Encoding
    # or Content-Type of the client's own.
    assert sorted(names) == sorted(
        ["host", "x-mbx-apikey", "x-repeated", "x-repeated", "content-length"]
    )
    assert [v for n, v in zip(names, values, strict=True) if n == "x-repeated"] == ["one", "two"]
    assert server.bodies == [b"quantity=0.001&price=50000"]


def test_a_get_without_a_body_carries_no_body_headers(serve: Callable[..., WireServer]) -> None:
    server = serve()
    exchange(httpx.Request("GET", server.url + "/api/v3/time"))
    (head,) = server.heads
    lines = head.decode("latin-1").lower().split("\r\n")
    assert lines[0] == "get /api/v3/time http/1.1"
    assert [line.split(":")[0] for line in lines[1:]] == ["host"]


def test_a_redirect_is_answered_not_followed(serve: Callable[..., WireServer]) -> None:
    redirect = (
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\n"
        b"Set-Cookie: session=fake\r\nContent-Length: 0\r\n\r\n"
    )
    server = serve(lambda _head: redirect)
    (outcome,) = exchange(httpx.Request("POST", server.url + "/api/v3/order", content=b"a=1"))
    assert isinstance(outcome, Received) and outcome.status == 307
    assert outcome.header("location") == "/elsewhere"
    assert len(server.heads) == 1  # /elsewhere was never asked for


def test_no_cookie_is_kept_between_requests(serve: Callable[..., WireServer]) -> None:
    with_cookie = b"HTTP/1.1 200 OK\r\nSet-Cookie: session=fake\r\nContent-Length: 0\r\n\r\n"
    server = serve(lambda _head: with_cookie)

    async def twice() -> None:
        upstream = Upstream(timeout_s=5, retries=0, backoff_s=0)
        try:
            for _ in range(2):
                await upstream.send_once(httpx.Request("GET", server.url + "/api/v3/time"))
        finally:
            await upstream.aclose()

    asyncio.run(twice())
    assert len(server.heads) == 2
    assert b"cookie" not in server.heads[1].lower()


def test_an_unverifiable_certificate_is_refused_before_anything_is_sent(
    serve: Callable[..., WireServer], tmp_path: Path
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*_self_signed(tmp_path))
    server = serve(tls=context)
    (outcome,) = exchange(httpx.Request("POST", server.url + "/api/v3/order", content=b"a=1"))
    assert isinstance(outcome, Failure)
    assert not outcome.may_have_arrived
    assert outcome.reason == "the exchange refused the connection or could not be reached"
    assert server.accepted == 1 and server.heads == []


def test_hop_by_hop_headers_are_dropped_and_the_body_kept_as_sent(
    serve: Callable[..., WireServer],
) -> None:
    packed = gzip.compress(b'{"price":"60000.00"}')
    answer = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
        b"X-MBX-USED-WEIGHT-1M: 7\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(packed):x}\r\n".encode()
        + packed
        + b"\r\n0\r\n\r\n"
    )
    server = serve(lambda _head: answer)
    (outcome,) = exchange(httpx.Request("GET", server.url + "/api/v3/ticker/price"))
    assert isinstance(outcome, Received)
    names = {name for name, _ in outcome.headers}
    assert names == {"x-mbx-used-weight-1m", "content-encoding"}
    assert outcome.raw == packed  # compressed as it came; the bot asked for it
    assert outcome.content() == b'{"price":"60000.00"}'


def test_a_refused_connection_did_not_reach_the_exchange() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (outcome,) = exchange(httpx.Request("POST", f"http://127.0.0.1:{port}/api/v3/order"))
    assert isinstance(outcome, Failure) and not outcome.may_have_arrived


def test_a_dropped_connection_may_have_reached_it(serve: Callable[..., WireServer]) -> None:
    server = serve(lambda _head: None)  # reads the order, closes without a word
    (outcome,) = exchange(httpx.Request("POST", server.url + "/api/v3/order", content=b"a=1"))
    assert isinstance(outcome, Failure) and outcome.may_have_arrived
    assert len(server.heads) == 1


def test_no_answer_in_time_may_have_reached_it(serve: Callable[..., WireServer]) -> None:
    server = serve(delay_s=2.0)
    (outcome,) = exchange(
        httpx.Request("POST", server.url + "/api/v3/order", content=b"a=1"), timeout_s=0.5
    )
    assert isinstance(outcome, Failure) and outcome.may_have_arrived
    assert outcome.reason == "the exchange did not answer in time"


def test_the_pool_is_bounded(serve: Callable[..., WireServer]) -> None:
    server = serve(delay_s=0.2)
    requests = [httpx.Request("GET", server.url + f"/api/v3/time?n={n}") for n in range(6)]
    outcomes = exchange(*requests, max_connections=2)
    assert all(isinstance(o, Received) and o.status == 200 for o in outcomes)
    assert server.most_open <= 2 and len(server.heads) == 6


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
