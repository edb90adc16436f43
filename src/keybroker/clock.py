"""Time as an argument: the edges build SystemClock, tests pass FixedClock.

>>> FixedClock(1_700_000_000_000).now_ms()
1700000000000
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time in milliseconds since the epoch."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass
class FixedClock:
    """A clock that says what the test tells it to; ``advance`` moves it."""

    ms: int

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
