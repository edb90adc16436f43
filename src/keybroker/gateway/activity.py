"""What the gateway has let through recently: the facts behind per-minute and per-day policy rules.

    >>> activity.orders_last_minute("binance-main"), activity.daily_notional("binance-main")
    (3, Decimal('1520.5'))
    >>> activity.record("binance-main", "grid-bot", orders=1, notional=Decimal("500"))

Orders are counted when the policy allows them, before they are sent, so
requests that arrive together cannot all squeeze under a limit. The counts
live in memory: a restart starts them again at zero (the audit log keeps the
history).
"""

from __future__ import annotations

from collections import defaultdict, deque
from decimal import Decimal

from keybroker.clock import Clock

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000


class Activity:
    """Sliding one-minute order counts per credential and per bot; notional per UTC day."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._by_credential: dict[str, deque[int]] = defaultdict(deque)
        self._by_bot: dict[str, deque[int]] = defaultdict(deque)
        self._notional: dict[str, tuple[int, Decimal]] = {}

    def orders_last_minute(self, credential: str) -> int:
        return self._recent(self._by_credential, credential)

    def bot_orders_last_minute(self, bot: str) -> int:
        return self._recent(self._by_bot, bot)

    def daily_notional(self, credential: str) -> Decimal:
        day, used = self._notional.get(credential, (-1, Decimal(0)))
        return used if day == self._clock.now_ms() // _DAY_MS else Decimal(0)

    def record(self, credential: str, bot: str, *, orders: int, notional: Decimal) -> None:
        now = self._clock.now_ms()
        for _ in range(orders):
            self._by_credential[credential].append(now)
            self._by_bot[bot].append(now)
        self._notional[credential] = (now // _DAY_MS, self.daily_notional(credential) + notional)

    def _recent(self, table: dict[str, deque[int]], name: str) -> int:
        times = table.get(name)
        if not times:
            return 0
        cutoff = self._clock.now_ms() - _MINUTE_MS
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times)
