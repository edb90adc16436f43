"""Weighted budget arithmetic, pure: every method takes the time, nothing reads a clock.

    >>> bucket = WindowBucket(capacity=1200, window_ms=60_000, margin_ms=1_000)
    >>> bucket.wait_ms(20, now_ms=0)          # 0: it fits now
    >>> bucket.take(20, now_ms=0)
    >>> bucket.used(now_ms=30_000)            # 20.0

Three shapes of budget, chosen by ``RateLimit.decaying`` and ``fixed_window``:

``FixedWindowBucket``: at most ``capacity`` in each window that starts on a
multiple of ``window_ms`` (Binance's calendar minute, its 10 s and its day).
A request may reach the exchange up to ``margin_ms`` before or after the
moment it was let through (network jitter, and the offset between our clock
and theirs), so a spend within ``margin_ms`` of a boundary counts in both
windows it might land in. The budget is then used to the last unit: once a
window's budget is spent, the next one opens ``margin_ms`` after its start.

``WindowBucket``: at most ``capacity`` in any window of ``window_ms``, for
exchanges that count over a sliding or rolling window (OKX per 2 s, Bybit per
second). A classic refilling token bucket would be wrong against these and
against fixed windows alike: one full at a window's end and refilled through
the next lets almost twice the limit into one window. So this keeps what was
spent, in small time slots, and lets a charge in only if the spend in the
last ``window_ms + margin_ms`` leaves room for it; at full speed the spend is
``capacity`` per ``window_ms + margin_ms``.

``DecayingCounter``: Kraken's own model, a counter raised by each call and
drained at a constant rate; a call may go while the counter stays at or
below ``capacity``. Here it drains a little slower than Kraken's (the same
margin), so ours is never below theirs.

Amounts are floats (weights), times integer milliseconds. ``wait_ms`` answers
"how long until this amount fits if nobody else takes anything", which the
limiter uses both to sleep and to refuse at once what cannot fit before a
deadline; it is None for an amount larger than the whole budget.

``correct`` takes the exchange's own count from a usage header. It only ever
raises ours: a reading below our count leaves out our requests still in
flight, and a reading may be up to a quarter window (at most 15 s) old, so
one that our own spending in that span explains says nothing new.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

from keybroker.exchanges.base import RateLimit

# Float sums of weights are exact for integers; this only forgives the last
# bit of a fractional rate.
_EPSILON = 1e-9
# Windows are kept in at most about this many slots (memory and time per call
# stay small even for a daily limit).
_SLOTS_PER_WINDOW = 50
_LONGEST_MARGIN_MS = 1_000
_OLDEST_READING_MS = 15_000


def _reading_age_ms(window_ms: int) -> int:
    # How old a usage reading may be when it arrives (the response's latency).
    return min(_OLDEST_READING_MS, window_ms // 4)


def default_margin_ms(limit: RateLimit) -> int:
    """Jitter allowance for ``limit``: 5 % of its window, at most one second."""
    return min(_LONGEST_MARGIN_MS, int(limit.per_seconds * 1000 * 0.05))


class Bucket(Protocol):
    """What the limiter asks of a budget, whatever its shape."""

    capacity: float

    def used(self, now_ms: int) -> float: ...
    def wait_ms(self, amount: float, now_ms: int) -> int | None: ...
    def take(self, amount: float, now_ms: int) -> None: ...
    def correct(self, used: float, now_ms: int) -> None: ...
    def reconfigure(self, capacity: float) -> None: ...


def _slot_ms(window_ms: int) -> int:
    # The largest slot of at most 1/50 of the window that divides it, so fixed
    # windows start on a slot boundary and a slot never straddles two windows.
    target = max(1, window_ms // _SLOTS_PER_WINDOW)
    for size in range(target, 0, -1):
        if window_ms % size == 0:
            return size
    return 1


class WindowBucket:
    """At most ``capacity`` spent in any ``window_ms + margin_ms`` (see the module docstring)."""

    __slots__ = ("_slots", "_total", "capacity", "margin_ms", "slot_ms", "window_ms")

    def __init__(self, capacity: float, window_ms: int, *, margin_ms: int = 0) -> None:
        if capacity <= 0 or window_ms <= 0 or margin_ms < 0:
            raise ValueError("a window needs a positive capacity and length")
        self.capacity = float(capacity)
        self.window_ms = int(window_ms)
        self.margin_ms = int(margin_ms)
        self.slot_ms = _slot_ms(self.window_ms)
        # (slot index, amount spent in it), oldest first.
        self._slots: deque[list[float]] = deque()
        self._total = 0.0

    def _expiry(self, slot: float) -> int:
        # Counted from the slot's END, so every spend in it stays at least
        # window + margin after the moment it really happened.
        return (int(slot) + 1) * self.slot_ms + self.window_ms + self.margin_ms

    def _expire(self, now_ms: int) -> None:
        slots = self._slots
        while slots and self._expiry(slots[0][0]) <= now_ms:
            self._total -= slots.popleft()[1]
        if not slots:
            self._total = 0.0  # no drift from float subtraction

    def used(self, now_ms: int) -> float:
        """What counts against the budget at ``now_ms``."""
        self._expire(now_ms)
        return self._total

    def wait_ms(self, amount: float, now_ms: int) -> int | None:
        """Milliseconds until ``amount`` fits (0: now); None if it never can."""
        if amount > self.capacity + _EPSILON:
            return None
        self._expire(now_ms)
        excess = self._total + amount - self.capacity
        if excess <= _EPSILON:
            return 0
        for slot, spent in self._slots:
            excess -= spent
            if excess <= _EPSILON:
                return max(1, self._expiry(slot) - now_ms)
        return None  # unreachable: the whole window expiring frees everything

    def take(self, amount: float, now_ms: int) -> None:
        """Record a spend at ``now_ms`` (the caller checked ``wait_ms`` first)."""
        self._expire(now_ms)
        if amount <= 0:
            return
        slot = now_ms // self.slot_ms
        if self._slots and self._slots[-1][0] >= slot:
            # A clock that stepped back joins the newest slot rather than
            # reordering the deque.
            self._slots[-1][1] += amount
        else:
            self._slots.append([slot, amount])
        self._total += amount

    def correct(self, used: float, now_ms: int) -> None:
        """Raise our count to the exchange's reading for its last ``window_ms``, never lower it.

        If the reading is more than we spent over that window (stretched by
        the reading's possible age), someone else spends from the same budget
        (another program on this IP, a second gateway) and the difference is
        recorded as spent now.
        """
        self._expire(now_ms)
        since = now_ms - self.window_ms - _reading_age_ms(self.window_ms)
        ours = sum(spent for slot, spent in self._slots if (slot + 1) * self.slot_ms > since)
        missing = used - ours
        if missing > _EPSILON:
            self.take(missing, now_ms)

    def reconfigure(self, capacity: float) -> None:
        self.capacity = float(capacity)


class FixedWindowBucket:
    """At most ``capacity`` per window starting on multiples of ``window_ms`` (see the module)."""

    __slots__ = ("_counts", "_oldest", "capacity", "margin_ms", "window_ms")

    def __init__(self, capacity: float, window_ms: int, *, margin_ms: int = 0) -> None:
        if capacity <= 0 or window_ms <= 0 or margin_ms < 0:
            raise ValueError("a window needs a positive capacity and length")
        self.capacity = float(capacity)
        self.window_ms = int(window_ms)
        self.margin_ms = int(margin_ms)
        # window index -> what may land in it, as far as we know
        self._counts: dict[int, float] = {}
        self._oldest = -(2**63)

    def _windows(self, at_ms: int) -> range:
        # Every window a request let through at ``at_ms`` may land in.
        return range(
            (at_ms - self.margin_ms) // self.window_ms,
            (at_ms + self.margin_ms) // self.window_ms + 1,
        )

    def _forget(self, now_ms: int) -> None:
        # The window before the oldest one a spend can still touch is kept for
        # ``correct``, which may get a late reading about it.
        oldest = (now_ms - self.margin_ms) // self.window_ms - 1
        if oldest > self._oldest:
            self._oldest = oldest
            for index in [i for i in self._counts if i < oldest]:
                del self._counts[index]

    def _fits(self, amount: float, at_ms: int) -> bool:
        limit = self.capacity + _EPSILON
        return all(self._counts.get(i, 0.0) + amount <= limit for i in self._windows(at_ms))

    def used(self, now_ms: int) -> float:
        """What counts against the window ``now_ms`` is in."""
        self._forget(now_ms)
        return self._counts.get(now_ms // self.window_ms, 0.0)

    def wait_ms(self, amount: float, now_ms: int) -> int | None:
        if amount > self.capacity + _EPSILON:
            return None
        self._forget(now_ms)
        if self._fits(amount, now_ms):
            return 0
        # The set of windows a spend touches shrinks only when its start moves
        # past a boundary, at index * window + margin; beyond the last window
        # counted so far everything fits.
        index = (now_ms - self.margin_ms) // self.window_ms
        last = max(self._counts, default=index)
        while index <= last:
            index += 1
            at = max(now_ms, index * self.window_ms + self.margin_ms)
            if self._fits(amount, at):
                return max(1, at - now_ms)
        return None  # unreachable: past the last counted window nothing is spent

    def take(self, amount: float, now_ms: int) -> None:
        self._forget(now_ms)
        if amount <= 0:
            return
        for index in self._windows(now_ms):
            self._counts[index] = self._counts.get(index, 0.0) + amount

    def correct(self, used: float, now_ms: int) -> None:
        """Raise this window's count to the exchange's reading, never lower it.

        Early in a window the reading may still be about the previous one
        (its response was on its way): a reading our count for either window
        explains is no news. One above both means someone else spends from
        this budget, and it is taken as this window's.
        """
        self._forget(now_ms)
        index = now_ms // self.window_ms
        candidates = [index]
        if now_ms - index * self.window_ms < _reading_age_ms(self.window_ms) + self.margin_ms:
            candidates.append(index - 1)
        if used > max(self._counts.get(i, 0.0) for i in candidates) + _EPSILON:
            self._counts[index] = max(self._counts.get(index, 0.0), used)

    def reconfigure(self, capacity: float) -> None:
        self.capacity = float(capacity)


class DecayingCounter:
    """A counter raised by each spend and drained at ``capacity / (window + margin)`` per ms."""

    __slots__ = ("_last_ms", "_level", "capacity", "decay_per_ms", "margin_ms", "window_ms")

    def __init__(self, capacity: float, window_ms: int, *, margin_ms: int = 0) -> None:
        if capacity <= 0 or window_ms <= 0 or margin_ms < 0:
            raise ValueError("a counter needs a positive capacity and drain time")
        self.capacity = float(capacity)
        self.window_ms = int(window_ms)
        self.margin_ms = int(margin_ms)
        self.decay_per_ms = self.capacity / (self.window_ms + self.margin_ms)
        self._level = 0.0
        self._last_ms: int | None = None

    def _drain(self, now_ms: int) -> None:
        if self._last_ms is not None and now_ms > self._last_ms:
            self._level = max(0.0, self._level - (now_ms - self._last_ms) * self.decay_per_ms)
        if self._last_ms is None or now_ms > self._last_ms:
            self._last_ms = now_ms

    def used(self, now_ms: int) -> float:
        self._drain(now_ms)
        return self._level

    def wait_ms(self, amount: float, now_ms: int) -> int | None:
        if amount > self.capacity + _EPSILON:
            return None
        self._drain(now_ms)
        excess = self._level + amount - self.capacity
        if excess <= _EPSILON:
            return 0
        # Forgive float noise in the division: a millisecond early only means one more look.
        return max(1, math.ceil(excess / self.decay_per_ms - 1e-6))

    def take(self, amount: float, now_ms: int) -> None:
        self._drain(now_ms)
        self._level += max(0.0, amount)

    def correct(self, used: float, now_ms: int) -> None:
        """Raise the counter to the exchange's reading, never lower it."""
        self._drain(now_ms)
        self._level = max(self._level, used)

    def reconfigure(self, capacity: float) -> None:
        self.capacity = float(capacity)
        self.decay_per_ms = self.capacity / (self.window_ms + self.margin_ms)


def make_bucket(limit: RateLimit, *, margin_ms: int | None = None) -> Bucket:
    """The bucket shape ``limit`` describes, with ``margin_ms`` (default: default_margin_ms)."""
    margin = default_margin_ms(limit) if margin_ms is None else margin_ms
    window_ms = max(1, round(limit.per_seconds * 1000))
    if limit.decaying:
        return DecayingCounter(limit.capacity, window_ms, margin_ms=margin)
    if limit.fixed_window:
        return FixedWindowBucket(limit.capacity, window_ms, margin_ms=margin)
    return WindowBucket(limit.capacity, window_ms, margin_ms=margin)
