"""The in-process limiter: budgets in memory, waiters served in turn, one per bot.

    >>> limiter = MemoryLimiter(limit_overrides={"binance:REQUEST_WEIGHT": 1200})
    >>> await limiter.acquire(charges, fairness_key="bot-7")      # waits, or raises RateLimited
    >>> limiter.observe(request_prefix(charges), profile.read_usage(response.headers))

Waiting is fair between bots, not between requests: each fairness key (a bot
token) has its own queue, and the queues take turns, the one served longest
ago first. A waiter that cannot go yet holds its place on every budget it
needs, so a heavy request is not starved by a stream of light ones behind
it; waiters on budgets it does not touch go past it. A waiter still queued at
its deadline, or one that provably cannot go before it (a 429 pause, a 418
ban, a spent daily budget), gets ``errors.RateLimited`` with ``retry_after``
and never reaches the exchange.

All methods are for one event loop (the gateway's); the sync ones may be
called from it between awaits. Time comes from the injected clock (ms since
the epoch, as the 418 ban's end is); asyncio's timers only wake the queue up.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keybroker.clock import Clock, SystemClock
from keybroker.errors import RateLimited
from keybroker.exchanges.base import RateLimit
from keybroker.ratelimit.bucket import Bucket, make_bucket
from keybroker.ratelimit.charges import Charge, apply_overrides, owners_of


@dataclass(slots=True)
class _Budget:
    limit: RateLimit
    bucket: Bucket


@dataclass(slots=True)
class _Spend:
    key: str
    amount: float
    budget: _Budget
    host: str


@dataclass(slots=True)
class _Waiter:
    spends: list[_Spend]
    keys: frozenset[str]
    fairness_key: str
    deadline_ms: int
    since_ms: int
    future: asyncio.Future[None]


@dataclass(slots=True)
class _Counters:
    granted: int = 0
    waited: int = 0
    rejected: int = 0
    wait_ms_total: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class MemoryLimiter:
    """Weighted budgets for one gateway process (see the module docstring).

    ``limit_overrides`` replace capacities as in ``charges_for`` (keys: a
    charge key, ``exchange:NAME`` or ``NAME``); ``margin_ms`` replaces the
    default jitter allowance of every budget (``bucket.default_margin_ms``).
    Budgets nobody has spent from recently are forgotten once there are more
    than ``max_budgets``.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        limit_overrides: Mapping[str, float] | None = None,
        margin_ms: int | None = None,
        max_budgets: int = 10_000,
    ) -> None:
        self._clock = clock or SystemClock()
        self._overrides = dict(limit_overrides or {})
        self._margin_ms = margin_ms
        self._max_budgets = max_budgets
        self._budgets: dict[str, _Budget] = {}
        self._pauses: dict[str, int] = {}  # key prefix -> until ms
        self._breakers: dict[str, int] = {}  # host -> until ms
        # fairness key -> its waiters; dict order is the order of turns.
        self._queues: dict[str, deque[_Waiter]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due_ms = math.inf
        self._counters = _Counters()

    # -- the Limiter protocol ----------------------------------------------------------------
    async def acquire(
        self, charges: Sequence[Charge], *, fairness_key: str, deadline_s: float = 10.0
    ) -> None:
        """Wait until every charge fits, then spend them all at once.

        Raises RateLimited (with ``retry_after`` seconds where known) at the
        deadline, at once when the charges cannot fit before it, and at once
        for a charge larger than its whole budget (retry_after None).
        """
        self._loop = asyncio.get_running_loop()
        now = self._clock.now_ms()
        spends = self._spends(charges, now)
        if not spends:
            return
        deadline_ms = now + max(0, math.ceil(deadline_s * 1000))
        wait = self._wait_ms(spends, now)
        if now + wait > deadline_ms:
            raise self._refusal(spends, now, wait, "hopeless")
        if wait == 0 and not self._queues:
            self._spend(spends, now)
            self._counters.granted += 1
            return
        waiter = _Waiter(
            spends,
            frozenset(spend.key for spend in spends),
            fairness_key,
            deadline_ms,
            now,
            self._loop.create_future(),
        )
        self._queues.setdefault(fairness_key, deque()).append(waiter)
        self._dispatch()
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._drop(waiter)
            raise

    def observe(self, key_prefix: str, usage: Mapping[str, float]) -> None:
        """Correct budgets from an exchange's usage headers ({limit name: used}).

        The budgets corrected are those named in ``usage`` whose owner is
        ``key_prefix`` or lies above it: pass ``request_prefix(charges)`` of
        the request whose response carried the headers, so its IP-, account-
        and endpoint-wide budgets are corrected and other accounts' are not.
        A count is only ever raised (see ``WindowBucket.correct``).
        """
        if not usage:
            return
        now = self._clock.now_ms()
        owners = owners_of(key_prefix)
        for name, used in usage.items():
            for owner in owners:
                budget = self._budgets.get(f"{owner}:{name}")
                if budget is not None:
                    budget.bucket.correct(float(used), now)
        self._kick()

    def pause(self, key_prefix: str, seconds: float) -> None:
        """Spend nothing from any budget under ``key_prefix`` for ``seconds`` (a 429's Retry-After).

        ``host_prefix(exchange, environment, host)`` pauses a whole host; a
        longer account or endpoint prefix pauses only that part.
        """
        until = self._clock.now_ms() + max(0, math.ceil(seconds * 1000))
        self._pauses[key_prefix] = max(until, self._pauses.get(key_prefix, 0))
        self._kick()

    def open_breaker(self, host: str, until_ms: int) -> None:
        """Send nothing to ``host`` until ``until_ms`` (a 418 ban's end, ms since the epoch)."""
        self._breakers[host] = max(int(until_ms), self._breakers.get(host, 0))
        self._kick()

    def breaker_until(self, host: str) -> int | None:
        """When ``host``'s ban ends (ms since the epoch), or None if it is not banned now."""
        until = self._breakers.get(host)
        if until is None:
            return None
        if until <= self._clock.now_ms():
            del self._breakers[host]
            return None
        return until

    def snapshot(self) -> list[dict[str, object]]:
        """Every budget, pause and breaker, plus totals; plain values for /_/status and metrics."""
        now = self._clock.now_ms()
        waiting: dict[str, int] = {}
        for queue in self._queues.values():
            for waiter in queue:
                for key in waiter.keys:
                    waiting[key] = waiting.get(key, 0) + 1
        rows: list[dict[str, object]] = []
        for key, budget in sorted(self._budgets.items()):
            used = budget.bucket.used(now)
            rows.append(
                {
                    "type": "budget",
                    "key": key,
                    "name": budget.limit.name,
                    "scope": budget.limit.scope,
                    "counts": budget.limit.counts,
                    "capacity": budget.bucket.capacity,
                    "per_seconds": budget.limit.per_seconds,
                    "used": round(used, 6),
                    "available": round(max(0.0, budget.bucket.capacity - used), 6),
                    "paused_until_ms": self._paused_until(key, now),
                    "waiting": waiting.get(key, 0),
                }
            )
        for prefix, until in sorted(self._pauses.items()):
            if until > now:
                rows.append({"type": "pause", "key": prefix, "until_ms": until})
        for host in sorted(self._breakers):
            until_ms = self.breaker_until(host)
            if until_ms is not None:
                rows.append({"type": "breaker", "host": host, "until_ms": until_ms})
        counters = self._counters
        rows.append(
            {
                "type": "totals",
                "granted": counters.granted,
                "waited": counters.waited,
                "rejected": counters.rejected,
                "wait_ms_total": counters.wait_ms_total,
                "waiting": sum(len(queue) for queue in self._queues.values()),
                "rejected_by_reason": dict(counters.by_reason),
            }
        )
        return rows

    # -- budgets -----------------------------------------------------------------------------
    def _spends(self, charges: Sequence[Charge], now: int) -> list[_Spend]:
        spends: list[_Spend] = []
        for charge in charges:
            if charge.amount <= 0:
                continue
            exchange = charge.key.split(":", 1)[0]
            limit = apply_overrides(charge.limit, charge.key, exchange, self._overrides)
            if limit is None:
                continue
            spends.append(
                _Spend(charge.key, charge.amount, self._budget(charge.key, limit, now), charge.host)
            )
        return spends

    def _budget(self, key: str, limit: RateLimit, now: int) -> _Budget:
        budget = self._budgets.get(key)
        if budget is not None:
            if budget.limit is limit or budget.limit == limit:
                return budget
            old = budget.limit
            if (old.per_seconds, old.decaying, old.fixed_window) == (
                limit.per_seconds,
                limit.decaying,
                limit.fixed_window,
            ):
                budget.bucket.reconfigure(limit.capacity)
                budget.limit = limit
                return budget
        if budget is None and len(self._budgets) >= self._max_budgets:
            self._forget_idle(now)
        budget = _Budget(limit, make_bucket(limit, margin_ms=self._margin_ms))
        self._budgets[key] = budget
        return budget

    def _forget_idle(self, now: int) -> None:
        busy = {key for queue in self._queues.values() for w in queue for key in w.keys}
        for key in [
            k for k, b in self._budgets.items() if k not in busy and b.bucket.used(now) == 0
        ]:
            del self._budgets[key]

    def _paused_until(self, key: str, now: int) -> int | None:
        latest: int | None = None
        for prefix, until in list(self._pauses.items()):
            if until <= now:
                del self._pauses[prefix]
            elif key == prefix or key.startswith(prefix + ":"):
                latest = until if latest is None else max(latest, until)
        return latest

    def _wait_ms(self, spends: Sequence[_Spend], now: int) -> float:
        """How long until all of ``spends`` fit, were nobody else waiting; inf if never."""
        longest = 0.0
        for spend in spends:
            wait = spend.budget.bucket.wait_ms(spend.amount, now)
            if wait is None:
                return math.inf
            longest = max(longest, wait)
            if self._pauses:
                paused = self._paused_until(spend.key, now)
                if paused is not None:
                    longest = max(longest, paused - now)
            if spend.host and self._breakers:
                banned = self.breaker_until(spend.host)
                if banned is not None:
                    longest = max(longest, banned - now)
        return longest

    def _spend(self, spends: Sequence[_Spend], now: int) -> None:
        for spend in spends:
            spend.budget.bucket.take(spend.amount, now)

    def _refusal(self, spends: Sequence[_Spend], now: int, wait: float, reason: str) -> RateLimited:
        counters = self._counters
        counters.rejected += 1
        counters.by_reason[reason] = counters.by_reason.get(reason, 0) + 1
        for spend in spends:
            if spend.amount > spend.budget.bucket.capacity:
                return RateLimited(
                    f"rate limit {spend.budget.limit.name}: a request costing {spend.amount:g} "
                    f"exceeds the whole budget of {spend.budget.bucket.capacity:g} "
                    f"per {spend.budget.limit.per_seconds:g} s ({spend.key})"
                )
        for spend in spends:
            if spend.host and self.breaker_until(spend.host) is not None:
                return RateLimited(
                    f"{spend.host} banned this IP (HTTP 418): nothing is sent until the ban ends",
                    retry_after=max(0.001, wait / 1000),
                )
        names = sorted({spend.budget.limit.name for spend in spends})
        what = (
            "waited until its deadline"
            if reason == "deadline"
            else "cannot fit before its deadline"
        )
        return RateLimited(
            f"rate limit {', '.join(names)} reached; the request {what}",
            retry_after=max(0.001, math.ceil(wait) / 1000) if math.isfinite(wait) else None,
        )

    # -- the queue ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Grant in turn every waiter that fits; refuse the hopeless and the late; set the timer."""
        now = self._clock.now_ms()
        progress = True
        wake = math.inf
        while progress:
            progress = False
            wake = math.inf
            blocked: set[str] = set()
            for fairness_key in list(self._queues):
                queue = self._queues.get(fairness_key)
                if not queue:
                    continue
                waiter = queue[0]
                if not blocked.isdisjoint(waiter.keys):
                    blocked |= waiter.keys  # keeps its place behind the one ahead of it
                    continue
                wait = self._wait_ms(waiter.spends, now)
                if wait == 0:
                    self._spend(waiter.spends, now)
                    queue.popleft()
                    self._settle(waiter, now, None)
                    # Served: its queue goes to the back of the turns.
                    del self._queues[fairness_key]
                    if queue:
                        self._queues[fairness_key] = queue
                    progress = True
                elif now + wait > waiter.deadline_ms:
                    queue.popleft()
                    if not queue:
                        del self._queues[fairness_key]
                    self._settle(waiter, now, self._refusal(waiter.spends, now, wait, "hopeless"))
                    progress = True
                else:
                    wake = min(wake, now + wait)
                    blocked |= waiter.keys
        for fairness_key in list(self._queues):
            queue = self._queues[fairness_key]
            for waiter in [w for w in queue if w.deadline_ms <= now]:
                queue.remove(waiter)
                wait = self._wait_ms(waiter.spends, now)
                self._settle(waiter, now, self._refusal(waiter.spends, now, wait, "deadline"))
            if queue:
                wake = min(wake, min(w.deadline_ms for w in queue))
            else:
                del self._queues[fairness_key]
        self._set_timer(wake, now)

    def _settle(self, waiter: _Waiter, now: int, error: RateLimited | None) -> None:
        if waiter.future.done():
            return
        if error is None:
            self._counters.granted += 1
            self._counters.waited += 1
            self._counters.wait_ms_total += max(0, now - waiter.since_ms)
            waiter.future.set_result(None)
        else:
            waiter.future.set_exception(error)

    def _drop(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.fairness_key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.fairness_key]
        self._kick()

    def _set_timer(self, wake_ms: float, now: int) -> None:
        if not self._queues or not math.isfinite(wake_ms):
            if self._timer is not None:
                self._timer.cancel()
                self._timer, self._timer_due_ms = None, math.inf
            return
        if self._timer is not None and self._timer_due_ms <= wake_ms:
            return  # an earlier wake-up will look again
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None  # there are waiters, so acquire ran in a loop
        self._timer_due_ms = wake_ms
        self._timer = self._loop.call_later(max(0.0, (wake_ms - now) / 1000), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_due_ms = None, math.inf
        self._dispatch()

    def _kick(self) -> None:
        # Something changed (a pause, a ban, a correction, a cancelled waiter):
        # look at the queue again soon, from the loop.
        if self._queues and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon(self._dispatch)
