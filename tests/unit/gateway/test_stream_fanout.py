"""The fan-out's promise: a slow bot is cut off with a reason, and never slows the others.

The bots here are connection objects whose send either completes at once or
never does (a bot that stopped reading, once every buffer on the way is full):
that is the one situation the bounded queue exists for, and waiting for real
kernel buffers to fill would make the test slow without testing anything more.
"""

from __future__ import annotations

import asyncio

from keybroker.gateway import websocket as gateway_ws


class Bot:
    def __init__(self, *, stuck: bool) -> None:
        self.stuck = stuck
        self.received: list[str] = []
        self.closed: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # a bot that reads nothing
        self.received.append(text)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def test_a_slow_bot_is_disconnected_with_a_reason_and_the_fast_one_gets_everything() -> None:
    async def scenario() -> tuple[Bot, Bot, gateway_ws.Subscriber]:
        fast, slow = Bot(stuck=False), Bot(stuck=True)
        subscribers = [
            gateway_ws.Subscriber(fast, gateway_ws._raw),  # type: ignore[arg-type]
            gateway_ws.Subscriber(slow, gateway_ws._raw),  # type: ignore[arg-type]
        ]
        writers = [asyncio.create_task(gateway_ws._drain(s)) for s in subscribers]
        for n in range(3 * gateway_ws.QUEUE_LIMIT):
            for subscriber in subscribers:
                subscriber.offer("btcusdt@trade", f'{{"n":{n}}}')
            await asyncio.sleep(0)  # the writers run between messages, as on a live loop
        subscribers[0].end(1000, "bye")
        await asyncio.wait_for(writers[0], 5)
        writers[1].cancel()
        return fast, slow, subscribers[1]

    fast, slow, cut_off = asyncio.run(scenario())
    assert len(fast.received) == 3 * gateway_ws.QUEUE_LIMIT
    assert fast.received[-1] == f'{{"n":{3 * gateway_ws.QUEUE_LIMIT - 1}}}'
    # The slow bot got nothing it could read, and is told why rather than fed gaps.
    assert slow.received == []
    assert cut_off.reason is not None
    assert f"fell {gateway_ws.QUEUE_LIMIT} messages behind" in cut_off.reason[1]


def test_the_slow_subscriber_is_ended_as_soon_as_its_queue_overflows() -> None:
    async def scenario() -> gateway_ws.Subscriber:
        slow = gateway_ws.Subscriber(Bot(stuck=True), gateway_ws._raw)  # type: ignore[arg-type]
        for n in range(gateway_ws.QUEUE_LIMIT + 1):
            slow.offer("s", str(n))
        return slow

    slow = asyncio.run(scenario())
    assert slow.reason is not None
    code, reason = slow.reason
    assert code == 1008 and f"fell {gateway_ws.QUEUE_LIMIT} messages behind" in reason


class Socket:
    """A bot's socket as the server's ``write_text`` sees it: it takes frames or is full."""

    def __init__(self) -> None:
        self.full = False
        self.written: list[str] = []

    def write_text(self, text: str) -> bool:
        if self.full:
            return False
        self.written.append(text)
        return True


def test_a_bot_that_keeps_up_is_written_to_at_once_with_no_queue() -> None:
    async def scenario() -> tuple[Socket, Bot, gateway_ws.Subscriber]:
        socket, bot = Socket(), Bot(stuck=False)
        me = gateway_ws.Subscriber(bot, gateway_ws._raw, socket.write_text)  # type: ignore[arg-type]
        writer = asyncio.create_task(gateway_ws._drain(me))
        for n in range(5):
            me.offer("s", str(n))
            assert me.queue.empty()  # written in offer(), before any task ran
        me.end(1000, "bye")
        await asyncio.wait_for(writer, 5)
        return socket, bot, me

    socket, bot, _ = asyncio.run(scenario())
    assert socket.written == ["0", "1", "2", "3", "4"]
    assert bot.received == []  # the ASGI send was never needed
    assert bot.closed == (1000, "bye")


def test_frames_after_a_full_socket_wait_in_order_behind_it() -> None:
    async def scenario() -> tuple[Socket, Bot]:
        socket, bot = Socket(), Bot(stuck=False)
        me = gateway_ws.Subscriber(bot, gateway_ws._raw, socket.write_text)  # type: ignore[arg-type]
        me.offer("s", "0")
        socket.full = True
        me.offer("s", "1")  # the socket is full: queued
        socket.full = False
        me.offer("s", "2")  # the socket would take it, but "1" is waiting: queued behind
        assert me.queue.qsize() == 2
        writer = asyncio.create_task(gateway_ws._drain(me))
        while not me.queue.empty() or me.writing:  # the writer sends what waited (ASGI send)
            await asyncio.sleep(0)
        me.offer("s", "3")  # nothing waits now: straight to the socket again
        me.end(1000, "bye")
        await asyncio.wait_for(writer, 5)
        return socket, bot

    socket, bot = asyncio.run(scenario())
    assert bot.received == ["1", "2"]
    assert socket.written == ["0", "3"]


def test_a_bot_cut_off_is_closed_with_its_reason_and_not_fed_what_was_queued() -> None:
    async def scenario() -> tuple[Bot, gateway_ws.Subscriber]:
        bot = Bot(stuck=False)
        full = Socket()
        full.full = True
        me = gateway_ws.Subscriber(bot, gateway_ws._raw, full.write_text)  # type: ignore[arg-type]
        for n in range(gateway_ws.QUEUE_LIMIT + 1):  # no writer running: the queue fills
            me.offer("s", str(n))
        writer = asyncio.create_task(gateway_ws._drain(me))
        await asyncio.wait_for(writer, 5)
        return bot, me

    bot, me = asyncio.run(scenario())
    assert me.reason is not None and me.reason[0] == 1008
    assert bot.received == []  # closed at once, not after the 1,024 frames behind
    assert bot.closed == me.reason
