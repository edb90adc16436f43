"""Budget arithmetic: no exchange window sees more than the capacity, and the budget is used."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.exchanges.base import RateLimit
from keybroker.ratelimit.bucket import (
    Bucket,
    DecayingCounter,
    FixedWindowBucket,
    WindowBucket,
    default_margin_ms,
    make_bucket,
)

# (milliseconds to move the clock on, amount to try to take)
steps = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 12)),
    min_size=1,
    max_size=120,
)


def _taken_by(bucket: Bucket, plan: list[tuple[int, int]]) -> list[tuple[int, int]]:
    now, taken = 0, []
    for advance, amount in plan:
        now += advance
        if bucket.wait_ms(amount, now) == 0:
            bucket.take(amount, now)
            taken.append((now, amount))
    return taken


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 40),
    window_ms=st.integers(1, 2_000),
    margin_ms=st.integers(0, 300),
    plan=steps,
)
def test_no_window_anywhere_sees_more_than_the_capacity(
    capacity: int, window_ms: int, margin_ms: int, plan: list[tuple[int, int]]
) -> None:
    bucket = WindowBucket(capacity, window_ms, margin_ms=margin_ms)
    taken = _taken_by(bucket, plan)
    # The busiest window of length window_ms (sliding, so fixed ones too) starts at a take.
    for start, _ in taken:
        in_window = sum(amount for at, amount in taken if start <= at < start + window_ms)
        assert in_window <= capacity


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 40),
    window_ms=st.integers(1, 2_000),
    margin_ms=st.integers(0, 300),
    plan=steps,
    jitter=st.lists(st.integers(0, 300), min_size=120, max_size=120),
)
def test_the_margin_absorbs_the_jitter_before_a_request_arrives(
    capacity: int, window_ms: int, margin_ms: int, plan: list[tuple[int, int]], jitter: list[int]
) -> None:
    # Each request reaches the exchange up to ``margin_ms`` after it was taken.
    bucket = WindowBucket(capacity, window_ms, margin_ms=margin_ms)
    taken = _taken_by(bucket, plan)
    arrivals = [(at + jitter[i] % (margin_ms + 1), amount) for i, (at, amount) in enumerate(taken)]
    for start, _ in arrivals:
        in_window = sum(amount for at, amount in arrivals if start <= at < start + window_ms)
        assert in_window <= capacity


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 40),
    window_ms=st.integers(1, 2_000),
    margin_ms=st.integers(0, 300),
    plan=steps,
    offsets=st.lists(st.integers(-300, 300), min_size=120, max_size=120),
)
def test_no_fixed_window_sees_more_than_the_capacity_whatever_the_offset(
    capacity: int, window_ms: int, margin_ms: int, plan: list[tuple[int, int]], offsets: list[int]
) -> None:
    # Arrival on the exchange's clock: up to margin_ms before or after the spend
    # on ours (jitter, and the two clocks' offset).
    bucket = FixedWindowBucket(capacity, window_ms, margin_ms=margin_ms)
    taken = _taken_by(bucket, plan)
    per_window: dict[int, int] = {}
    for i, (at, amount) in enumerate(taken):
        offset = max(-margin_ms, min(margin_ms, offsets[i]))
        index = (at + offset) // window_ms
        per_window[index] = per_window.get(index, 0) + amount
    assert all(total <= capacity for total in per_window.values())


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 30),
    window_ms=st.integers(10, 5_000),
    margin_ms=st.integers(0, 300),
    plan=steps,
)
def test_a_decaying_counter_stays_under_the_exchanges_own(
    capacity: int, window_ms: int, margin_ms: int, plan: list[tuple[int, int]]
) -> None:
    # Kraken's counter drains at capacity / window per ms; ours a little slower.
    ours = DecayingCounter(capacity, window_ms, margin_ms=margin_ms)
    theirs, last = 0.0, 0
    for at, amount in _taken_by(ours, plan):
        theirs = max(0.0, theirs - (at - last) * capacity / window_ms) + amount
        last = at
        assert theirs <= capacity + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 40),
    window_ms=st.integers(1, 2_000),
    margin_ms=st.integers(0, 300),
    shape=st.sampled_from([WindowBucket, FixedWindowBucket, DecayingCounter]),
    plan=steps,
    amount=st.integers(1, 40),
)
def test_after_waiting_wait_ms_the_amount_fits(
    capacity: int,
    window_ms: int,
    margin_ms: int,
    shape: type[WindowBucket | FixedWindowBucket | DecayingCounter],
    plan: list[tuple[int, int]],
    amount: int,
) -> None:
    bucket = shape(capacity, window_ms, margin_ms=margin_ms)
    _taken_by(bucket, plan)
    now = sum(advance for advance, _ in plan)
    wait = bucket.wait_ms(amount, now)
    if amount > capacity:
        assert wait is None
        return
    assert wait is not None
    # Asked in time order: a bucket forgets what has expired.
    if wait > 1:
        assert bucket.wait_ms(amount, now + wait - 1) != 0
    assert bucket.wait_ms(amount, now + wait) == 0


@pytest.mark.parametrize("shape, share", [(FixedWindowBucket, 0.99), (WindowBucket, 0.95)])
def test_at_full_speed_the_budget_is_used(
    shape: type[FixedWindowBucket | WindowBucket], share: float
) -> None:
    # Binance's minute with the default one-second margin, ten minutes long.
    bucket = shape(1200, 60_000, margin_ms=1_000)
    taken = 0.0
    for now in range(0, 600_000, 10):
        while bucket.wait_ms(6, now) == 0:
            bucket.take(6, now)
            taken += 6
    assert taken / (1200 * 10) >= share


def test_more_than_the_whole_budget_never_fits() -> None:
    assert WindowBucket(10, 1_000).wait_ms(11, 0) is None
    assert FixedWindowBucket(10, 1_000).wait_ms(11, 0) is None
    assert DecayingCounter(15, 45_000).wait_ms(16, 0) is None
    assert WindowBucket(10, 1_000).wait_ms(10, 0) == 0


def test_a_fixed_window_correction_raises_this_windows_count() -> None:
    bucket = FixedWindowBucket(1200, 60_000, margin_ms=1_000)
    bucket.take(100, 70_000)
    # The exchange says 150 in this minute: 50 came from someone else.
    bucket.correct(150, 80_000)
    assert bucket.used(80_000) == 150
    # A lower reading (our requests still in flight) changes nothing.
    bucket.correct(20, 80_500)
    assert bucket.used(80_500) == 150
    # Some other program spent the rest of the minute: nothing fits until the next.
    bucket.correct(1200, 90_000)
    assert bucket.wait_ms(1, 90_000) == 120_000 + 1_000 - 90_000


def test_a_late_reading_about_the_last_window_does_not_close_the_new_one() -> None:
    bucket = FixedWindowBucket(1200, 60_000, margin_ms=1_000)
    bucket.take(1190, 50_000)
    # Its response arrives after the minute turned: our own 1,190 explain it.
    bucket.correct(1190, 61_500)
    assert bucket.wait_ms(1000, 61_500) == 0
    # Twenty seconds in, a reading is about this minute.
    bucket.correct(1190, 80_000)
    assert bucket.wait_ms(20, 80_000) != 0


def test_a_fixed_window_opens_the_next_one_after_the_margin() -> None:
    bucket = FixedWindowBucket(10, 1_000, margin_ms=50)
    bucket.take(10, 100)
    assert bucket.wait_ms(1, 500) == 1_050 - 500
    # Near the boundary a spend counts in both windows it may land in.
    bucket.take(4, 1_980)
    assert bucket.used(2_000) == 4
    assert bucket.wait_ms(6, 2_100) == 0
    assert bucket.wait_ms(7, 2_100) != 0


def test_a_rolling_correction_counts_the_last_window() -> None:
    bucket = WindowBucket(10, 1_000)
    bucket.take(4, 0)
    bucket.correct(4, 500)
    assert bucket.used(500) == 4
    bucket.correct(9, 600)
    assert bucket.used(600) == 9
    assert bucket.wait_ms(2, 600) != 0


def test_a_decaying_correction_raises_the_counter_only() -> None:
    counter = DecayingCounter(15, 45_000)
    counter.take(3, 0)
    counter.correct(10, 0)
    assert counter.used(0) == 10
    counter.correct(2, 0)
    assert counter.used(0) == 10


def test_a_clock_that_steps_back_does_not_free_the_budget() -> None:
    bucket = WindowBucket(5, 1_000)
    bucket.take(5, 10_000)
    assert bucket.wait_ms(1, 9_000) != 0


def test_shapes_and_margins_follow_the_limit() -> None:
    window = RateLimit("W", 100, 10, "requests", "ip", fixed_window=True)
    decaying = RateLimit("D", 15, 45, "weight", "account", decaying=True)
    assert isinstance(make_bucket(window), FixedWindowBucket)
    assert isinstance(make_bucket(RateLimit("R", 5, 2, "requests", "ip")), WindowBucket)
    assert isinstance(make_bucket(decaying), DecayingCounter)
    assert default_margin_ms(window) == 500
    assert default_margin_ms(RateLimit("M", 1200, 60, "weight", "ip")) == 1_000
    assert default_margin_ms(RateLimit("S", 10, 1, "requests", "ip")) == 50


@pytest.mark.parametrize("capacity, window_ms", [(0, 1000), (5, 0), (-1, 10)])
def test_nonsense_budgets_are_refused(capacity: int, window_ms: int) -> None:
    with pytest.raises(ValueError):
        WindowBucket(capacity, window_ms)
    with pytest.raises(ValueError):
        DecayingCounter(capacity, window_ms)
    with pytest.raises(ValueError):
        FixedWindowBucket(capacity, window_ms)
