"""An order's admission and its budget in one Redis script, against a real redis-server.

``RedisCoordination.admit_order`` reads the halts and order counts and, in
the same script, takes the order's budgets when they all fit and the
credential is not halted; the budget goes back (``refund``) when the policy
then refuses the order. These check the script's answers, its atomicity
across gateways, the refund for every budget shape, failing closed, and a
real gateway giving back the budget of an order its policy denied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from gateway_testkit import LIMIT_BUY, StartEmulator, StartGateway, make_vault, new_token
from redis.asyncio import Redis

from async_run import run_closed
from keybroker.clock import FixedClock
from keybroker.errors import CoordinationUnavailable
from keybroker.exchanges.base import RateLimit
from keybroker.gateway.coordination_redis import RedisCoordination, publish_halt
from keybroker.policy import Policy
from keybroker.ratelimit import Charge, Prepaid
from keybroker.ratelimit.redis import RedisLimiter
from keybroker.ratelimit.redis_scripts import PEEK
from keybroker.secret import Secret
from keybroker.vault import Vault
from redis_server import RedisServer, StartRedis

T = TypeVar("T")

HOST = "127.0.0.1:9"
START_MS = 1_800_000_000_000
WEIGHT = RateLimit("REQUEST_WEIGHT", 100, 60, "weight", "ip", fixed_window=True)
ORDERS = RateLimit("ORDERS_10S", 5, 10, "orders", "account")
DECAYING = RateLimit("TRADING", 10, 10, "orders", "account", decaying=True)


def order_charges(orders: RateLimit = ORDERS) -> list[Charge]:
    return [
        Charge(f"binance:testnet:{HOST}:REQUEST_WEIGHT", 1.0, WEIGHT, HOST),
        Charge(f"binance:testnet:{HOST}:bn:{orders.name}", 1.0, orders, HOST),
    ]


def run(make: Callable[[], Awaitable[T]]) -> T:
    return run_closed(make)  # the loop stops once its connections are closed


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    opened = make_vault(tmp_path / "host", {"bn": ("binance", "http://127.0.0.1:9")})
    yield opened  # type: ignore[misc]
    opened.close()


def coordination_on(url: str, vault: Vault, clock: FixedClock) -> RedisCoordination:
    coordination = RedisCoordination.from_url(Secret(url), vault=vault, clock=clock)
    assert coordination.link is not None  # the scripts go over the pipelined link
    return coordination


async def used(url: str, charges: list[Charge], now: int) -> list[float]:
    """Each charge's budget as the store holds it now (PEEK), 0 where none is stored."""
    async with Redis.from_url(url) as client:
        answer = await client.register_script(PEEK)(
            keys=[f"keybroker:rl:b:{charge.key}" for charge in charges], args=[now]
        )
    return [float(value) if value else 0.0 for value in answer]


async def script_calls(url: str) -> int:
    async with Redis.from_url(url) as client:
        stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_an_order_is_admitted_and_takes_its_budget_in_one_script_call(
    redis_clean: RedisServer, vault: Vault
) -> None:
    clock = FixedClock(START_MS)

    async def scenario() -> tuple[Prepaid | None, int, list[float], list[bool]]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        coordination.limiter()
        await coordination.admit_order("bn", "bot1", order_charges())  # loads the script
        before = await script_calls(redis_clean.url)
        prepaid = await coordination.admit_order("bn", "bot1", order_charges())
        calls = await script_calls(redis_clean.url) - before
        spent = await used(redis_clean.url, order_charges(), clock.now_ms())
        claims = [prepaid.claim(), prepaid.claim()] if prepaid else []
        await coordination.close()
        return prepaid, calls, spent, claims

    prepaid, calls, spent, claims = run(scenario)
    assert prepaid is not None and prepaid.taken_ms == START_MS
    assert calls == 1
    assert spent == [2.0, 2.0]  # two admissions, each took both budgets
    assert claims == [True, False]  # the request skips its own acquire once


def test_a_halted_credential_takes_no_budget(redis_clean: RedisServer, vault: Vault) -> None:
    clock = FixedClock(START_MS)
    at = datetime.fromtimestamp(START_MS / 1000, tz=UTC)

    async def scenario(halt: str) -> tuple[Prepaid | None, list[float]]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        coordination.limiter()
        await asyncio.to_thread(publish_halt, Secret(redis_clean.url), halt, at, "test")
        prepaid = await coordination.admit_order("bn", "bot1", order_charges())
        spent = await used(redis_clean.url, order_charges(), clock.now_ms())
        await coordination.close()
        return prepaid, spent

    for halt in ("bn", "*"):
        with redis_clean.client() as client:
            client.flushall()
        assert run(lambda halt=halt: scenario(halt)) == (None, [0.0, 0.0])  # type: ignore[misc]


