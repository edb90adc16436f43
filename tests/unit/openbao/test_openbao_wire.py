"""openbao.wire against real HTTP servers on 127.0.0.1 that answer as scripted.

Each server is an asyncio TCP server; ``answers`` are the raw bytes it sends
for each request it reads, in order, per connection or across them. That is
how the shapes OpenBao (Go's net/http) can answer with are reproduced
exactly: Content-Length, chunked, ``Connection: close``, an idle connection
closed, an answer cut short, nothing at all.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from keybroker.errors import KeyStoreUnavailable
from keybroker.openbao.client import AsyncOpenBao
from keybroker.openbao.wire import Wire
from keybroker.secret import Secret
from redis_server import make_tls_files

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """A loopback server; counts connections and keeps every request it read."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def ok(body: dict[str, Any], *, close: bool = False) -> bytes:
    data = json.dumps(body).encode()
    extra = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(data)
        + data
    )


def chunked(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    half = len(data) // 2
    chunks = b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in (data[:half], data[half:])
    )
    return (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\nX-Trailer: 1\r\n\r\n"
    )


async def serve(handler: Handler) -> tuple[asyncio.Server, Server, str]:
    state = Server()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await handler(reader, writer, state)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, state, f"http://127.0.0.1:{port}"


def answering(*answers: bytes, close_after: int | None = None) -> Handler:
    """Answer requests with ``answers`` in turn (shared across connections)."""
    queue = list(answers)

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server
    ) -> None:
        served = 0
        while queue and await state.read_request(reader) is not None:
            writer.write(queue.pop(0))
            await writer.drain()
            served += 1
            if close_after is not None and served >= close_after:
                return

    return handler


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def test_connections_are_kept_alive_and_reused() -> None:
    async def main() -> None:
        server, state, addr = await serve(answering(*(ok({"n": i}) for i in range(5))))
        wire = Wire(addr, ca_cert=None, timeout_s=5)
        try:
            for i in range(5):
                status, body = await wire.post("/v1/transit/hmac/k/sha2-256", b"{}", {})
                assert status == 200 and json.loads(body) == {"n": i}
        finally:
            await wire.aclose()
            server.close()
        assert state.connections == 1 and wire.connections_opened == 1
        first = state.requests[0]
        assert first.startswith(b"POST /v1/transit/hmac/k/sha2-256 HTTP/1.1\r\n")
        assert b"\r\nContent-Length: 2\r\n" in first and first.endswith(b"\r\n\r\n{}")

    run(main())


def test_a_chunked_answer_is_put_back_together() -> None:
    big = {"data": {"batch_results": [{"hmac": "vault:v1:" + "A" * 40}] * 50}}

    async def main() -> None:
        server, _, addr = await serve(answering(chunked(big), ok({"after": True})))
        wire = Wire(addr, ca_cert=None, timeout_s=5)
        try:
            status, body = await wire.post("/v1/x", b"{}", {})
            assert status == 200 and json.loads(body) == big
            # The connection is still in step: the next answer is read whole.
            assert json.loads((await wire.post("/v1/x", b"{}", {}))[1]) == {"after": True}
        finally:
            await wire.aclose()
            server.close()
        assert wire.connections_opened == 1

    run(main())


def test_connection_close_is_honoured() -> None:
    async def main() -> None:
        server, state, addr = await serve(answering(ok({}, close=True), ok({}, close=True)))
        wire = Wire(addr, ca_cert=None, timeout_s=5)
        try:
            await wire.post("/v1/x", b"{}", {})
            await wire.post("/v1/x", b"{}", {})
        finally:
            await wire.aclose()
            server.close()
        assert state.connections == 2 and wire.connections_opened == 2

    run(main())


@pytest.mark.parametrize("noticed", [True, False], ids=["close-seen", "close-unseen"])
def test_a_kept_connection_the_server_closed_is_replaced_and_the_call_sent_once(
    noticed: bool,
) -> None:
    async def main() -> None:
        # The server answers one request per connection, then closes it quietly
        # (as OpenBao does with an idle one): the next call finds it dead.
        server, state, addr = await serve(answering(ok({"n": 1}), ok({"n": 2}), close_after=1))
        wire = Wire(addr, ca_cert=None, timeout_s=5)
        try:
            await wire.post("/v1/x", b"{}", {})
            if noticed:
                await asyncio.sleep(0.05)  # the close arrives before the next call
            # else: the next call may write onto the closed connection and read its end
            status, body = await wire.post("/v1/x", b'{"second":1}', {})
        finally:
            await wire.aclose()
            server.close()
        assert status == 200 and json.loads(body) == {"n": 2}
        assert state.connections == 2
        assert [request.endswith(b'{"second":1}') for request in state.requests] == [False, True]

    run(main())


