"""Every request the emulator received, so a test can say "exactly one order arrived".

    >>> journal = Journal()
    >>> entry = journal.record(Entry(method="POST", path="/api/v3/order", ...))
    >>> [e for e in journal.entries() if e.orders]

Served as JSON at ``GET /__emulator__/journal`` (``?since=SEQ`` for entries
after a sequence number). An entry is written for every exchange request,
whatever happened to it: refused by a signature check or a rate limit,
answered with an injected 5xx, or processed and then dropped. ``accepted``
says whether the exchange carried the request out; ``orders`` lists the
orders it created (after their immediate fills), ``withdrawal`` the withdrawal
it was asked for (never executed). Secrets and signatures are not recorded.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True, slots=True)
class Entry:
    method: str
    path: str
    params: dict[str, object]
    seq: int = 0
    time_ms: int = 0
    api_key: str | None = None
    kind: str = "public"  # public, private, order, cancel, withdraw
    accepted: bool = False
    status: int = 200
    code: str | None = None  # the exchange's error code, if it answered with one
    fault: str | None = None
    orders: list[dict[str, object]] = field(default_factory=list)
    withdrawal: dict[str, object] | None = None
    transport: str = "rest"  # rest, or ws (WebSocket API requests and stream subscriptions)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Journal:
    """Append-only and thread-safe: the server appends, tests read from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []

    def record(self, entry: Entry) -> Entry:
        with self._lock:
            numbered = replace(entry, seq=len(self._entries) + 1)
            self._entries.append(numbered)
            return numbered

    def entries(self, since: int = 0) -> list[Entry]:
        with self._lock:
            return list(self._entries[since:])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
