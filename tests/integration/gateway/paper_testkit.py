"""Paper-trading helpers on top of gateway_testkit: a paper credential, its ledger, the market.

Everything real: the vault file, the gateway (create_app on uvicorn), the
emulator as the exchange, and the ledger read back from ``<home>/paper.db``.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from gateway_testkit import TRADER, Emulator, Gateway, StartEmulator, StartGateway, new_token

from keybroker.paper import Ledger
from keybroker.paper.venues import get_venue
from keybroker.policy import Policy
from keybroker.vault import Vault

PAPER = dataclasses.replace(TRADER, mode="paper", max_notional=Decimal(2_000_000))
FUNDS = Decimal(1_000_000)
START = {"USDT": FUNDS, "BTC": Decimal(0)}


@dataclasses.dataclass
class PaperWorld:
    exchange: Emulator
    gateway: Gateway
    credential: str
    symbol: str

    @property
    def ledger_path(self) -> Path:
        return self.gateway.home / "paper.db"

    def ledger(self) -> Ledger:
        return Ledger.open(self.ledger_path)

    def market(self, **command: Any) -> dict[str, Any]:
        """POST the emulator's market control (move the price, step the walk)."""
        response = httpx.post(f"{self.exchange.url}/__emulator__/market", json=command, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def public(self, path: str, **params: str) -> Any:
        """A public GET straight to the emulator (what the book or the tape is right now)."""
        response = httpx.get(f"{self.exchange.url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def order_requests(self) -> list[dict[str, Any]]:
        """Journal entries that reached the emulator's order, cancel or account endpoints."""
        return [e for e in self.exchange.journal() if e["kind"] in ("order", "cancel", "private")]


def paper_world(
    tmp_path: Path,
    emulator: StartEmulator,
    gateway: StartGateway,
    exchange_name: str = "binance",
    *,
    policy: Policy = PAPER,
    balances: dict[str, Decimal] | None = None,
    latency_ms: int = 0,
    **config: Any,
) -> PaperWorld:
    """An emulator, a vault with paper credential ``pp`` (reset to ``balances``), a gateway."""
    from gateway_testkit import make_vault

    exchange = emulator(exchange_name)
    home = tmp_path / f"paper-{exchange_name}"
    vault: Vault = make_vault(home, {"pp": (exchange_name, exchange.url)}, policies={"pp": policy})
    reset(home, "pp", exchange_name, balances or START, latency_ms=latency_ms)
    config.setdefault("paper_poll_s", 0.05)
    config.setdefault("paper_book_max_age_ms", 0)  # every order walks a book fetched for it
    running = gateway(vault, new_token(vault, "bot1", ["pp"]), **config)
    symbol = "BTCUSDT" if exchange_name == "binance" else "BTC-USDT"
    return PaperWorld(exchange, running, "pp", symbol)


def reset(
    home: Path,
    credential: str,
    exchange: str,
    balances: dict[str, Decimal],
    *,
    latency_ms: int = 0,
) -> None:
    venue = get_venue(exchange)
    assert venue is not None
    ledger = Ledger.open(home / "paper.db")
    try:
        now_ms = time.time_ns() // 1_000_000
        ledger.reset(
            credential,
            exchange,
            "testnet",
            balances,
            now_ms=now_ms,
            fees=venue.fees,
            latency_ms=latency_ms,
        )
    finally:
        ledger.close()
