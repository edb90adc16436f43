"""Usage readings from the exchange reach Redis together: the latest per budget, a few a second."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from async_run import run_closed
from keybroker.clock import FixedClock
from keybroker.exchanges.base import RateLimit
from keybroker.ratelimit import Charge
from keybroker.ratelimit.redis import RedisLimiter
from keybroker.ratelimit.redis_link import Link
from keybroker.ratelimit.redis_scripts import CORRECT, PEEK
from redis_server import RedisServer

HOST = "127.0.0.1:9"
WEIGHT = RateLimit("REQUEST_WEIGHT", 1200, 60, "weight", "ip", fixed_window=True)
CHARGE = Charge(f"binance:testnet:{HOST}:REQUEST_WEIGHT", 1.0, WEIGHT, HOST)
START_MS = 1_800_000_000_000


def test_a_burst_of_readings_is_one_correction_with_the_latest(redis_clean: RedisServer) -> None:
    clock = FixedClock(START_MS)

    async def scenario() -> tuple[int, float]:
        async with Redis.from_url(redis_clean.url) as client:
            link = Link.of(client)
            assert link is not None
            limiter = RedisLimiter(client, clock=clock, link=link)
            await limiter.acquire([CHARGE], fairness_key="bot")
            await client.script_load(CORRECT)  # so that a call is one EVALSHA
            before = await script_calls(client)
            for used in range(2, 42):  # forty answers, each with a higher reading
                limiter.observe(f"binance:testnet:{HOST}", {"REQUEST_WEIGHT": used})
                clock.advance(1)
                await asyncio.sleep(0)
            await limiter.close()  # waits for the corrections on their way
            sent = await script_calls(client) - before
            used_now = await client.register_script(PEEK)(
                keys=[f"keybroker:rl:b:{CHARGE.key}"], args=[clock.now_ms()]
            )
            await link.close()
            return sent, float(used_now[0])

    sent, used = run_closed(scenario)
    assert sent == 1
    assert used == 41.0  # the latest reading: the shared budget was raised to it


def test_readings_of_several_budgets_at_different_times_are_one_script(
    redis_clean: RedisServer,
) -> None:
    clock = FixedClock(START_MS)
    orders = RateLimit("ORDERS_10S", 50, 10, "orders", "account", fixed_window=True)
    order = Charge(f"binance:testnet:{HOST}:bn:ORDERS_10S", 1.0, orders, HOST)

    async def scenario() -> tuple[int, list[float]]:
        async with Redis.from_url(redis_clean.url) as client:
            link = Link.of(client)
            assert link is not None
            limiter = RedisLimiter(client, clock=clock, link=link)
            await limiter.acquire([CHARGE, order], fairness_key="bot")
            await client.script_load(CORRECT)
            before = await script_calls(client)
            limiter.observe(f"binance:testnet:{HOST}", {"REQUEST_WEIGHT": 30})
            clock.advance(9_990)  # the order budget's reading comes near the end of its window
            limiter.observe(f"binance:testnet:{HOST}:bn", {"ORDERS_10S": 7})
            await asyncio.sleep(0)
            await limiter.close()
            sent = await script_calls(client) - before
            keys = [f"keybroker:rl:b:{CHARGE.key}", f"keybroker:rl:b:{order.key}"]
            used_then = await client.register_script(PEEK)(keys=keys, args=[clock.now_ms()])
            clock.advance(20)  # a new ten-second window: a reading taken before it is gone
            used_after = await client.register_script(PEEK)(keys=keys, args=[clock.now_ms()])
            await link.close()
            return sent, [float(v) for v in (*used_then, *used_after)]

    sent, used = run_closed(scenario)
    assert sent == 1
    assert used == [30.0, 7.0, 30.0, 0.0]


async def script_calls(client: Redis) -> int:
    """EVALSHA calls so far (only the limiter's corrections run scripts meanwhile)."""
    info = await client.info("commandstats")
    return int(info.get("cmdstat_evalsha", {}).get("calls", 0))
