"""Gateway fixtures: emulators and gateways on real loopback HTTP, vaults in tmp_path.

``emulator(exchange, config=None)`` starts an emulator; ``gateway(vault,
token, **config)`` serves ``create_app`` in a thread; ``world`` is the usual
arrangement: a Binance emulator, a vault holding credential ``bn`` for it
(policy TRADER) and a gateway with bot ``bot1``'s token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_testkit import (
    EMULATOR_KEYS,
    TRADER,
    Emulator,
    Gateway,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
)

from keybroker.emulator import EmulatorConfig, create_app, serve_in_thread
from keybroker.gateway import GatewayConfig
from keybroker.gateway import create_app as create_gateway
from keybroker.gateway import serve_in_thread as serve_gateway
from keybroker.vault import Vault


@pytest.fixture
def emulator() -> Iterator[StartEmulator]:
    stops: list[Callable[[], None]] = []

    def start(exchange: str = "binance", config: EmulatorConfig | None = None) -> Emulator:
        url, stop = serve_in_thread(create_app(exchange, [EMULATOR_KEYS[exchange]], config))
        stops.append(stop)
        return Emulator(exchange, url)

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StartGateway]:
    started: list[Gateway] = []

    def start(vault: Vault, token: str, uds: Path | None = None, **config: Any) -> Gateway:
        home = vault.path.parent
        settings = GatewayConfig(audit_path=home / "audit.db", **config)
        running = serve_gateway(create_gateway(vault, settings), uds=uds)
        gateway = Gateway(running, vault, home, token)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        for client in gateway.clients:
            client.close()
        gateway.running.stop()
        gateway.vault.close()


@pytest.fixture
def world(tmp_path: Path, emulator: StartEmulator, gateway: StartGateway) -> World:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    token = new_token(vault, "bot1", ["bn"])
    return World(exchange, gateway(vault, token))
