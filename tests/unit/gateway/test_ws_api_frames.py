"""``_frames_until``: a bot's API frames, until the exchange's side of the session closes.

It replaced a task and an ``asyncio.wait`` per frame with a cancellation that
may only land while the session waits for the bot; these tests hold it to
that, and to leaving every other cancellation alone.
"""

from __future__ import annotations

import asyncio

import pytest

from keybroker.gateway import websocket as gateway_ws


class Bot:
    """A bot connection whose frames the test hands over one by one."""

    def __init__(self) -> None:
        self.frames: asyncio.Queue[str] = asyncio.Queue()

    async def receive_text(self) -> str:
        return await self.frames.get()


def test_frames_come_in_order_and_the_exchanges_close_ends_the_wait() -> None:
    async def scenario() -> list[str]:
        bot, closed = Bot(), asyncio.get_running_loop().create_future()
        for text in ("a", "b"):
            bot.frames.put_nowait(text)
        got: list[str] = []

        async def session() -> None:
            async for text in gateway_ws._frames_until(bot, closed):  # type: ignore[arg-type]
                got.append(text)

        running = asyncio.create_task(session())
        while len(got) < 2:
            await asyncio.sleep(0)
        closed.set_result(None)  # the session is waiting for the bot: the wait ends
        await asyncio.wait_for(running, 5)
        assert not running.cancelled()
        return got

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_frame_being_judged_when_the_exchange_closes_is_finished_first() -> None:
    async def scenario() -> list[str]:
        bot, closed = Bot(), asyncio.get_running_loop().create_future()
        bot.frames.put_nowait("order")
        bot.frames.put_nowait("never read")
        judged: list[str] = []

        async def session() -> None:
            async for text in gateway_ws._frames_until(bot, closed):  # type: ignore[arg-type]
                closed.set_result(None)  # the exchange closes while this frame is judged
                await asyncio.sleep(0.01)  # e.g. the intent row's fsync: not interrupted
                judged.append(text)

        await asyncio.wait_for(asyncio.create_task(session()), 5)
        return judged

    assert asyncio.run(scenario()) == ["order"]


def test_a_cancellation_from_elsewhere_still_cancels() -> None:
    async def scenario() -> None:
        bot, closed = Bot(), asyncio.get_running_loop().create_future()

        async def session() -> None:
            async for _ in gateway_ws._frames_until(bot, closed):  # type: ignore[arg-type]
                pass

        running = asyncio.create_task(session())
        await asyncio.sleep(0.01)
        running.cancel()  # e.g. the server shutting down
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