def test_budgets_that_do_not_all_fit_are_not_taken_at_all(
    redis_clean: RedisServer, vault: Vault
) -> None:
    clock = FixedClock(START_MS)

    async def scenario() -> tuple[list[bool], list[float]]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        coordination.limiter()
        answers = [
            await coordination.admit_order("bn", "bot1", order_charges()) is not None
            for _ in range(7)
        ]
        spent = await used(redis_clean.url, order_charges(), clock.now_ms())
        await coordination.close()
        return answers, spent

    answers, spent = run(scenario)
    assert answers == [True] * 5 + [False] * 2  # ORDERS_10S holds 5
    assert spent == [5.0, 5.0]  # the weight was not taken for the two that did not fit


def test_two_gateways_admitting_at_once_never_take_more_than_the_budget(
    redis_clean: RedisServer, vault: Vault
) -> None:
    clock = FixedClock(START_MS)

    async def scenario() -> int:
        gateways = [coordination_on(redis_clean.url, vault, clock) for _ in range(2)]
        for gateway in gateways:
            gateway.limiter()
        answers = await asyncio.gather(
            *(gateways[i % 2].admit_order("bn", f"bot{i}", order_charges()) for i in range(40))
        )
        for gateway in gateways:
            await gateway.close()
        return sum(answer is not None for answer in answers)

    assert run(scenario) == 5


@pytest.mark.parametrize(
    "orders",
    [ORDERS, DECAYING, RateLimit("ORDERS_1M", 5, 60, "orders", "account", fixed_window=True)],
    ids=["rolling", "decaying", "fixed"],
)
def test_a_refused_orders_budget_goes_back(
    redis_clean: RedisServer, vault: Vault, orders: RateLimit
) -> None:
    clock = FixedClock(START_MS)
    charges = order_charges(orders)

    async def scenario() -> list[list[float]]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        limiter = coordination.limiter()
        assert isinstance(limiter, RedisLimiter)
        seen = []
        kept = await coordination.admit_order("bn", "bot1", charges)
        refused = await coordination.admit_order("bn", "bot2", charges)
        assert kept is not None and refused is not None
        seen.append(await used(redis_clean.url, charges, clock.now_ms()))
        coordination.refund(refused)
        coordination.refund(refused)  # twice: given back once
        await limiter.close()  # the refund has reached Redis
        seen.append(await used(redis_clean.url, charges, clock.now_ms()))
        await coordination.close()
        return seen

    before, after = run(scenario)
    assert before == [2.0, 2.0]
    assert after == [1.0, 1.0]


def test_nothing_goes_back_for_a_spend_that_no_longer_counts(
    redis_clean: RedisServer, vault: Vault
) -> None:
    clock = FixedClock(START_MS)
    charges = order_charges()

    async def scenario() -> list[float]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        limiter = coordination.limiter()
        assert isinstance(limiter, RedisLimiter)
        old = await coordination.admit_order("bn", "bot1", charges)
        assert old is not None
        clock.advance(11_500)  # ORDERS_10S has forgotten it; the minute's weight has not
        assert await coordination.admit_order("bn", "bot1", charges) is not None
        limiter.refund(old)
        await limiter.close()
        spent = await used(redis_clean.url, charges, clock.now_ms())
        await coordination.close()
        return spent

    assert run(scenario) == [1.0, 1.0]  # never below what the newer order took


def test_orders_fail_closed_when_the_store_is_gone(start_redis: StartRedis, vault: Vault) -> None:
    server = start_redis()
    clock = FixedClock(START_MS)

    async def scenario() -> list[str]:
        coordination = coordination_on(server.url, vault, clock)
        coordination.limiter()
        assert await coordination.admit_order("bn", "bot1", order_charges()) is not None
        server.kill()
        refusals = []
        for _ in range(2):  # the second within the probe interval: refused without trying
            with pytest.raises(CoordinationUnavailable) as refused:
                await coordination.admit_order("bn", "bot1", order_charges())
            refusals.append(str(refused.value))
        await coordination.close()
        return refusals

    for refusal in run(scenario):
        assert refusal.startswith("coordination store unavailable")


