"""The shared limiter: every gateway spends from the same budgets, kept in Redis and decided in Lua.

    >>> client = redis.asyncio.Redis.from_url("redis://10.0.0.5:6379/0")
    >>> limiter = RedisLimiter(client, gateways=3)
    >>> await limiter.acquire(charges, fairness_key="bot-7")      # waits, or raises RateLimited

Same protocol and same arithmetic as ``MemoryLimiter`` (the Lua in
``redis_scripts`` is a port of ``bucket.py``); what changes is where the
budgets live. "Do all charges fit? then take them all" is one script, so two
gateways can never both take the last unit. Waiting stays local: each
gateway queues its own bots in fair turns exactly as ``MemoryLimiter`` does,
and its queue head asks Redis again when the script said the charges would
fit. Across gateways, whoever asks first after budget frees up gets it.

429 pauses and 418 breakers are keys in Redis too, checked by the same
script, so a ban one gateway saw stops them all; usage-header corrections
raise the shared budgets. ``observe``, ``pause`` and ``open_breaker`` are
synchronous in the protocol: they apply to this gateway at once and reach
Redis from a task a moment later (usage readings within ``CORRECT_EVERY_S``,
the latest per budget, so a busy gateway sends a few corrections a second
rather than one per response).

When Redis does not answer (``StoreHealth`` says so), nothing waits on it:
a request that spends from an order-counting budget is refused with
``CoordinationUnavailable`` (orders fail closed: the account's order limits
are shared and cannot be honoured alone), and every other request spends
from a local share of 1/``gateways`` of each budget. While down, one
request at most every ``probe_interval_s`` tries Redis again; when it
answers, what was spent locally is added to the shared budgets and the
gateway goes back to them, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from keybroker.clock import Clock, SystemClock
from keybroker.errors import CoordinationUnavailable, RateLimited
from keybroker.exchanges.base import RateLimit
from keybroker.ratelimit.bucket import default_margin_ms
from keybroker.ratelimit.charges import Charge, Prepaid, apply_overrides, owners_of
from keybroker.ratelimit.memory import MemoryLimiter
from keybroker.ratelimit.redis_link import Link
from keybroker.ratelimit.redis_scripts import ACQUIRE, CORRECT, PEEK, RAISE_UNTIL, REFUND

log = logging.getLogger("keybroker.ratelimit")

NAMESPACE = "keybroker"
CORRECT_EVERY_S = 0.05
"""How long usage readings wait to reach Redis together (the latest per budget)."""
_REMEMBERED = 4096  # sets of charges whose budgets and script arguments are kept ready
STORE_FAILURES = (RedisError, OSError)
"""What a Redis call raises when the store cannot answer (connection, timeout, loading)."""


class StoreHealth:
    """Whether the shared store answers; one per gateway, shared by everything that uses it.

    ``failed`` and ``succeeded`` are called around each Redis call; the
    listeners hear every change (``True``: back up), e.g. to alert.
    """

    def __init__(self, clock: Clock | None = None, *, probe_interval_s: float = 0.5) -> None:
        self._clock = clock or SystemClock()
        self.up = True
        self.changed_ms = self._clock.now_ms()
        self.probe_interval_ms = max(1, round(probe_interval_s * 1000))
        self.last_error = ""
        self._last_probe_ms = -(2**62)
        self._listeners: list[Callable[[bool], None]] = []

    def listen(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def failed(self, error: BaseException) -> None:
        """A call failed: the store is down until a probe succeeds."""
        self.last_error = type(error).__name__
        self._last_probe_ms = self._clock.now_ms()
        if self.up:
            self.up = False
            self.changed_ms = self._clock.now_ms()
            for listener in list(self._listeners):
                listener(False)

    def succeeded(self) -> None:
        if not self.up:
            self.up = True
            self.changed_ms = self._clock.now_ms()
            for listener in list(self._listeners):
                listener(True)

    def should_try(self) -> bool:
        """Up, or down with a probe due (then the caller's call is that probe)."""
        if self.up:
            return True
        now = self._clock.now_ms()
        if now - self._last_probe_ms >= self.probe_interval_ms:
            self._last_probe_ms = now
            return True
        return False


@dataclass(frozen=True, slots=True)
class _Spend:
    key: str
    amount: float
    limit: RateLimit
    host: str
    shape: str
    window_ms: int
    margin_ms: int

    def budget_args(self, amount: float) -> list[str | int | float]:
        """``amount`` and this budget's description, as every script reads them in turn."""
        return [repr(amount), self.shape, repr(self.limit.capacity), self.window_ms, self.margin_ms]


@dataclass(frozen=True, slots=True)
class _Verdict:
    granted: bool
    wait_ms: float  # inf: never fits
    reason: str
    index: int  # 1-based budget index the wait is about, 0 for a pause or breaker
    banned_until: int


@dataclass(frozen=True, slots=True)
class Offer:
    """What ``try_all`` (redis_scripts.TRY_ALL) needs to take some charges, from any script."""

    spends: tuple[_Spend, ...]
    hosts: tuple[str, ...]
    keys: list[str]
    args: list[str | int | float]
    now: int
    charges: Sequence[Charge] = ()


@dataclass(slots=True)
class _Waiter:
    spends: list[_Spend]
    charges: Sequence[Charge]
    keys: frozenset[str]
    fairness_key: str
    deadline_ms: int
    since_ms: int
    future: asyncio.Future[None]
    last: _Verdict | None = None


class _GoLocal(Exception):
    """The store went away while a request waited in line: finish it on the local share."""


@dataclass(slots=True)
class _Counters:
    granted: int = 0
    waited: int = 0
    rejected: int = 0
    wait_ms_total: int = 0
    local: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def _shape(limit: RateLimit) -> str:
    return "d" if limit.decaying else "f" if limit.fixed_window else "w"


@functools.lru_cache(maxsize=4096)
def _share_of(limit: RateLimit, share: float) -> RateLimit:
    return dataclasses.replace(limit, capacity=limit.capacity * share, endpoint_capacities=())


class RedisLimiter:
    """Weighted budgets shared by every gateway on one Redis (see the module docstring).

    ``limit_overrides`` and ``margin_ms`` as in ``MemoryLimiter``;
    ``gateways`` is N of the local 1/N share used while Redis is down;
    ``health`` is shared with the gateway's other users of the same store;
    ``link`` (``redis_link.Link.of(client)``, closed by its owner) carries the
    scripts at a fraction of redis-py's cost per call.
    """

    def __init__(
        self,
        client: Redis,
        *,
        clock: Clock | None = None,
        limit_overrides: Mapping[str, float] | None = None,
        margin_ms: int | None = None,
        gateways: int = 1,
        health: StoreHealth | None = None,
        namespace: str = NAMESPACE,
        link: Link | None = None,
    ) -> None:
        if gateways < 1:
            raise ValueError("gateways must be at least 1")
        self._client = client
        self._clock = clock or SystemClock()
        self._overrides = dict(limit_overrides or {})
        self._margin_ms = margin_ms
        self._share = 1.0 / gateways
        self.health = health or StoreHealth(self._clock)
        self._ns = namespace
        self.link = link
        script = link.script if link is not None else client.register_script
        self._acquire = script(ACQUIRE)
        self._correct = script(CORRECT)
        self._peek = script(PEEK)
        self._raise_until = script(RAISE_UNTIL)
        self._refund = script(REFUND)
        self._fallback = MemoryLimiter(clock=self._clock, margin_ms=margin_ms)
        self._known: dict[str, _Spend] = {}  # budget key -> how it was last charged
        self._spent: dict[tuple[Charge, ...], tuple[_Spend, ...]] = {}
        self._readings: dict[str, tuple[_Spend, float, int]] = {}  # budget -> latest reading
        self._flush_due = False
        self._offers: dict[
            tuple[_Spend, ...], tuple[tuple[str, ...], list[str], list[str | int | float]]
        ] = {}
        self._used: dict[str, float] = {}  # budget key -> use at the last refresh
        self._pauses: dict[str, int] = {}
        self._breakers: dict[str, int] = {}
        self._queues: dict[str, deque[_Waiter]] = {}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counters = _Counters()
        self.health.listen(self._on_health)

    @property
    def client(self) -> Redis:
        """The store this limiter's budgets live in."""
        return self._client

    # -- the Limiter protocol ----------------------------------------------------------------
    async def acquire(
        self, charges: Sequence[Charge], *, fairness_key: str, deadline_s: float = 10.0
    ) -> None:
        """Wait until every charge fits in the shared budgets, then spend them all at once.

        Raises RateLimited as ``MemoryLimiter`` does; CoordinationUnavailable
        for an order-counting charge while Redis does not answer.
        """
        spends = self._spends(charges)
        if not spends:
            return
        if not self.health.should_try():
            await self._locally(spends, charges, fairness_key, deadline_s)
            return
        now = self._clock.now_ms()
        deadline_ms = now + max(0, math.ceil(deadline_s * 1000))
        if not self._queues:
            try:
                verdict = await self._try(spends, now)
            except _GoLocal:
                await self._locally(spends, charges, fairness_key, deadline_s)
                return
            if verdict.granted:
                self._counters.granted += 1
                return
            if now + verdict.wait_ms > deadline_ms:
                raise self._refusal(spends, verdict, "hopeless")
        waiter = _Waiter(
            spends,
            charges,
            frozenset(spend.key for spend in spends),
            fairness_key,
            deadline_ms,
            now,
            asyncio.get_running_loop().create_future(),
        )
        self._queues.setdefault(fairness_key, deque()).append(waiter)
        self._start_dispatcher()
        try:
            await waiter.future
        except _GoLocal:
            left = max(0.0, (deadline_ms - self._clock.now_ms()) / 1000)
            await self._locally(spends, charges, fairness_key, left)
        except asyncio.CancelledError:
            self._drop(waiter)
            raise

    def observe(self, key_prefix: str, usage: Mapping[str, float]) -> None:
        """Raise the shared budgets to the exchange's usage readings (see MemoryLimiter.observe)."""
        if not usage:
            return
        self._fallback.observe(key_prefix, usage)
        owners = owners_of(key_prefix)
        found = [
            (spend, float(used))
            for name, used in usage.items()
            for owner in owners
            if (spend := self._known.get(f"{owner}:{name}")) is not None
        ]
        if found and self.health.up:
            # Readings wait a moment and go together, the latest per budget: one script
            # every CORRECT_EVERY_S at most, not one per response.
            now = self._now()
            for spend, used in found:
                self._readings[spend.key] = (spend, used, now)
            if not self._flush_due:
                self._flush_due = True
                self._spawn(self._flush_readings())

    def pause(self, key_prefix: str, seconds: float) -> None:
        """Spend nothing under ``key_prefix`` for ``seconds``, on every gateway."""
        until = self._clock.now_ms() + max(0, math.ceil(seconds * 1000))
        self._pauses[key_prefix] = max(until, self._pauses.get(key_prefix, 0))
        self._fallback.pause(key_prefix, seconds)
        self._spawn(self._raise(self._key("p", key_prefix), until))
        self._wake.set()

    def open_breaker(self, host: str, until_ms: int) -> None:
        """Send nothing to ``host`` until ``until_ms``, from any gateway."""
        self._breakers[host] = max(int(until_ms), self._breakers.get(host, 0))
        self._fallback.open_breaker(host, until_ms)
        self._spawn(self._raise(self._key("x", host), int(until_ms)))
        self._wake.set()

    def breaker_until(self, host: str) -> int | None:
        """When ``host``'s ban ends, as this gateway last learned it (each acquire checks Redis)."""
        until = self._breakers.get(host)
        if until is None:
            return None
        if until <= self._clock.now_ms():
            del self._breakers[host]
            return None
        return until

    # -- taking an order's budget with its admission ------------------------------------------
    def offer(self, charges: Sequence[Charge]) -> Offer | None:
        """``try_all``'s keys and arguments for ``charges``, to run inside another script.

        None when they must take their turn through ``acquire`` instead:
        nothing to spend, someone already waits in line here (fair turns),
        or the store is down.
        """
        if self._queues or not self.health.up:
            return None
        spends = self._spends(charges)
        if not spends:
            return None
        return self._offer(spends, self._now(), charges)

    def accepted(self, offer: Offer, answer: Any) -> Prepaid | None:
        """Read ``try_all``'s answer to ``offer``: Prepaid when the budget was taken."""
        if not answer:  # not tried (the script found the credential halted)
            return None
        verdict = self._verdict(offer, answer)
        if not verdict.granted:
            return None  # the request waits its turn in ``acquire`` as any other
        self._counters.granted += 1
        return Prepaid(tuple(offer.charges), offer.now)

    def refund(self, prepaid: Prepaid) -> None:
        """Give back what ``prepaid`` took (its order was refused before it left), from a task."""
        spends = self._spends(prepaid.charges)
        if spends and not prepaid.claimed:
            prepaid.claimed = True
            self._spawn(self._send_refund(spends, prepaid.taken_ms))

    def snapshot(self) -> list[dict[str, object]]:
        """Budgets as of the last ``refresh`` (the gateway's poller), pauses, breakers, totals."""
        now = self._clock.now_ms()
        rows: list[dict[str, object]] = []
        for key, spend in sorted(self._known.items()):
            used = self._used.get(key, 0.0)
            rows.append(
                {
                    "type": "budget",
                    "key": key,
                    "name": spend.limit.name,
                    "scope": spend.limit.scope,
                    "counts": spend.limit.counts,
                    "capacity": spend.limit.capacity,
                    "per_seconds": spend.limit.per_seconds,
                    "used": round(used, 6),
                    "available": round(max(0.0, spend.limit.capacity - used), 6),
                    "paused_until_ms": self._paused_until(key, now),
                    "waiting": sum(1 for q in self._queues.values() for w in q if key in w.keys),
                    "shared": "redis",
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
                "granted_locally": counters.local,
                "waiting": sum(len(queue) for queue in self._queues.values()),
                "rejected_by_reason": dict(counters.by_reason),
                "store": "up" if self.health.up else "down",
            }
        )
        return rows

    # -- beyond the protocol -----------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the shared use of every budget this gateway has charged (for ``snapshot``)."""
        if not self._known or not self.health.up:
            return
        keys = sorted(self._known)
        try:
            answer = await self._peek(keys=[self._key("b", k) for k in keys], args=[self._now()])
        except STORE_FAILURES as error:
            self.health.failed(error)
            return
        self._used = {k: float(v) for k, v in zip(keys, _texts(answer), strict=True) if v}

    async def close(self) -> None:
        """Stop the dispatcher and wait for updates still on their way to Redis."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- Redis -------------------------------------------------------------------------------
    def _key(self, kind: str, name: str) -> str:
        return f"{self._ns}:rl:{kind}:{name}"

    def _now(self) -> int:
        return self._clock.now_ms()

    async def _try(self, spends: Sequence[_Spend], now: int) -> _Verdict:
        """One script call: take every charge now, or learn how long until they fit."""
        offer = self._offer(spends, now)
        try:
            answer = await self._acquire(keys=offer.keys, args=offer.args)
        except STORE_FAILURES as error:
            self.health.failed(error)
            raise _GoLocal from error
        self.health.succeeded()
        return self._verdict(offer, answer)

    def _offer(self, spends: Sequence[_Spend], now: int, charges: Sequence[Charge] = ()) -> Offer:
        """try_all's keys and arguments; all but ``now`` are remembered per set of spends
        (a bot repeats the same few requests)."""
        known = self._offers.get(tuple(spends))
        if known is None:
            known = self._new_offer(spends)
            if len(self._offers) >= _REMEMBERED:
                self._offers.clear()
            self._offers[tuple(spends)] = known
        hosts, keys, tail = known
        return Offer(tuple(spends), hosts, keys, [now, *tail], now, tuple(charges))

    def _new_offer(
        self, spends: Sequence[_Spend]
    ) -> tuple[tuple[str, ...], list[str], list[str | int | float]]:
        prefixes = sorted({p for spend in spends for p in owners_of(spend.key)})  # pause keys
        hosts = sorted({spend.host for spend in spends if spend.host})
        keys = [self._key("b", spend.key) for spend in spends]
        keys += [self._key("p", prefix) for prefix in prefixes]
        keys += [self._key("x", host) for host in hosts]
        args: list[str | int | float] = [len(spends), len(prefixes)]
        for spend in spends:
            args += spend.budget_args(spend.amount)
        return tuple(hosts), keys, args

    def _verdict(self, offer: Offer, answer: Any) -> _Verdict:
        """``try_all``'s answer, learned from (budgets charged, a ban seen)."""
        granted, wait, reason, index, banned = answer
        now = offer.now
        for spend in offer.spends:
            self._known[spend.key] = spend
        if int(banned) > now:
            for host in offer.hosts:
                self._breakers[host] = max(self._breakers.get(host, 0), int(banned))
        reason_text = reason.decode() if isinstance(reason, bytes) else str(reason)
        if int(granted) == -1:
            return _Verdict(False, math.inf, reason_text, int(index), int(banned))
        return _Verdict(int(granted) == 1, float(wait), reason_text, int(index), int(banned))

    async def _raise(self, key: str, until: int) -> None:
        try:
            await self._raise_until(keys=[key], args=[self._now(), until])
        except STORE_FAILURES as error:
            self.health.failed(error)

    async def _flush_readings(self) -> None:
        await asyncio.sleep(CORRECT_EVERY_S)
        self._flush_due = False
        readings, self._readings = self._readings, {}
        # One script for the flush; each reading counts at its own time.
        found = sorted(readings.values(), key=lambda reading: reading[2])
        await self._send_corrections(found, add=False)

    async def _send_corrections(
        self, found: Sequence[tuple[_Spend, float, int]], *, add: bool
    ) -> None:
        """Readings (``add``: spends made alone) as (budget, used, when) in one script."""
        args: list[str | int | float] = []
        for spend, used, now in found:
            args += [*spend.budget_args(used), int(add), now]
        keys = [self._key("b", spend.key) for spend, _, _ in found]
        try:
            await self._correct(keys=keys, args=args)
        except STORE_FAILURES as error:
            self.health.failed(error)

    async def _send_refund(self, spends: Sequence[_Spend], taken_ms: int) -> None:
        args: list[str | int | float] = [self._now()]
        for spend in spends:
            args += [*spend.budget_args(spend.amount), taken_ms]
        try:
            await self._refund(keys=[self._key("b", spend.key) for spend in spends], args=args)
        except STORE_FAILURES as error:
            self.health.failed(error)

    def _spawn(self, work: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no loop: nothing to send from (a synchronous caller in a test)
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- budgets -----------------------------------------------------------------------------
    def _spends(self, charges: Sequence[Charge]) -> list[_Spend]:
        known = self._spent.get(tuple(charges))
        if known is None:
            known = self._new_spends(charges)
            if len(self._spent) >= _REMEMBERED:
                self._spent.clear()
            self._spent[tuple(charges)] = known
        return list(known)

    def _new_spends(self, charges: Sequence[Charge]) -> tuple[_Spend, ...]:
        spends: list[_Spend] = []
        for charge in charges:
            if charge.amount <= 0:
                continue
            exchange = charge.key.split(":", 1)[0]
            limit = apply_overrides(charge.limit, charge.key, exchange, self._overrides)
            if limit is None:
                continue
            margin = default_margin_ms(limit) if self._margin_ms is None else self._margin_ms
            window = max(1, round(limit.per_seconds * 1000))
            spends.append(
                _Spend(charge.key, charge.amount, limit, charge.host, _shape(limit), window, margin)
            )
        return tuple(spends)

    def _paused_until(self, key: str, now: int) -> int | None:
        latest = [
            until
            for prefix, until in self._pauses.items()
            if until > now and (key == prefix or key.startswith(prefix + ":"))
        ]
        return max(latest) if latest else None

    def _refusal(self, spends: Sequence[_Spend], verdict: _Verdict, reason: str) -> RateLimited:
        counters = self._counters
        counters.rejected += 1
        counters.by_reason[reason] = counters.by_reason.get(reason, 0) + 1
        if math.isinf(verdict.wait_ms) and 0 < verdict.index <= len(spends):
            spend = spends[verdict.index - 1]
            return RateLimited(
                f"rate limit {spend.limit.name}: a request costing {spend.amount:g} "
                f"exceeds the whole budget of {spend.limit.capacity:g} "
                f"per {spend.limit.per_seconds:g} s ({spend.key})"
            )
        retry_after = max(0.001, math.ceil(verdict.wait_ms) / 1000)
        if verdict.reason == "breaker":
            hosts = sorted({spend.host for spend in spends if spend.host})
            return RateLimited(
                f"{', '.join(hosts)} banned this IP (HTTP 418): nothing is sent until the ban ends",
                retry_after=retry_after,
            )
        names = sorted({spend.limit.name for spend in spends})
        what = (
            "waited until its deadline"
            if reason == "deadline"
            else "cannot fit before its deadline"
        )
        return RateLimited(
            f"rate limit {', '.join(names)} reached (shared by every gateway); the request {what}",
            retry_after=retry_after,
        )

    # -- the local share, while Redis is down ------------------------------------------------
    async def _locally(
        self,
        spends: Sequence[_Spend],
        charges: Sequence[Charge],
        fairness_key: str,
        deadline_s: float,
    ) -> None:
        for spend in spends:
            if spend.limit.counts == "orders":
                self._counters.rejected += 1
                reason = "store_unavailable"
                self._counters.by_reason[reason] = self._counters.by_reason.get(reason, 0) + 1
                raise CoordinationUnavailable(
                    "coordination store unavailable: orders are refused until it answers "
                    "(the account's order limits are shared by every gateway)"
                )
        share = [
            Charge(spend.key, spend.amount, _share_of(spend.limit, self._share), spend.host)
            for spend in spends
        ]
        await self._fallback.acquire(share, fairness_key=fairness_key, deadline_s=deadline_s)
        self._counters.local += 1

    def _on_health(self, up: bool) -> None:
        if not up:
            # Everyone in line finishes on the local share (or is refused, for orders).
            for queue in self._queues.values():
                for waiter in queue:
                    if not waiter.future.done():
                        waiter.future.set_exception(_GoLocal())
            self._queues.clear()
            return
        # Back: add what was spent alone to the shared budgets, then start afresh locally.
        spent: list[tuple[_Spend, float, int]] = []
        now = self._now()
        for row in self._fallback.snapshot():
            if row.get("type") != "budget":
                continue
            key, used = str(row["key"]), row.get("used")
            spend = self._known.get(key)
            if spend is not None and isinstance(used, int | float) and used > 0:
                spent.append((spend, float(used), now))
        self._fallback = MemoryLimiter(clock=self._clock, margin_ms=self._margin_ms)
        for host, until in self._breakers.items():
            self._fallback.open_breaker(host, until)
        if spent:
            self._spawn(self._send_corrections(spent, add=True))

    # -- the local queue ---------------------------------------------------------------------
    def _start_dispatcher(self) -> None:
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop())

    async def _dispatch_loop(self) -> None:
        while self._queues:
            self._wake.clear()
            wake = await self._dispatch()
            if not self._queues:
                break
            timeout = max(0.0, (wake - self._clock.now_ms()) / 1000)
            if math.isfinite(timeout):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            else:
                await self._wake.wait()

    async def _dispatch(self) -> float:
        """Grant in turn every queue head that fits; refuse the hopeless and the late.

        Returns when to look again (ms). Waiters on budgets nobody ahead of
        them waits for go past; a waiter keeps its place on every budget it
        needs, as in ``MemoryLimiter``.
        """
        progress = True
        wake = math.inf
        while progress and self._queues:
            progress = False
            wake = math.inf
            blocked: set[str] = set()
            for fairness_key in list(self._queues):
                queue = self._queues.get(fairness_key)
                if not queue:
                    self._queues.pop(fairness_key, None)
                    continue
                waiter = queue[0]
                if not blocked.isdisjoint(waiter.keys):
                    blocked |= waiter.keys
                    continue
                now = self._clock.now_ms()
                try:
                    verdict = await self._try(waiter.spends, now)
                except _GoLocal:
                    return math.inf  # _on_health sent every waiter to the local share
                waiter.last = verdict
                if waiter.future.done():  # cancelled meanwhile; a grant is lost budget, not harm
                    self._remove(waiter)
                    progress = True
                elif verdict.granted:
                    self._remove(waiter)
                    self._counters.granted += 1
                    self._counters.waited += 1
                    self._counters.wait_ms_total += max(0, now - waiter.since_ms)
                    waiter.future.set_result(None)
                    # Served: its queue goes to the back of the turns.
                    rest = self._queues.pop(fairness_key, None)
                    if rest:
                        self._queues[fairness_key] = rest
                    progress = True
                elif now + verdict.wait_ms > waiter.deadline_ms:
                    self._remove(waiter)
                    waiter.future.set_exception(self._refusal(waiter.spends, verdict, "hopeless"))
                    progress = True
                else:
                    wake = min(wake, now + verdict.wait_ms)
                    blocked |= waiter.keys
        now = self._clock.now_ms()
        for queue in list(self._queues.values()):
            for waiter in [w for w in queue if w.deadline_ms <= now]:
                self._remove(waiter)
                if not waiter.future.done():
                    last = waiter.last or _Verdict(False, 1.0, "budget", 0, 0)
                    waiter.future.set_exception(self._refusal(waiter.spends, last, "deadline"))
        for queue in self._queues.values():
            if queue:
                wake = min(wake, min(w.deadline_ms for w in queue))
        return wake

    def _remove(self, waiter: _Waiter) -> None:
        queue = self._queues.get(waiter.fairness_key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.fairness_key]

    def _drop(self, waiter: _Waiter) -> None:
        self._remove(waiter)
        self._wake.set()


def _texts(answer: Any) -> list[str]:
    return [item.decode() if isinstance(item, bytes) else str(item) for item in answer]
