"""FactCache: what the exchange said, plus the gateway's own orders since it asked."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx

from keybroker.clock import FixedClock
from keybroker.gateway.facts import FactCache
from keybroker.gateway.upstream import Failure, Received

KEY = ("binance:abc", "https://api.binance.com/api/v3/openOrders")
QUERY = httpx.Request("GET", KEY[1])


def test_orders_allowed_while_a_query_was_on_its_way_are_added_to_its_answer() -> None:
    clock = FixedClock(1_000_000)
    cache = FactCache(clock)
    asked = clock.now_ms()
    clock.advance(10)
    cache.add(KEY, Decimal(1))  # allowed after the query left: the answer may not hold it
    clock.advance(10)
    assert cache.keep(KEY, Decimal(3), asked) == 4
    cache.add(KEY, Decimal(2))
    assert cache.fresh(KEY, Decimal(0), Decimal(10)) == 6
    # A later answer counts only what was allowed after it was asked for.
    clock.advance(100)
    assert cache.keep(KEY, Decimal(5), clock.now_ms()) == 5


def test_a_kept_value_expires_and_one_that_would_refuse_is_rechecked_sooner() -> None:
    clock = FixedClock(1_000_000)
    cache = FactCache(clock, max_age_ms=5000, recheck_ms=1000)
    cache.keep(KEY, Decimal(2), clock.now_ms())
    clock.advance(1500)
    assert cache.fresh(KEY, Decimal(1), Decimal(5)) == 2  # would allow: still good
    assert cache.fresh(KEY, Decimal(1), Decimal(2)) is None  # would refuse: ask again
    clock.advance(4000)
    assert cache.fresh(KEY, Decimal(1), Decimal(5)) is None  # too old for anything


def test_forget_drops_every_answer_of_the_account_only() -> None:
    clock = FixedClock(1_000_000)
    cache = FactCache(clock)
    other = ("binance:def", KEY[1])
    position = (KEY[0], "https://fapi.binance.com/fapi/v2/positionRisk?symbol=BTCUSDT")
    for key in (KEY, other, position):
        cache.keep(key, Decimal(1), clock.now_ms())
    cache.forget(KEY[0])
    assert cache.fresh(KEY, Decimal(0), Decimal(9)) is None
    assert cache.fresh(position, Decimal(0), Decimal(9)) is None
    assert cache.fresh(other, Decimal(0), Decimal(9)) == 1


def test_concurrent_askers_share_one_query() -> None:
    cache = FactCache(FixedClock(0))
    sent: list[httpx.Request] = []

    async def read(query: httpx.Request) -> Received | Failure | None:
        sent.append(query)
        await asyncio.sleep(0.01)
        return Received(200, (), b"[]", 1.0)

    async def main() -> list[tuple[int, Received | Failure | None]]:
        return await asyncio.gather(*(cache.ask(KEY, QUERY, read) for _ in range(5)))

    answers = asyncio.run(main())
    assert len(sent) == 1 and all(outcome is answers[0][1] for _, outcome in answers)
