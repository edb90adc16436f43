"""Orders under injected faults are never duplicated; 429 and 418 are honoured."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from client_testkit import MARKETS, MakeAdapter, Sleeps, StartEmulator

from keybroker.client import Adapter, ExchangeError, RetryPolicy
from keybroker.clock import FixedClock
from keybroker.emulator import EmulatorConfig, FaultSpec
from keybroker.emulator.faults import Fault, FaultPlan

START_MS = 1_795_000_040_000  # 20 s into a minute, so Binance's Retry-After is 40 s
FAST = RetryPolicy(tries=3, backoff=0.002, max_backoff=0.01, settle_margin=0.005)
FAULTS = "error5xx=0.1,drop_after_process=0.05,seed={seed}"


def _place_until_done(client: Adapter, symbol: str, side: str, quantity: str, coid: str) -> int:
    """What a bot does: on a retryable error, place again with the same client order id."""
    for attempt in range(1, 11):
        try:
            client.place_order(symbol, side, "market", quantity, client_order_id=coid)
            return attempt
        except ExchangeError as error:
            assert error.retryable, error
            assert error.client_order_id == coid
            if error.retry_after:
                time.sleep(error.retry_after)
    raise AssertionError(f"order {coid} never went through")


def _check_exactly_once(entries: list[dict[str, object]], expected: list[str]) -> None:
    placed = [order["client_order_id"] for e in entries for order in e["orders"]]  # type: ignore[attr-defined]
    duplicates = [coid for coid, n in Counter(placed).items() if n > 1]
    assert duplicates == []
    assert sorted(placed) == sorted(expected)
    faults = Counter(e["fault"] for e in entries)
    assert faults["error5xx"] > 0 and faults["drop_after_process"] > 0


@pytest.mark.slow
def test_1000_binance_orders_under_faults_leave_exactly_1000_orders(
    emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    config = EmulatorConfig(
        weight_limit=10_000_000,
        spot_orders_per_10s=1_000_000,
        faults=FaultSpec.parse(FAULTS.format(seed=11)),
    )
    venue = emulator("binance", config)
    client = adapter(venue, retry=FAST, request_window_ms=60)
    expected = [f"bulk{i:04d}" for i in range(1000)]
    calls = [
        _place_until_done(client, "BTCUSDT", "buy" if i % 2 == 0 else "sell", "0.0002", coid)
        for i, coid in enumerate(expected)
    ]
    entries = venue.journal()
    _check_exactly_once(entries, expected)
    # The faults really hit orders, and lost answers were found by lookup, not resent.
    order_posts = [e for e in entries if e["method"] == "POST"]
    assert len(order_posts) > 1000
    dropped = [e for e in order_posts if e["fault"] == "drop_after_process"]
    assert dropped and all(e["orders"] for e in dropped)
    assert sum(calls) >= 1000


def test_okx_orders_under_faults_are_placed_exactly_once(
    emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator("okx", EmulatorConfig(faults=FaultSpec.parse(FAULTS.format(seed=5))))
    client = adapter(venue, retry=FAST, request_window_ms=60)
    btc, eth, btc_quantity, eth_quantity, _ = MARKETS["okx"]
    expected = [f"okx{i:04d}" for i in range(100)]
    for i, coid in enumerate(expected):
        symbol, quantity = (btc, btc_quantity) if i % 2 == 0 else (eth, eth_quantity)
        _place_until_done(client, symbol, "buy" if i % 4 < 2 else "sell", quantity, coid)
    _check_exactly_once(venue.journal(), expected)


def _seed_for(wanted: list[Fault], spec: str) -> int:
    # The fault plan draws once per request, in order: find a seed giving this sequence.
    for seed in range(100_000):
        plan = FaultPlan(FaultSpec.parse(f"{spec},seed={seed}"))
        if [plan.draw(is_private=True, is_order=False) for _ in wanted] == wanted:
            return seed
    raise AssertionError("no seed gives that fault sequence")


def test_an_order_whose_fate_is_unknown_is_looked_up_before_it_is_placed_again(
    emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    # time: ok · order: placed, answer lost · lookups: 5xx, 5xx, 5xx · (second call) lookup: ok
    sequence = [Fault.NONE, Fault.DROP_AFTER_PROCESS] + [Fault.ERROR_5XX] * 3 + [Fault.NONE]
    spec = "error5xx=0.4,drop_after_process=0.3"
    seed = _seed_for(sequence, spec)
    venue = emulator("binance", EmulatorConfig(faults=FaultSpec.parse(f"{spec},seed={seed}")))
    client = adapter(venue, retry=FAST, request_window_ms=60)
    client.server_time()
    with pytest.raises(ExchangeError) as caught:
        client.place_order("BTCUSDT", "buy", "market", "0.0002", client_order_id="unsure1")
    error = caught.value
    assert error.outcome_unknown and error.retryable and error.client_order_id == "unsure1"
    assert error.code == "ExchangeUnavailable" and "may or may not" in str(error)
    assert [o["client_order_id"] for o in venue.orders()] == ["unsure1"]

    again = client.place_order("BTCUSDT", "buy", "market", "0.0002", client_order_id="unsure1")
    assert again.client_order_id == "unsure1" and again.status == "filled"
    entries = venue.journal()
    assert [e["method"] for e in entries[-1:]] == ["GET"]  # found by lookup, nothing sent
    assert [o["client_order_id"] for o in venue.orders()] == ["unsure1"]


@pytest.mark.parametrize("exchange", ["binance", "okx"])
def test_429_holds_requests_back_for_retry_after(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    clock = FixedClock(START_MS)  # one fake time for the emulator and the adapter
    venue = emulator(exchange, EmulatorConfig(weight_limit=10), clock=clock)
    sleeps = Sleeps(clock)
    client = adapter(venue, clock=clock, sleep=sleeps)
    symbol = MARKETS[exchange][0]
    # Binance: ticker weight 2, 10 per minute. OKX: 20 ticker requests per 2 s.
    budget = 5 if exchange == "binance" else 20
    for _ in range(budget):
        client.ticker(symbol)
    assert sleeps.waits == []
    client.ticker(symbol)  # the next one is refused with 429, waited out, then answered
    expected_wait = 40.0 if exchange == "binance" else 2.0
    assert sleeps.waits == [expected_wait]
    statuses = [e["status"] for e in venue.journal()]
    assert statuses == [200] * budget + [429, 200]


def test_429_makes_an_order_fail_at_once_without_being_sent(
    emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    clock = FixedClock(START_MS)
    venue = emulator("binance", EmulatorConfig(weight_limit=10), clock=clock)
    sleeps = Sleeps(clock)
    client = adapter(venue, clock=clock, sleep=sleeps, retry=RetryPolicy(max_retry_after=5))
    for _ in range(5):
        client.ticker("BTCUSDT")
    with pytest.raises(ExchangeError) as read:
        client.ticker("BTCUSDT")  # Retry-After (40 s) is longer than this bot waits
    assert read.value.code == "RateLimited" and read.value.retry_after == 40
    sent = len(venue.journal())
    with pytest.raises(ExchangeError) as order:
        client.place_order("BTCUSDT", "buy", "market", "0.0002", client_order_id="held1")
    assert order.value.code == "RateLimited" and "not sent" in str(order.value)
    assert len(venue.journal()) == sent and sleeps.waits == []
    clock.advance(40_000)
    client.place_order("BTCUSDT", "buy", "market", "0.0002", client_order_id="held1")
    assert [o["client_order_id"] for o in venue.orders()] == ["held1"]


def test_418_raises_ip_banned_with_the_ban_end_and_retries_nothing(
    emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    clock = FixedClock(START_MS)
    venue = emulator("binance", EmulatorConfig(weight_limit=10, ban_after=2), clock=clock)
    with httpx.Client(base_url=venue.url) as careless:  # another bot on this IP ignores 429
        statuses = [careless.get("/api/v3/ticker/price").status_code for _ in range(9)]
    assert statuses[-1] == 418
    sleeps = Sleeps(clock)
    client = adapter(venue, clock=clock, sleep=sleeps)
    before = len(venue.journal())
    with pytest.raises(ExchangeError) as caught:
        client.ticker("BTCUSDT")
    error = caught.value
    assert error.code == "IPBanned" and error.status == 418 and not error.retryable
    assert error.ban_until_ms == START_MS + 120_000
    assert len(venue.journal()) == before + 1 and sleeps.waits == []
    with pytest.raises(ExchangeError) as still:
        client.place_order("BTCUSDT", "buy", "market", "0.0002")
    assert still.value.code == "IPBanned" and "not sent" in str(still.value)
    assert len(venue.journal()) == before + 1
