"""gateway.state.let_writes_out: a write a task started just before is on the wire after it.

The gateway commits a lone request's intent row on the event loop's own
thread, which holds the loop for the fsync. A round trip started just before
(Redis's admission, OpenBao's signature) overlaps that commit only if its
request left before it. A real loopback TCP server, on uvloop (the gateway's
loop) and on asyncio's own: the server's thread notes when the bytes arrive,
and the test then blocks the loop, as a commit would, before asking.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import uvloop

from keybroker.gateway.state import let_writes_out

LOOPS: dict[str, Callable[[Coroutine[Any, Any, bool]], bool]] = {
    "uvloop": uvloop.run,
    "asyncio": asyncio.run,
}


@pytest.fixture
def server() -> Iterator[tuple[int, threading.Event]]:
    """A loopback server whose event is set once the first bytes arrive."""
    listener = socket.create_server(("127.0.0.1", 0))
    arrived = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            if connection.recv(100):
                arrived.set()
            connection.recv(100)  # until the client closes

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], arrived
    listener.close()
    thread.join(timeout=5)


async def written_before_the_loop_is_held(
    port: int, arrived: threading.Event, wait: Callable[[], Coroutine[Any, Any, None]]
) -> bool:
    _, writer = await asyncio.open_connection("127.0.0.1", port)

    async def ask() -> None:  # stands for the admission: writes its request, awaits the answer
        writer.write(b"EVALSHA ...\r\n")
        await asyncio.sleep(0.2)

    task = asyncio.ensure_future(ask())
    await wait()
    sent = arrived.wait(1.0)  # blocks the loop, as an inline commit does
    await task
    writer.close()
    await writer.wait_closed()
    return sent


@pytest.mark.parametrize("loop", LOOPS)
def test_the_write_of_a_task_started_just_before_is_out(
    server: tuple[int, threading.Event], loop: str
) -> None:
    port, arrived = server
    assert LOOPS[loop](written_before_the_loop_is_held(port, arrived, let_writes_out))


def test_on_uvloop_one_turn_of_the_loop_is_not_enough(server: tuple[int, threading.Event]) -> None:
    # Why let_writes_out turns the loop twice: uvloop sends queued writes after a batch.
    port, arrived = server

    async def one_turn() -> None:
        await asyncio.sleep(0)

    assert not uvloop.run(written_before_the_loop_is_held(port, arrived, one_turn))
