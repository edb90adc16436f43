"""Link.start: the command is on the wire when it returns, and an answer already in the
socket is read without a turn of the event loop.

Why it matters: an order's admission is started just before its intent row's
commit, which holds the event loop for an fsync. The admission overlaps the
commit only if it left before it, and once the commit is done the order
should not wait for the loop to come round to read an answer long there. A
real redis-server, on uvloop (the gateway's loop) and on asyncio's own; the
loop is held with a blocking wait on another, synchronous client, as a
commit holds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from redis.asyncio import Redis

from keybroker.ratelimit.redis_link import Link
from redis_server import RedisServer

LOOPS: dict[str, Callable[[Awaitable[Any]], Any]] = {
    "uvloop": uvloop.run,
    "asyncio": asyncio.run,
}


def counter_seen(server: RedisServer, value: int, within_s: float) -> bool:
    """Whether another client sees ``n`` reach ``value``, blocking the caller meanwhile."""
    deadline = time.monotonic() + within_s
    with server.client() as other:
        while time.monotonic() < deadline:
            if int(other.get("n") or 0) >= value:
                return True
            time.sleep(0.002)
    return False


@pytest.mark.parametrize("loop", LOOPS)
def test_a_started_command_reaches_the_store_while_the_loop_is_held(
    redis_clean: RedisServer, loop: str
) -> None:
    async def scenario() -> tuple[bool, object, bool]:
        client = Redis.from_url(redis_clean.url)
        link = Link.of(client)
        assert link is not None
        await link.call("PING")  # connected
        turned = asyncio.Event()
        pending = link.start("INCR", "n")
        asyncio.get_running_loop().call_soon(turned.set)  # runs only if the loop turns
        arrived = counter_seen(redis_clean, 1, within_s=2.0)  # the loop is held here
        time.sleep(0.05)  # the answer is back in the socket by now
        answer = await pending
        read_at_once = not turned.is_set()
        await link.close()
        await client.aclose()
        return arrived, answer, read_at_once

    arrived, answer, read_at_once = LOOPS[loop](scenario())
    assert arrived  # on the wire before the loop turned
    assert answer == 1
    assert read_at_once  # the answer was read without a turn of the loop


@pytest.mark.parametrize("loop", LOOPS)
def test_commands_started_together_are_answered_in_order_even_when_read_at_once(
    redis_clean: RedisServer, loop: str
) -> None:
    async def scenario() -> list[object]:
        client = Redis.from_url(redis_clean.url)
        link = Link.of(client)
        assert link is not None
        await link.call("PING")
        first, second = link.start("INCR", "n"), link.start("INCR", "n")
        counter_seen(redis_clean, 2, within_s=2.0)
        time.sleep(0.05)
        answers = [await second, await first]  # the later one awaited first
        await link.close()
        await client.aclose()
        return answers

    assert LOOPS[loop](scenario()) == [2, 1]


@pytest.mark.parametrize("loop", LOOPS)
def test_a_command_started_before_the_link_connected_is_sent_when_awaited(
    redis_clean: RedisServer, loop: str
) -> None:
    async def scenario() -> object:
        client = Redis.from_url(redis_clean.url)
        link = Link.of(client)
        assert link is not None
        answer = await link.start("INCR", "n")  # connects (and logs in) first
        await link.close()
        await client.aclose()
        return answer

    assert LOOPS[loop](scenario()) == 1
