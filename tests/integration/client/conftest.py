"""Adapters against emulators on real loopback HTTP: uvicorn in a thread, a free port each."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from client_testkit import KEYS, Emulator, MakeAdapter, StartEmulator

from keybroker.client import Adapter, BinanceAdapter, OKXAdapter
from keybroker.clock import Clock
from keybroker.emulator import EmulatorConfig, create_app, serve_in_thread


@pytest.fixture
def emulator() -> Iterator[StartEmulator]:
    """emulator(exchange, config=None, clock=None) -> a running Emulator, stopped afterwards."""
    running: list[Emulator] = []

    def start(
        exchange: str, config: EmulatorConfig | None = None, clock: Clock | None = None
    ) -> Emulator:
        app = create_app(exchange, [KEYS[exchange]], config, clock=clock)
        url, stop = serve_in_thread(app)
        started = Emulator(exchange, url, httpx.Client(base_url=url, timeout=10), stop)
        running.append(started)
        return started

    yield start
    for started in running:
        started.control.close()
        started.stop()


@pytest.fixture
def adapter() -> Iterator[MakeAdapter]:
    """adapter(emulator, secret=None, **options) -> a Binance or OKX adapter, closed afterwards."""
    made: list[Adapter] = []

    def make(emulator: Emulator, *, secret: str | None = None, **options: Any) -> Adapter:
        config = emulator.config(secret=secret)
        cls = BinanceAdapter if emulator.exchange == "binance" else OKXAdapter
        built = cls(config, **options)
        made.append(built)
        return built

    yield make
    for built in made:
        built.close()
