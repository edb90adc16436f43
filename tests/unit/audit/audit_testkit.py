"""Rows that look like a gateway's, for the audit tests (imported by them, not collected)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from keybroker.audit import AuditLog, AuditRow
from keybroker.clock import FixedClock

START_MS = 1_700_000_000_000


def intent(n: int) -> AuditRow:
    return AuditRow(
        "intent",
        bot=f"bot-{n}",
        credential="binance-main",
        exchange="binance",
        environment="testnet",
        method="POST",
        path="/api/v3/order",
        request_kind="order_place",
        order={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": f"0.{n:03d}"},
        decision="allow",
        client_order_id=f"kb-{n:06d}",
    )


def result(n: int, intent_id: int) -> AuditRow:
    return AuditRow(
        "result",
        bot=f"bot-{n}",
        credential="binance-main",
        exchange="binance",
        environment="testnet",
        method="POST",
        path="/api/v3/order",
        request_kind="order_place",
        status=400 if n % 2 else 200,
        venue_code="-2010" if n % 2 else None,
        detail=f"marker-detail-{n:04d} Account has insufficient balance" if n % 2 else None,
        latency_ms=12.5 + n,
        intent_id=intent_id,
        client_order_id=f"kb-{n:06d}",
        paper=n % 3 == 0,
    )


def write_log(path: Path, pairs: int, clock: FixedClock | None = None) -> None:
    """``pairs`` intent rows each followed by its result row, one ms apart."""
    clock = clock or FixedClock(START_MS)
    with AuditLog.open(path, clock=clock) as log:
        for n in range(pairs):
            intent_id = log.append_sync(intent(n))
            clock.advance(1)
            log.append_sync(result(n, intent_id))
            clock.advance(1)


def stored_values(path: Path, row_id: int) -> dict[str, object]:
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM audit WHERE id = ?", (row_id,)).fetchone()
        return dict(row)
    finally:
        conn.close()
