"""Rate limits: keep every request inside the exchange's budgets before it leaves.

    >>> limiter = MemoryLimiter()
    >>> charges = charges_for(profile, classified, host=host, account="main", environment="testnet")
    >>> await limiter.acquire(charges, fairness_key="bot-7")   # waits its turn, or RateLimited
    >>> limiter.observe(request_prefix(charges), profile.read_usage(response.headers))

The budgets themselves (capacities, windows, what counts) are exchange
knowledge and live in each profile's ``rate_limits``; this package only does
the arithmetic (``bucket``), names the budgets a request spends from
(``charges``) and queues the waiters (``memory``; ``redis.RedisLimiter``, the
``redis`` extra, keeps the budgets in Redis for several gateways). A request the gateway
refuses here gets a 429 from the gateway and never reaches the exchange; a
429 or 418 that does come back pauses the budget or opens the host's breaker,
so the next requests do not make a ban longer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from keybroker.ratelimit.charges import (
    Charge,
    Prepaid,
    apply_overrides,
    charges_for,
    host_prefix,
    request_prefix,
)
from keybroker.ratelimit.memory import MemoryLimiter


@runtime_checkable
class Limiter(Protocol):
    """What the gateway needs of a limiter (in memory here; Redis-backed for several gateways)."""

    async def acquire(
        self, charges: Sequence[Charge], *, fairness_key: str, deadline_s: float = 10.0
    ) -> None:
        """Wait until all charges fit, in fair turns across fairness keys; else RateLimited."""
        ...

    def observe(self, key_prefix: str, usage: Mapping[str, float]) -> None:
        """Correct budgets from the exchange's usage headers."""
        ...

    def pause(self, key_prefix: str, seconds: float) -> None:
        """Spend nothing under ``key_prefix`` for ``seconds`` (a 429's Retry-After)."""
        ...

    def open_breaker(self, host: str, until_ms: int) -> None:
        """Send nothing to ``host`` until ``until_ms`` (a 418)."""
        ...

    def breaker_until(self, host: str) -> int | None:
        """When ``host``'s ban ends, or None."""
        ...

    def snapshot(self) -> list[dict[str, object]]:
        """Budgets, pauses, breakers and totals, for /_/status and metrics."""
        ...


__all__ = [
    "Charge",
    "Limiter",
    "MemoryLimiter",
    "Prepaid",
    "apply_overrides",
    "charges_for",
    "host_prefix",
    "request_prefix",
]
