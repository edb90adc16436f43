"""Obviously fake keys and small helpers for the adapter tests against the emulator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from keybroker.client import Adapter, ExchangeConfig
from keybroker.emulator import ApiKey
from keybroker.secret import Secret

BINANCE_API_KEY = "test-binance-key-not-real"
BINANCE_SECRET = "test-binance-secret-not-real"
OKX_API_KEY = "test-okx-key-not-real"
OKX_SECRET = "test-okx-secret-not-real"
OKX_PASSPHRASE = "test-okx-passphrase-not-real"

KEYS = {
    "binance": ApiKey(BINANCE_API_KEY, Secret(BINANCE_SECRET)),
    "okx": ApiKey(OKX_API_KEY, Secret(OKX_SECRET), Secret(OKX_PASSPHRASE)),
}
# Per exchange: (symbol, other symbol, quantity of the first, other's quantity, resting buy price)
MARKETS = {
    "binance": ("BTCUSDT", "ETHUSDT", "0.0002", "0.002", "50000"),
    "okx": ("BTC-USDT", "ETH-USDT", "0.0002", "0.002", "50000"),
}


@dataclass
class Emulator:
    """A running emulator: its base URL and a client for its control endpoints."""

    exchange: str
    url: str
    control: httpx.Client
    stop: Callable[[], None]
    entries_seen: int = field(default=0)

    def journal(self) -> list[dict[str, Any]]:
        response = self.control.get("/__emulator__/journal")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    def orders(self) -> list[dict[str, Any]]:
        """Every order the exchange created, in order."""
        return [order for entry in self.journal() for order in entry["orders"]]

    def advance_clock(self, ms: int) -> None:
        self.control.post("/__emulator__/clock", json={"advance_ms": ms}).raise_for_status()

    def config(self, *, secret: str | None = None) -> ExchangeConfig:
        if self.exchange == "binance":
            return ExchangeConfig(
                "binance", BINANCE_API_KEY, secret or BINANCE_SECRET, rest_base_url=self.url
            )
        return ExchangeConfig(
            "okx", OKX_API_KEY, secret or OKX_SECRET, OKX_PASSPHRASE, rest_base_url=self.url
        )


StartEmulator = Callable[..., "Emulator"]  # the ``emulator`` fixture
MakeAdapter = Callable[..., Adapter]  # the ``adapter`` fixture


class SkewedClock:
    """The system clock, wrong by ``skew_ms`` (a machine whose NTP is off)."""

    def __init__(self, skew_ms: int) -> None:
        self.skew_ms = skew_ms

    def now_ms(self) -> int:
        import time

        return time.time_ns() // 1_000_000 + self.skew_ms


class Sleeps:
    """A fake ``sleep`` that records the waits and moves a FixedClock instead of waiting."""

    def __init__(self, clock: Any = None) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.advance(int(seconds * 1000))
