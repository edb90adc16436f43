"""Rate limits as the exchanges apply them: Binance weights and bans, order counts, OKX windows.

    >>> weights = WeightLimiter(limit=1200)
    >>> verdict = weights.charge("127.0.0.1", weight=20, now_ms=clock.now_ms())
    >>> verdict.used, verdict.status                     # (20, "ok")

Binance counts request weight per IP in calendar-minute windows. Going over
the limit answers 429 with ``Retry-After`` (seconds to the next window); a
client that sends more than ``ban_after`` further requests inside that window
is banned with 418 for two minutes, doubling for each later ban up to three
days, as Binance describes its automated bans. Weight is counted for every
request received, refused ones included, except while banned.

OKX limits each endpoint to a number of requests per 2 seconds, counted per
user (private) or per IP (public); here as a sliding window, so a burst is
refused however it straddles a window edge.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

MINUTE_MS = 60_000
FIRST_BAN_MS = 2 * MINUTE_MS
LONGEST_BAN_MS = 3 * 24 * 60 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Literal["ok", "limited", "banned"]
    used: int
    retry_after_s: int = 0
    ban_until_ms: int = 0


@dataclass
class _Client:
    window_start: int = -1
    used: int = 0
    over: int = 0  # requests received over the limit in this window
    ban_until: int = 0
    bans: int = 0


class WeightLimiter:
    """REQUEST_WEIGHT per IP per minute, with 429 then escalating 418 bans."""

    def __init__(self, limit: int, *, ban_after: int = 5, window_ms: int = MINUTE_MS) -> None:
        self.limit = limit
        self.ban_after = ban_after
        self.window_ms = window_ms
        self._clients: dict[str, _Client] = {}

    def charge(self, client: str, weight: int, now_ms: int) -> Verdict:
        state = self._clients.setdefault(client, _Client())
        if now_ms < state.ban_until:
            remaining = _seconds(state.ban_until - now_ms)
            return Verdict("banned", state.used, remaining, state.ban_until)
        window_start = now_ms - now_ms % self.window_ms
        if window_start != state.window_start:
            state.window_start, state.used, state.over = window_start, 0, 0
        state.used += weight
        if state.used <= self.limit:
            return Verdict("ok", state.used)
        state.over += 1
        if state.over > self.ban_after:
            ban_ms = min(LONGEST_BAN_MS, FIRST_BAN_MS * 2**state.bans)
            state.bans += 1
            state.ban_until = now_ms + ban_ms
            return Verdict("banned", state.used, _seconds(ban_ms), state.ban_until)
        retry = _seconds(window_start + self.window_ms - now_ms)
        return Verdict("limited", state.used, retry)

    def used(self, client: str, now_ms: int) -> int:
        state = self._clients.get(client)
        if state is None or now_ms - now_ms % self.window_ms != state.window_start:
            return 0
        return state.used


class OrderCounter:
    """Orders placed per account in fixed windows (Binance ``ORDERS``: 10 s and 1 day or 1 min)."""

    def __init__(self, limits: dict[str, tuple[int, int]]) -> None:
        # name (as in the X-MBX-ORDER-COUNT-<name> header) -> (window ms, limit)
        self.limits = limits
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}

    def counts(self, account: str, now_ms: int) -> dict[str, int]:
        result = {}
        for name, (window_ms, _) in self.limits.items():
            start, count = self._counts.get((account, name), (-1, 0))
            result[name] = count if start == now_ms - now_ms % window_ms else 0
        return result

    def exceeded(self, account: str, now_ms: int) -> tuple[str, int] | None:
        """(window name, limit) of the first window already full, or None."""
        counts = self.counts(account, now_ms)
        for name, (_, limit) in self.limits.items():
            if counts[name] >= limit:
                return name, limit
        return None

    def add(self, account: str, now_ms: int) -> None:
        counts = self.counts(account, now_ms)
        for name, (window_ms, _) in self.limits.items():
            self._counts[(account, name)] = (now_ms - now_ms % window_ms, counts[name] + 1)


class SlidingWindow:
    """At most ``limit`` requests per key in any ``window_ms``; OKX's per-endpoint limits."""

    def __init__(self, window_ms: int = 2_000) -> None:
        self.window_ms = window_ms
        self._seen: dict[tuple[str, ...], deque[int]] = {}

    def allow(self, key: tuple[str, ...], limit: int, now_ms: int) -> bool:
        seen = self._seen.setdefault(key, deque())
        while seen and seen[0] <= now_ms - self.window_ms:
            seen.popleft()
        if len(seen) >= limit:
            return False
        seen.append(now_ms)
        return True


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))