def test_an_answer_cut_short_on_a_new_connection_is_an_error_not_a_retry() -> None:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server
    ) -> None:
        await state.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()

    async def main() -> None:
        server, state, addr = await serve(handler)
        wire = Wire(addr, ca_cert=None, timeout_s=5)
        try:
            with pytest.raises(ConnectionError):
                await wire.post("/v1/x", b"{}", {})
        finally:
            await wire.aclose()
            server.close()
        assert len(state.requests) == 1  # a signing call that may have been read: not resent

    run(main())


def test_a_server_that_never_answers_times_out() -> None:
    async def silent(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server
    ) -> None:
        await state.read_request(reader)
        await asyncio.sleep(30)

    async def main() -> None:
        server, _, addr = await serve(silent)
        wire = Wire(addr, ca_cert=None, timeout_s=0.3)
        try:
            with pytest.raises(TimeoutError):
                await wire.post("/v1/x", b"{}", {})
        finally:
            await wire.aclose()
            server.close()

    run(main())


def test_an_answer_that_is_not_http_is_refused() -> None:
    async def main() -> None:
        server, _, addr = await serve(answering(b"SSH-2.0-OpenSSH\r\n\r\n"))
        wire = Wire(addr, ca_cert=None, timeout_s=5)
        try:
            with pytest.raises(ValueError, match="not HTTP"):
                await wire.post("/v1/x", b"{}", {})
        finally:
            await wire.aclose()
            server.close()

    run(main())


def test_a_header_value_cannot_add_a_line() -> None:
    async def main() -> None:
        wire = Wire("http://127.0.0.1:9", ca_cert=None, timeout_s=5)
        with pytest.raises(ValueError, match="line break"):
            await wire.post("/v1/x", b"{}", {"X-Vault-Token": "t\r\nX-Evil: 1"})

    run(main())


def test_the_client_maps_failures_to_key_store_errors_without_the_token() -> None:
    token = Secret("hvs.fake-token-not-real")

    async def main() -> None:
        server, _, addr = await serve(answering(b"garbage\r\n\r\n"))
        port = server.sockets[0].getsockname()[1]
        client = AsyncOpenBao(addr, timeout_s=2)
        try:
            with pytest.raises(KeyStoreUnavailable, match="no usable answer") as garbled:
                await client.write("transit/hmac/k/sha2-256", {"input": "eA=="}, token)
        finally:
            await client.aclose()
            server.close()
        await server.wait_closed()
        closed = AsyncOpenBao(f"http://127.0.0.1:{port}", timeout_s=2)
        try:
            with pytest.raises(KeyStoreUnavailable, match="could not be reached") as refused:
                await closed.write("transit/hmac/k/sha2-256", {"input": "eA=="}, token)
        finally:
            await closed.aclose()
        for error in (garbled.value, refused.value):
            assert "fake-token" not in str(error) and "eA==" not in str(error)

    run(main())


def test_https_verifies_the_server_against_the_given_ca(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)

    async def main() -> None:
        state = Server()
        handler = answering(ok({"tls": True}), ok({"tls": True}))

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                await handler(reader, writer, state)
            except (ssl.SSLError, ConnectionError):
                pass  # the client that does not trust us hangs up mid-handshake
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=context)
        addr = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        trusting = Wire(addr, ca_cert=files.ca, timeout_s=5)
        stranger = Wire(addr, ca_cert=None, timeout_s=5)  # the system's CAs only
        try:
            for _ in range(2):
                status, body = await trusting.post("/v1/x", b"{}", {})
                assert status == 200 and json.loads(body) == {"tls": True}
            assert trusting.connections_opened == 1
            with pytest.raises(ssl.SSLCertVerificationError):
                await stranger.post("/v1/x", b"{}", {})
        finally:
            await trusting.aclose()
            await stranger.aclose()
            server.close()

    run(main())
