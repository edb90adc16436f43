"""RedisLimiter against a real redis-server: two limiters stand for two gateways sharing budgets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from async_run import run_closed
from keybroker.errors import CoordinationUnavailable, RateLimited
from keybroker.exchanges.base import RateLimit
from keybroker.ratelimit import Charge, Limiter
from keybroker.ratelimit.redis import RedisLimiter, StoreHealth
from redis_server import PASSWORD, RedisServer, StartRedis, make_tls_files

T = TypeVar("T")

HOST = "127.0.0.1:9"
WEIGHT = RateLimit("REQUEST_WEIGHT", 10, 60, "weight", "ip", fixed_window=True)
ROLLING = RateLimit("PER_SECOND", 4, 1, "requests", "ip")
ORDERS = RateLimit("ORDERS_10S", 5, 10, "orders", "account")


def weight(amount: float = 1.0) -> list[Charge]:
    return [Charge(f"binance:testnet:{HOST}:REQUEST_WEIGHT", amount, WEIGHT, HOST)]


def rolling() -> list[Charge]:
    return [Charge(f"okx:testnet:{HOST}:PER_SECOND", 1.0, ROLLING, HOST)]


def order() -> list[Charge]:
    return [
        *weight(),
        Charge(f"binance:testnet:{HOST}:main:ORDERS_10S", 1.0, ORDERS, HOST),
    ]


def run(make: Callable[[], Awaitable[T]]) -> T:
    return run_closed(make)  # the loop stops once its connections are closed


def client_for(server: RedisServer) -> Redis:
    return Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)


async def granted(limiter: Limiter, charges: list[Charge], *, deadline_s: float = 0.0) -> bool:
    try:
        await limiter.acquire(charges, fairness_key="bot", deadline_s=deadline_s)
    except RateLimited:
        return False
    return True


def test_limiters_on_one_redis_share_one_budget(redis_clean: RedisServer) -> None:
    async def scenario() -> tuple[list[bool], list[bool], object]:
        async with client_for(redis_clean) as one, client_for(redis_clean) as two:
            first, second = RedisLimiter(one), RedisLimiter(two)
            a = [await granted(first, weight(3)) for _ in range(2)]  # 6 of 10
            b = [await granted(second, weight(3)) for _ in range(2)]  # 9, then 12 > 10
            await second.refresh()
            return a, b, second.snapshot()

    a, b, snapshot = run(scenario)
    assert isinstance(RedisLimiter(Redis()), Limiter)  # the gateway takes either limiter
    assert a == [True, True]
    assert b == [True, False]
    budget = next(row for row in snapshot if row["type"] == "budget")  # type: ignore[union-attr]
    assert budget["used"] == 9.0 and budget["capacity"] == 10.0


def test_concurrent_gateways_never_overspend(redis_clean: RedisServer) -> None:
    async def scenario() -> int:
        clients = [client_for(redis_clean) for _ in range(3)]
        limiters = [RedisLimiter(client) for client in clients]
        results = await asyncio.gather(*(granted(limiters[i % 3], weight()) for i in range(60)))
        for client in clients:
            await client.aclose()
        return sum(results)

    assert run(scenario) == 10  # the whole budget, and not one unit more


def test_a_waiter_is_served_when_the_shared_window_frees(redis_clean: RedisServer) -> None:
    async def scenario() -> tuple[float, bool]:
        async with client_for(redis_clean) as one, client_for(redis_clean) as two:
            first, second = RedisLimiter(one), RedisLimiter(two)
            for _ in range(4):
                assert await granted(first, rolling())
            began = time.monotonic()
            ok = await granted(second, rolling(), deadline_s=3.0)  # waits for the window
            return time.monotonic() - began, ok

    waited, ok = run(scenario)
    assert ok
    assert 0.5 < waited < 2.5  # window 1 s + margin 50 ms after the first spends


def test_fair_turns_within_a_gateway(redis_clean: RedisServer) -> None:
    async def scenario() -> list[str]:
        async with client_for(redis_clean) as client:
            limiter = RedisLimiter(client)
            for _ in range(4):
                assert await granted(limiter, rolling())
            served: list[str] = []

            async def bot(name: str) -> None:
                await limiter.acquire(rolling(), fairness_key=name, deadline_s=5)
                served.append(name)

            # "greedy" queues three requests first; "late" one after it
            tasks = [asyncio.create_task(bot("greedy")) for _ in range(3)]
            await asyncio.sleep(0.01)
            tasks.append(asyncio.create_task(bot("late")))
            await asyncio.gather(*tasks)
            return served

    served = run(scenario)
    assert served.index("late") <= 1  # took its turn before greedy's third


def test_a_pause_and_a_ban_seen_by_one_stop_the_other(redis_clean: RedisServer) -> None:
    async def scenario() -> tuple[str, str, int | None]:
        async with client_for(redis_clean) as one, client_for(redis_clean) as two:
            first, second = RedisLimiter(one), RedisLimiter(two)
            first.pause(f"binance:testnet:{HOST}", 30)
            await first.close()  # the pause has reached Redis
            with pytest.raises(RateLimited) as paused:
                await second.acquire(weight(), fairness_key="b", deadline_s=1)
            first.open_breaker(HOST, int(time.time() * 1000) + 60_000)
            await first.close()
            with pytest.raises(RateLimited) as banned:
                await second.acquire(rolling(), fairness_key="b", deadline_s=1)
            return str(paused.value), str(banned.value), second.breaker_until(HOST)

    paused, banned, until = run(scenario)
    assert "REQUEST_WEIGHT" in paused
    assert "banned this IP" in banned
    assert until is not None and until > time.time() * 1000 + 50_000


def test_usage_headers_raise_the_shared_budget(redis_clean: RedisServer) -> None:
    async def scenario() -> bool:
        async with client_for(redis_clean) as one, client_for(redis_clean) as two:
            first, second = RedisLimiter(one), RedisLimiter(two)
            assert await granted(first, weight())
            # the exchange says 9 of 10 are spent (someone else on this IP)
            first.observe(f"binance:testnet:{HOST}", {"REQUEST_WEIGHT": 9})
            await first.close()
            assert await granted(second, weight())
            return await granted(second, weight())

    assert run(scenario) is False


def test_without_redis_orders_fail_closed_and_reads_use_a_local_share(
    start_redis: StartRedis,
) -> None:
    server = start_redis()

    async def scenario() -> tuple[list[bool], str, bool, list[bool]]:
        client = client_for(server)
        health = StoreHealth(probe_interval_s=0.2)
        limiter = RedisLimiter(client, gateways=2, health=health)
        assert await granted(limiter, order())  # 1 weight, 1 order: shared
        server.kill()
        with pytest.raises(CoordinationUnavailable) as refused:
            await limiter.acquire(order(), fairness_key="bot", deadline_s=1)
        assert not health.up
        # reads go on, within half (gateways=2) of the 10 weight: 5
        local = [await granted(limiter, weight()) for _ in range(7)]
        server.restart()  # empty: the shared budget forgot the spend before the crash
        await asyncio.sleep(0.25)
        back = await granted(limiter, order())  # the probe finds Redis and the order is shared
        await limiter.close()  # the local spends reached Redis
        after = [await granted(limiter, weight()) for _ in range(5)]
        await client.aclose()
        return local, str(refused.value), back and health.up, after

    local, refused, back, after = run(scenario)
    assert refused.startswith("coordination store unavailable")
    assert local == [True] * 5 + [False] * 2
    assert back
    # 5 spent alone were added to the restarted store, +1 by the order: 4 of 10 are left
    assert after == [True] * 4 + [False]


def test_password_and_tls(start_redis: StartRedis, tmp_path: pytest.TempPathFactory) -> None:
    tls = make_tls_files(tmp_path / "tls")  # type: ignore[operator]
    server = start_redis(password=PASSWORD, tls=tls)
    assert server.url.startswith("rediss://")

    async def scenario() -> list[bool]:
        async with Redis.from_url(server.url) as client:
            limiter = RedisLimiter(client)
            return [await granted(limiter, weight(4)) for _ in range(3)]

    assert run(scenario) == [True, True, False]

    async def wrong_password() -> None:
        url = server.url.replace(PASSWORD, "wrong-password-not-real")
        async with Redis.from_url(url) as client:
            limiter = RedisLimiter(client, health=StoreHealth())
            with pytest.raises(CoordinationUnavailable):
                await limiter.acquire(order(), fairness_key="bot", deadline_s=1)

    run(wrong_password)
