"""Gateway hosts for the Redis tests: a credential allowed four orders a minute, and the
order rows of a host's audit log (intent, denied, result)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from gateway_testkit import make_vault, new_token

from keybroker.audit import StoredRow, read_rows
from keybroker.policy import Policy
from keybroker.vault import Vault

FOUR_A_MINUTE = Policy(
    scopes=("read", "trade"),
    symbols=("BTCUSDT",),
    max_notional=Decimal(5000),
    max_orders_per_minute=4,
)


def host(tmp_path: Path, name: str, exchange_url: str) -> tuple[Vault, str]:
    """A vault under ``tmp_path/name`` with Binance credential ``bn`` and bot1's token."""
    vault = make_vault(
        tmp_path / name, {"bn": ("binance", exchange_url)}, policies={"bn": FOUR_A_MINUTE}
    )
    return vault, new_token(vault, "bot1", ["bn"])


def order_rows(audit: Path) -> list[StoredRow]:
    return [r for r in read_rows(audit) if r.row.kind in ("intent", "denied", "result")]
