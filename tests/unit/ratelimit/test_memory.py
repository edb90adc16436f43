"""MemoryLimiter on real asyncio timers: capacity, turns, deadlines, pauses, breakers, headers."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.clock import FixedClock, SystemClock
from keybroker.emulator.ratelimit import WeightLimiter
from keybroker.errors import RateLimited
from keybroker.exchanges import get_profile
from keybroker.exchanges.base import RateLimit
from keybroker.ratelimit import (
    Charge,
    Limiter,
    MemoryLimiter,
    charges_for,
    host_prefix,
    request_prefix,
)

T = TypeVar("T")


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return asyncio.run(main())


def window(capacity: float, seconds: float, name: str = "W", **kw: object) -> RateLimit:
    return RateLimit(name, capacity, seconds, "requests", "ip", **kw)  # type: ignore[arg-type]


def charge(limit: RateLimit, amount: float = 1, key: str = "x:e:h", host: str = "h") -> Charge:
    return Charge(f"{key}:{limit.name}", amount, limit, host)


def now_ms() -> int:
    return SystemClock().now_ms()


# -- capacity -----------------------------------------------------------------------------------
def test_within_budget_at_once_beyond_it_refused_with_retry_after() -> None:
    limit = window(5, 10)

    async def scenario() -> RateLimited:
        limiter = MemoryLimiter()
        started = time.monotonic()
        for _ in range(5):
            await limiter.acquire([charge(limit)], fairness_key="bot")
        assert time.monotonic() - started < 0.05
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire([charge(limit)], fairness_key="bot", deadline_s=0.5)
        assert time.monotonic() - started < 0.1  # provably hopeless: refused at once
        return refused.value

    refused = run(scenario)
    assert refused.http_status == 429
    assert refused.retry_after is not None and 9 < refused.retry_after <= 11


def test_concurrent_bots_never_put_more_than_the_capacity_in_any_window() -> None:
    limit = window(3, 0.1)
    grants: list[int] = []

    async def bot(name: str) -> None:
        for _ in range(5):
            await limiter.acquire([charge(limit)], fairness_key=name)
            grants.append(now_ms())

    async def scenario() -> None:
        await asyncio.gather(*(bot(f"bot-{n}") for n in range(3)))

    limiter = MemoryLimiter()
    run(scenario)
    assert len(grants) == 15
    for start in grants:
        assert sum(1 for at in grants if start <= at < start + 100) <= 3


def test_a_charge_larger_than_the_whole_budget_is_refused_at_once() -> None:
    limit = window(10, 1)

    async def scenario() -> None:
        with pytest.raises(RateLimited) as refused:
            await MemoryLimiter().acquire([charge(limit, 11)], fairness_key="bot")
        assert refused.value.retry_after is None
        assert "whole budget" in str(refused.value)

    run(scenario)


def test_all_charges_of_a_request_are_spent_together_or_not_at_all() -> None:
    roomy, tight = window(10, 10, "ROOMY"), window(1, 10, "TIGHT")

    async def scenario() -> None:
        limiter = MemoryLimiter()
        await limiter.acquire([charge(tight)], fairness_key="a")
        with pytest.raises(RateLimited):
            await limiter.acquire([charge(roomy), charge(tight)], fairness_key="a", deadline_s=0)
        used = {row["name"]: row["used"] for row in limiter.snapshot() if row["type"] == "budget"}
        assert used == {"TIGHT": 1.0, "ROOMY": 0.0}

    run(scenario)


# -- fairness -----------------------------------------------------------------------------------
def test_two_bots_get_alternating_turns() -> None:
    limit = window(1, 0.03)
    order: list[str] = []

    async def one(name: str) -> None:
        await limiter.acquire([charge(limit)], fairness_key=name)
        order.append(name)

    async def scenario() -> None:
        await asyncio.gather(*[one("A") for _ in range(6)], *[one("B") for _ in range(6)])

    limiter = MemoryLimiter()
    run(scenario)
    # A's first went straight through; from then on, turns alternate while both wait.
    assert order == ["A", "A", "B", "A", "B", "A", "B", "A", "B", "A", "B", "B"]


def test_a_heavy_request_is_not_starved_by_a_stream_of_light_ones() -> None:
    limit = window(10, 0.1)
    order: list[str] = []

    async def light() -> None:
        for _ in range(20):
            await limiter.acquire([charge(limit, 1)], fairness_key="light")
            order.append("light")

    async def heavy() -> None:
        await asyncio.sleep(0.01)
        await limiter.acquire([charge(limit, 10)], fairness_key="heavy", deadline_s=1)
        order.append("heavy")

    async def scenario() -> None:
        await asyncio.gather(light(), heavy())

    limiter = MemoryLimiter()
    run(scenario)
    assert order.index("heavy") <= 12


def test_waiters_on_other_budgets_go_past_one_that_must_wait() -> None:
    full, free = window(1, 10, "FULL"), window(5, 10, "FREE")

    async def scenario() -> float:
        limiter = MemoryLimiter()
        await limiter.acquire([charge(full)], fairness_key="a")
        blocked = asyncio.ensure_future(
            limiter.acquire([charge(full)], fairness_key="a", deadline_s=20)
        )
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await limiter.acquire([charge(free)], fairness_key="b")
        took = time.monotonic() - started
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert [row["waiting"] for row in limiter.snapshot() if row["type"] == "totals"] == [0]
        return took

    assert run(scenario) < 0.05


# -- deadlines ----------------------------------------------------------------------------------
def test_a_waiter_still_queued_at_its_deadline_gets_a_429() -> None:
    limit = window(2, 1)

    async def scenario() -> None:
        limiter = MemoryLimiter()
        await limiter.acquire([charge(limit)], fairness_key="a")
        # X's whole-budget request waits about a second and holds its place...
        ahead = asyncio.ensure_future(
            limiter.acquire([charge(limit, 2)], fairness_key="x", deadline_s=5)
        )
        await asyncio.sleep(0.01)
        # ...so Y's request, which alone would fit, waits behind it until its deadline.
        started = time.monotonic()
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire([charge(limit)], fairness_key="y", deadline_s=0.1)
        assert 0.09 <= time.monotonic() - started < 0.5
        assert "deadline" in str(refused.value)
        assert refused.value.retry_after is not None and refused.value.retry_after > 0
        ahead.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ahead

    run(scenario)


def test_a_waiter_that_cannot_make_its_deadline_is_refused_early() -> None:
    limit = window(1, 0.3)

    async def scenario() -> None:
        limiter = MemoryLimiter()
        await limiter.acquire([charge(limit)], fairness_key="a")
        started = time.monotonic()
        second = asyncio.ensure_future(limiter.acquire([charge(limit)], fairness_key="b"))
        third = asyncio.ensure_future(
            limiter.acquire([charge(limit)], fairness_key="c", deadline_s=0.45)
        )
        await second
        with pytest.raises(RateLimited):
            await third
        # Refused when the second went (about 0.3 s), not at its own deadline.
        assert time.monotonic() - started < 0.44

    run(scenario)


# -- pauses, breakers, corrections --------------------------------------------------------------
def test_a_pause_holds_everything_under_its_prefix_and_nothing_else() -> None:
    limit = window(100, 1)

    async def scenario() -> None:
        limiter = MemoryLimiter()
        limiter.pause("binance:production:127.0.0.1:80", 0.2)
        started = time.monotonic()
        # Another port is another host: the prefix ends at a ':' boundary.
        await limiter.acquire(
            [charge(limit, key="binance:production:127.0.0.1:8080:acct")], fairness_key="a"
        )
        assert time.monotonic() - started < 0.05
        await limiter.acquire(
            [charge(limit, key="binance:production:127.0.0.1:80:acct")], fairness_key="a"
        )
        assert time.monotonic() - started >= 0.19
        limiter.pause("binance:production:127.0.0.1:80", 30)
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire(
                [charge(limit, key="binance:production:127.0.0.1:80")],
                fairness_key="a",
                deadline_s=1,
            )
        assert refused.value.retry_after is not None and 29 < refused.value.retry_after <= 30
        assert any(row["type"] == "pause" for row in limiter.snapshot())

    run(scenario)


def test_a_pause_arriving_while_requests_wait_refuses_them_at_once() -> None:
    limit = window(1, 0.5)

    async def scenario() -> None:
        limiter = MemoryLimiter()
        await limiter.acquire([charge(limit)], fairness_key="a")
        waiting = asyncio.ensure_future(limiter.acquire([charge(limit)], fairness_key="b"))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        limiter.pause("x:e:h", 60)
        with pytest.raises(RateLimited):
            await waiting
        assert time.monotonic() - started < 0.1

    run(scenario)


def test_an_open_breaker_sends_nothing_to_its_host_until_the_ban_ends() -> None:
    limit = window(100, 1)
    clock = FixedClock(1_700_000_000_000)

    async def scenario() -> None:
        limiter = MemoryLimiter(clock=clock)
        until = clock.now_ms() + 120_000
        limiter.open_breaker("api.binance.com", until)
        assert limiter.breaker_until("api.binance.com") == until
        assert limiter.breaker_until("fapi.binance.com") is None
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire([charge(limit, host="api.binance.com")], fairness_key="a")
        assert refused.value.retry_after == pytest.approx(120, abs=0.01)
        assert "418" in str(refused.value)
        await limiter.acquire([charge(limit, host="fapi.binance.com")], fairness_key="a")
        assert [row["host"] for row in limiter.snapshot() if row["type"] == "breaker"] == [
            "api.binance.com"
        ]
        clock.advance(120_000)
        assert limiter.breaker_until("api.binance.com") is None
        await limiter.acquire([charge(limit, host="api.binance.com")], fairness_key="a")

    run(scenario)


def _binance(path: str, account: str, body: bytes = b"") -> list[Charge]:
    profile = get_profile("binance")
    method = "POST" if body else "GET"
    request = httpx.Request(method, f"http://127.0.0.1:9/{path.lstrip('/')}", content=body)
    return charges_for(
        profile,
        profile.classify(request),
        host="127.0.0.1:9",
        account=account,
        environment="testnet",
    )


ORDER = b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1"


def test_usage_headers_correct_this_requests_budgets_and_no_other_accounts() -> None:
    clock = FixedClock(1_700_000_000_000)
    profile = get_profile("binance")
    assert profile.read_usage is not None

    async def scenario() -> None:
        limiter = MemoryLimiter(clock=clock)
        a_order, b_order = (
            _binance("/api/v3/order", "a", ORDER),
            _binance("/api/v3/order", "b", ORDER),
        )
        await limiter.acquire(a_order, fairness_key="bot")
        await limiter.acquire(b_order, fairness_key="bot")
        # Account a's response: its 10-second order budget is spent elsewhere.
        limiter.observe(
            request_prefix(a_order), profile.read_usage({"X-MBX-ORDER-COUNT-10S": "100"})
        )
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire(a_order, fairness_key="bot", deadline_s=1)
        assert "ORDERS_10S" in str(refused.value)
        await limiter.acquire(b_order, fairness_key="bot", deadline_s=1)
        # The IP's weight is everyone's.
        limiter.observe(
            request_prefix(b_order), profile.read_usage({"X-MBX-USED-WEIGHT-1M": "1200"})
        )
        with pytest.raises(RateLimited) as refused:
            await limiter.acquire(_binance("/api/v3/time", "c"), fairness_key="bot", deadline_s=1)
        assert "REQUEST_WEIGHT" in str(refused.value)
        # A lower reading never hands budget back.
        limiter.observe(request_prefix(b_order), {"REQUEST_WEIGHT": 3})
        with pytest.raises(RateLimited):
            await limiter.acquire(_binance("/api/v3/time", "c"), fairness_key="bot", deadline_s=1)
        # A host prefix corrects the IP's budgets, names nobody spent from are ignored.
        limiter.observe(host_prefix("binance", "testnet", "127.0.0.1:9"), {"NO_SUCH": 5})

    run(scenario)


def test_overrides_given_to_the_limiter_replace_the_profiles_capacity() -> None:
    heavy = _binance("/api/v3/depth?symbol=BTCUSDT&limit=5000", "a")  # weight 250

    async def spend(limiter: MemoryLimiter) -> int:
        done = 0
        for _ in range(5):
            try:
                await limiter.acquire(heavy, fairness_key="bot", deadline_s=0)
            except RateLimited:
                break
            done += 1
        return done

    assert run(lambda: spend(MemoryLimiter())) == 4  # 1,200 a minute by default
    assert run(lambda: spend(MemoryLimiter(limit_overrides={"binance:REQUEST_WEIGHT": 6000}))) == 5


def test_snapshot_is_plain_data_and_the_limiter_meets_the_protocol() -> None:
    limiter = MemoryLimiter()
    assert isinstance(limiter, Limiter)
    run(lambda: limiter.acquire(_binance("/api/v3/order", "a", ORDER), fairness_key="bot"))
    rows = limiter.snapshot()
    json.dumps(rows)
    budgets = {row["name"] for row in rows if row["type"] == "budget"}
    assert budgets == {"REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS_10S", "ORDERS_1D"}
    (totals,) = [row for row in rows if row["type"] == "totals"]
    assert totals["granted"] == 1 and totals["rejected"] == 0


# -- properties ---------------------------------------------------------------------------------
operations = st.lists(
    st.tuples(
        st.integers(0, 300),  # ms to move the clock on
        st.sampled_from(["a", "b", "c"]),  # fairness key
        st.sets(st.sampled_from([0, 1, 2]), min_size=1),  # which budgets
        st.integers(1, 6),  # amount
    ),
    min_size=1,
    max_size=60,
)
BUDGETS = [
    RateLimit("FAST", 8, 0.5, "weight", "ip"),
    RateLimit("SLOW", 20, 2, "weight", "account", fixed_window=True),
    RateLimit("DECAY", 10, 1, "weight", "account", decaying=True),
]


@settings(max_examples=150, deadline=None)
@given(plan=operations)
def test_the_limiter_never_lets_a_budget_over_its_capacity(
    plan: list[tuple[int, str, set[int], int]],
) -> None:
    clock = FixedClock(1_000_000)
    spent: dict[str, list[tuple[int, int]]] = {limit.name: [] for limit in BUDGETS}

    async def scenario() -> None:
        limiter = MemoryLimiter(clock=clock)
        for advance, bot, which, amount in plan:
            clock.advance(advance)
            charges = [charge(BUDGETS[i], amount) for i in sorted(which)]
            try:
                await limiter.acquire(charges, fairness_key=bot, deadline_s=0)
            except RateLimited:
                continue
            for i in which:
                spent[BUDGETS[i].name].append((clock.now_ms(), amount))

    run(scenario)
    fast = spent["FAST"]
    for start, _ in fast:
        assert sum(a for at, a in fast if start <= at < start + 500) <= 8
    per_window: dict[int, int] = {}
    for at, amount in spent["SLOW"]:  # Binance-style windows on multiples of 2 s
        per_window[at // 2000] = per_window.get(at // 2000, 0) + amount
    assert all(total <= 20 for total in per_window.values())
    level, last = 0.0, 0
    for at, amount in spent["DECAY"]:
        level = max(0.0, level - (at - last) * 10 / 1000) + amount
        last = at
        assert level <= 10 + 1e-6


# -- against the emulator's own counting ------------------------------------------------------
def test_45_bots_at_full_speed_never_hit_the_emulators_limit_and_use_the_budget() -> None:
    # Binance's fixed-window weight limit as the emulator counts it, scaled to one
    # second so the test is quick: 40 weight per calendar second.
    limit = RateLimit("REQUEST_WEIGHT", 40, 1, "weight", "ip", fixed_window=True)
    exchange = WeightLimiter(40, window_ms=1_000)
    key = "binance:production:127.0.0.1:REQUEST_WEIGHT"
    verdicts: list[str] = []
    arrivals: list[tuple[int, int]] = []
    rng = random.Random(5)

    async def bot(number: int) -> None:
        while True:
            weight = rng.choice((1, 1, 2))
            charges = [Charge(key, weight, limit, "127.0.0.1")]
            try:
                await limiter.acquire(charges, fairness_key=f"bot-{number}")
            except RateLimited:
                continue
            await asyncio.sleep(rng.random() * 0.01)  # on its way to the exchange
            at = now_ms()
            verdicts.append(exchange.charge("127.0.0.1", weight, at).status)
            arrivals.append((at, weight))

    async def scenario() -> tuple[int, int]:
        started = now_ms()
        bots = [asyncio.ensure_future(bot(n)) for n in range(45)]
        await asyncio.sleep(4.1)
        for task in bots:
            task.cancel()
        await asyncio.gather(*bots, return_exceptions=True)
        return started, now_ms()

    limiter = MemoryLimiter()
    started, stopped = run(scenario)
    assert set(verdicts) == {"ok"}
    # The opening burst may fall within the margin of a boundary and then also
    # count for the next window (it might land there): measure from the one after.
    full_windows = range(started // 1000 + 2, stopped // 1000)
    assert len(full_windows) >= 2
    per_window = {index: 0 for index in full_windows}
    for at, weight in arrivals:
        if at // 1000 in per_window:
            per_window[at // 1000] += weight
    assert sum(per_window.values()) / (40 * len(full_windows)) >= 0.9, (started, per_window)