def test_a_gateway_gives_back_the_budget_of_an_order_its_policy_denied(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    policy = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",), max_notional=Decimal(5000))
    vault = make_vault(tmp_path / "a", {"bn": ("binance", exchange.url)}, policies={"bn": policy})
    token = new_token(vault, "bot1", ["bn"])
    client = gateway(vault, token, redis_url=Secret(redis_clean.url), gateways=1).client()

    def orders_used() -> float:
        with redis_clean.client() as store:
            keys = [k.decode() for k in store.keys("keybroker:rl:b:*:bn:ORDERS_10S")]
            now = int(datetime.now(tz=UTC).timestamp() * 1000)
            values = store.register_script(PEEK)(keys=keys, args=[now]) if keys else []
        return sum(float(value) for value in values if value)

    allowed = client.post("/bn/api/v3/order", data={**LIMIT_BUY, "quantity": "0.001"})
    assert allowed.status_code == 200, allowed.text
    assert orders_used() == 1.0
    denied = client.post("/bn/api/v3/order", data={**LIMIT_BUY, "quantity": "1"})
    assert denied.status_code == 403 and denied.json()["rule"] == "max_notional"
    # The denied order's budget was taken with its admission and goes back from a task.
    deadline = time.monotonic() + 5
    while orders_used() != 1.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert orders_used() == 1.0
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 1


def counts(server: RedisServer) -> tuple[int, int, str]:
    """The credential's and bot1's order counts and bn's notional today, as Redis holds them."""
    with server.client() as store:
        notional = store.get(f"keybroker:notional:bn:{START_MS // 86_400_000}")
        return (
            int(store.zcard("keybroker:orders:credential:bn")),
            int(store.zcard("keybroker:orders:bot:bot1")),
            notional.decode() if notional else "0",
        )


def test_an_admission_counts_its_orders_and_a_refund_takes_them_back_once(
    redis_clean: RedisServer, vault: Vault
) -> None:
    clock = FixedClock(START_MS)

    async def scenario() -> list[object]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        limiter = coordination.limiter()
        seen: list[object] = []
        first = await coordination.admit_order(
            "bn", "bot1", order_charges(), orders=2, notional=Decimal("150.5")
        )
        seen.append(counts(redis_clean))
        second = await coordination.admit_order(
            "bn", "bot1", order_charges(), orders=1, notional=Decimal(100)
        )
        activity = coordination.activity(clock)
        await coordination.admit_order("bn", "bot1", orders=1, notional=Decimal(1))
        # What the policy of that third order compares: the counts from before it.
        seen.append((activity.orders_last_minute("bn"), activity.daily_notional("bn")))
        assert first is not None and second is not None
        coordination.refund(first)
        coordination.refund(first)  # twice: taken back once
        await limiter.close()
        await coordination.close()  # the refund has reached Redis
        seen.append(counts(redis_clean))
        return seen

    counted, learned, after = run(scenario)
    assert counted == (2, 2, "150.5")
    assert learned == (3, Decimal("250.5"))
    assert after == (2, 2, "101")  # the second and third orders stay counted


def test_a_halted_credentials_order_is_not_counted(redis_clean: RedisServer, vault: Vault) -> None:
    clock = FixedClock(START_MS)
    at = datetime.fromtimestamp(START_MS / 1000, tz=UTC)

    async def scenario() -> Prepaid | None:
        coordination = coordination_on(redis_clean.url, vault, clock)
        coordination.limiter()
        await asyncio.to_thread(publish_halt, Secret(redis_clean.url), "bn", at, "test")
        admitted = await coordination.admit_order(
            "bn", "bot1", order_charges(), orders=1, notional=Decimal(50)
        )
        await coordination.close()
        return admitted

    assert run(scenario) is None
    assert counts(redis_clean) == (0, 0, "0")


def test_an_order_counted_without_budget_takes_its_turn_for_it(
    redis_clean: RedisServer, vault: Vault
) -> None:
    clock = FixedClock(START_MS)

    async def scenario() -> list[Prepaid | None]:
        coordination = coordination_on(redis_clean.url, vault, clock)
        coordination.limiter()
        answers = [
            await coordination.admit_order("bn", "bot1", order_charges(), orders=1)
            for _ in range(6)
        ]
        await coordination.close()
        return answers

    answers = run(scenario)
    assert all(answer is not None for answer in answers)
    assert counts(redis_clean)[:2] == (6, 6)  # every order is counted
    # ORDERS_10S holds 5: the sixth took no budget, so its request acquires its own.
    assert [answer.claim() for answer in answers if answer is not None] == [True] * 5 + [False]
