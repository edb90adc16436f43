"""Gateway fixtures: emulators and gateways on real loopback HTTP, vaults in tmp_path.

``emulator(exchange, config=None)`` starts an emulator; ``gateway(vault,
token, **config)`` serves ``create_app`` in a thread; ``world`` is the usual
arrangement: a Binance emulator, a vault holding credential ``bn`` for it
(policy TRADER) and a gateway with bot ``bot1``'s token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gateway_testkit
import httpx
import pytest
from gateway_testkit import (
    EMULATOR_KEYS,
    FAST_KDF,
    PASSPHRASE,
    TRADER,
    Emulator,
    Gateway,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
)

from keybroker.crypto import kdf
from keybroker.emulator import EmulatorConfig, create_app, serve_in_thread
from keybroker.gateway import GatewayConfig
from keybroker.gateway import create_app as create_gateway
from keybroker.gateway import serve_in_thread as serve_gateway
from keybroker.ratelimit import Limiter
from keybroker.secret import Secret
from keybroker.vault import Vault, store

remembered_derive_key = functools.lru_cache(maxsize=16)(kdf.derive_key)


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    path = tmp_path_factory.mktemp("template") / "vault.db"
    Vault.create(path, Secret(PASSPHRASE), kdf=FAST_KDF).close()
    gateway_testkit.TEMPLATE = path
    yield
    gateway_testkit.TEMPLATE = None


@pytest.fixture(autouse=True)
def _fast_vaults(_template: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Vaults are copies of one template whose key derivation is remembered.

    derive_key is a pure function: the same passphrase, salt and parameters
    give the same key whether computed or remembered.
    """
    monkeypatch.setattr(store, "derive_key", remembered_derive_key)


@pytest.fixture(scope="session")
def _plain_emulators() -> Iterator[dict[str, Emulator]]:
    running: dict[str, Emulator] = {}
    stops: list[Callable[[], None]] = []
    for exchange in ("binance", "okx", "bybit"):
        url, stop = serve_in_thread(create_app(exchange, [EMULATOR_KEYS[exchange]]))
        running[exchange] = Emulator(exchange, url)
        stops.append(stop)
    yield running
    for stop in stops:
        stop()


@pytest.fixture
def emulator(_plain_emulators: dict[str, Emulator]) -> Iterator[StartEmulator]:
    """emulator(exchange, config=None): a fresh emulator (reset, or new for a config)."""
    stops: list[Callable[[], None]] = []

    def start(exchange: str = "binance", config: EmulatorConfig | None = None) -> Emulator:
        if config is None:
            shared = _plain_emulators[exchange]
            httpx.post(f"{shared.url}/__emulator__/reset", timeout=10).raise_for_status()
            return shared
        url, stop = serve_in_thread(create_app(exchange, [EMULATOR_KEYS[exchange]], config))
        stops.append(stop)
        return Emulator(exchange, url)

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StartGateway]:
    started: list[Gateway] = []

    def start(
        vault: Vault,
        token: str,
        uds: Path | None = None,
        limiter: Limiter | None = None,
        **config: Any,
    ) -> Gateway:
        home = vault.path.parent
        settings = GatewayConfig(audit_path=home / "audit.db", **config)
        running = serve_gateway(create_gateway(vault, settings, limiter=limiter), uds=uds)
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
