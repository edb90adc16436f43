"""async_run.run_closed on real loopback servers: a TLS close the server answers late is
waited for, and a connection the scenario leaves open fails the test and is closed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_run import run_closed
from redis_server import TlsFiles, make_tls_files


@contextlib.contextmanager
def tls_server_answering_late(tls: TlsFiles, delay_s: float) -> Iterator[int]:
    """One TLS connection: read until the client's close_notify, wait ``delay_s``, answer it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                while tls_conn.recv(1024):
                    pass
                time.sleep(delay_s)  # the close_notify answer comes after the scenario returned
                tls_conn.unwrap()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(timeout=10)
        listener.close()


def test_a_tls_close_the_server_answers_late_is_finished_before_the_loop_stops(
    tmp_path: Path,
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    client = ssl.create_default_context(cafile=str(tls.ca))

    with tls_server_answering_late(tls, delay_s=0.3) as port:

        async def scenario() -> Any:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(b"PING\r\n")
            await writer.drain()
            writer.close()  # as redis-py drops a connection on an error: no wait_closed()
            return writer.transport.get_extra_info("socket")

        sock = run_closed(scenario)
    # asyncio.run would have closed the loop with this socket still open (the server
    # had not answered yet), for garbage collection to report in some later test.
    assert sock.fileno() == -1


def test_a_connection_left_open_fails_the_test_and_is_closed() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[Any] = []

    async def leaky() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        seen.append(transport.get_extra_info("socket"))  # the transport is never closed

    try:
        with pytest.raises(AssertionError, match=r"connections still open 0\.2 s after"):
            run_closed(leaky, within_s=0.2)
        assert seen[0].fileno() == -1  # aborted: nothing left for a later test's GC
    finally:
        listener.close()


def test_a_socket_connected_by_hand_and_left_open_fails_the_test_and_is_closed() -> None:
    # redis_link drives its own socket over plain TCP (sock_connect, no transport).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[socket.socket] = []

    async def leaky() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        seen.append(sock)  # never closed

    try:
        with pytest.raises(AssertionError, match=r"connections still open 0\.2 s after"):
            run_closed(leaky, within_s=0.2)
        assert seen[0].fileno() == -1
    finally:
        listener.close()


def test_the_scenario_answer_and_its_tasks() -> None:
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario() -> str:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)
        return "answer"

    assert run_closed(scenario) == "answer"
    assert cancelled == [True]  # a task the scenario left is cancelled, as asyncio.run does
