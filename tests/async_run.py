"""``asyncio.run`` for tests that open connections: the loop stops once their sockets are closed.

    >>> answer = run_closed(scenario)      # like asyncio.run(scenario())

Why: a TLS connection closes in steps (our close_notify out, the peer's
answer back, then the TCP close), and redis-py drops a connection on an
error such as a wrong password or a timeout without waiting for them
(``disconnect(nowait=True)``). ``asyncio.run`` closes its loop a few
iterations after the scenario returns; when the server had not answered
by then, the TCP transport under the TLS layer stayed open on a closed
loop. Garbage collection found it later, in whichever test happened to
be running, and failed that test with ``ResourceWarning: unclosed
<socket.socket ...>`` (warnings are errors here; about one full run in
six failed in ``test_redis_link.py`` that way).

So, after the scenario, the tasks it left are cancelled (as asyncio.run
does) and the loop keeps running until every connection it opened has
closed its socket. A connection still open after ``within_s`` is a leak
of the code under test: it is aborted (so nothing is left for garbage
collection to report in another test) and the test fails here, naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLOSE_WITHIN_S = 10.0
"""Generous: on a loaded machine a TLS close takes milliseconds, not seconds."""


class ClosingLoop(asyncio.SelectorEventLoop):
    """A selector loop that remembers every connection it opened: ``create_connection``'s,
    and sockets connected with ``sock_connect`` (``redis_link``'s own, over plain TCP)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[asyncio.BaseTransport | None, Any]] = []
        """(transport or None, its socket), whose fileno() is -1 once closed."""

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, protocol = await super().create_connection(*args, **kwargs)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.opened.append((transport, sock))
        return transport, protocol

    async def sock_connect(self, sock: Any, address: Any) -> None:
        self.opened.append((None, sock))
        await super().sock_connect(sock, address)

    def still_open(self) -> list[tuple[asyncio.BaseTransport | None, Any]]:
        return [(transport, sock) for transport, sock in self.opened if sock.fileno() != -1]


async def _closed_after(make: Callable[[], Awaitable[T]], within_s: float) -> T:
    try:
        return await make()
    finally:
        await _settle(within_s)


async def _settle(within_s: float) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ClosingLoop)
    me = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not me]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)
    deadline = loop.time() + within_s
    while (left := loop.still_open()) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    if not left:
        return
    names = [repr(sock) for _, sock in left]
    for transport, sock in left:
        if transport is not None:
            transport.abort()
        else:
            sock.close()
    while loop.still_open() and loop.time() < deadline + 5:
        await asyncio.sleep(0.01)
    raise AssertionError(f"connections still open {within_s} s after the scenario: {names}")


def run_closed(make: Callable[[], Awaitable[T]], *, within_s: float = CLOSE_WITHIN_S) -> T:
    """``asyncio.run(make())``, but the loop stops only once its connections are closed."""
    with asyncio.Runner(loop_factory=ClosingLoop) as runner:
        return runner.run(_closed_after(make, within_s))
