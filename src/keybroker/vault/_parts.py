"""What the parts of ``Vault`` share: the connection, its lock, the clock and the header.

    class TokenStore(VaultParts):
        def tokens_version(self) -> int:
            with self._lock, _file.sqlite_errors():
                return int(self._conn.execute("SELECT ...").fetchone()[0])

``Vault`` (store.py) is assembled from one class per concern: credentials in
store.py itself, policies.py, tokens.py, halts.py and nonces.py. Each part
reads the state below, which ``Vault.__init__`` sets; none keeps state of its
own, so there is one connection, one lock and one data key per open vault.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime

from keybroker.clock import Clock
from keybroker.secret import Secret
from keybroker.vault import _file


class VaultParts:
    """The shared state of an open vault, declared once for every part (set by Vault)."""

    _conn: sqlite3.Connection
    _lock: threading.RLock
    _clock: Clock
    _header: _file.Header
    # bot -> when touch_token last wrote for it (ms), to keep touches rare.
    _touched: dict[str, int]

    def _require_key(self) -> Secret:
        raise NotImplementedError  # Vault's own

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=UTC)


def canonical(value: object) -> bytes:
    """Sorted-key compact JSON: one byte string per value, so no two rows collide."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def time_text(moment: datetime) -> str:
    """How every time is stored: UTC, ISO 8601, microseconds (matches records.py)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: object) -> datetime:
    """A stored time back; ValueError or TypeError for anything keybroker did not write."""
    if not isinstance(value, str):
        raise TypeError("time")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("time without zone")
    return moment.astimezone(UTC)
