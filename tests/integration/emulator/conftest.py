"""Emulators on real loopback HTTP: uvicorn in a thread, a free port, stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest
from emulator_testkit import BINANCE_KEY, OKX_KEY, Binance, Okx, Serve

from keybroker.clock import Clock, FixedClock
from keybroker.emulator import ApiKey, EmulatorConfig, create_app, serve_in_thread

START_MS = 1_795_000_000_000


@pytest.fixture
def serve() -> Iterator[Serve]:
    """serve(exchange, keys=..., config=..., clock=...) -> an httpx.Client on the emulator."""
    stops: list[Callable[[], None]] = []
    clients: list[httpx.Client] = []

    def start(
        exchange: str,
        keys: Sequence[ApiKey] | None = None,
        config: EmulatorConfig | None = None,
        clock: Clock | None = None,
        timeout: float = 10.0,
    ) -> httpx.Client:
        default = [BINANCE_KEY] if exchange == "binance" else [OKX_KEY]
        app = create_app(exchange, list(keys or default), config, clock=clock)
        base_url, stop = serve_in_thread(app)
        stops.append(stop)
        client = httpx.Client(base_url=base_url, timeout=timeout)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for stop in stops:
        stop()


@pytest.fixture
def fixed_clock() -> FixedClock:
    return FixedClock(START_MS)


@pytest.fixture
def binance(serve: Serve) -> Binance:
    """A Binance emulator on the system clock, and a client for it."""
    return Binance(serve("binance"))


@pytest.fixture
def okx(serve: Serve) -> Okx:
    """An OKX emulator (demo environment) on the system clock, and a client for it."""
    return Okx(serve("okx"))
