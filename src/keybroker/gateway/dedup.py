"""Identical concurrent public GETs become one upstream request whose answer all of them get.

    >>> dedup = Dedup(clock)
    >>> answer = await dedup.run(("testnet", "https://…/api/v3/ticker/price?symbol=BTCUSDT"), fetch)

Forty-five bots polling one ticker would otherwise spend the shared weight
budget forty-five times over (seed 001). The first request starts the fetch
as a task of its own, so a bot that disconnects does not cancel it for the
others; later identical requests wait for that task. With ``keep_ms`` above
zero a finished answer is also given to identical requests for that long,
if ``keep(answer)`` says it may be (the gateway keeps only 2xx answers), and
``aged(answer, age_ms)`` marks what is given from there (an ``Age`` header).
Only public market data comes here: nothing signed for one bot is ever
shared with another. With ``shared`` (several gateways on one Redis) each
fetch this gateway starts goes through it, so identical GETs on different
gateways also become one upstream request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

from keybroker.clock import Clock

T = TypeVar("T")


class SharedFetches(Protocol):
    """Fetches shared with other gateways: ``fetch()``'s result, or another gateway's."""

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[T]], keep_ms: int) -> T: ...


class Dedup(Generic[T]):
    """In-flight (and, with ``keep_ms``, just-finished) fetches by key."""

    def __init__(
        self,
        clock: Clock,
        keep_ms: int = 0,
        shared: SharedFetches | None = None,
        *,
        keep: Callable[[T], bool] = lambda answer: True,
        aged: Callable[[T, int], T] = lambda answer, age_ms: answer,
    ) -> None:
        self._clock = clock
        self._keep_ms = keep_ms
        self._shared = shared
        self._keep = keep
        self._aged = aged
        self._inflight: dict[Hashable, asyncio.Task[T]] = {}
        self._recent: dict[Hashable, tuple[int, T]] = {}
        self.shared = 0
        """Requests answered from another request's fetch (a metric)."""

    async def run(
        self, key: Hashable, fetch: Callable[[], Awaitable[T]], *, fresh: bool = False
    ) -> T:
        """``fetch()``'s result, from a fetch already running for ``key`` if there is one.

        ``fresh``: never a finished answer kept from before (the paper venue walks the
        book as it is at fill time); a fetch in flight is still shared.
        """
        if self._keep_ms and not fresh:
            recent = self._recent.get(key)
            age_ms = self._clock.now_ms() - recent[0] if recent is not None else self._keep_ms
            if recent is not None and age_ms < self._keep_ms:
                self.shared += 1
                return self._aged(recent[1], age_ms)
        task = self._inflight.get(key)
        if task is not None:
            self.shared += 1
        else:
            shared = self._shared
            if shared is not None:
                keep_ms = 0 if fresh else self._keep_ms
                task = asyncio.ensure_future(shared.run(key, fetch, keep_ms))
            else:
                task = asyncio.ensure_future(fetch())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return  # exception() marks it retrieved: no "never retrieved" warning
        if self._keep_ms and self._keep(task.result()):
            if len(self._recent) > 10_000:
                self._recent.clear()
            self._recent[key] = (self._clock.now_ms(), task.result())
