"""What the gateway has let through recently: the facts behind per-minute and per-day policy rules.

    >>> activity.orders_last_minute("binance-main"), activity.daily_notional("binance-main")
    (3, Decimal('1520.5'))
    >>> activity.record("binance-main", "grid-bot", orders=1, notional=Decimal("500"))

Orders are counted when the policy allows them, before they are sent, so
requests that arrive together cannot all squeeze under a limit. The counts
live in memory, and a gateway rebuilds them at start from the audit log
(``rebuild``): every order intent row of the last minute and of the UTC day
so far, with the notional the gateway counted for it (the row's
``order.notional``), so a restart resets neither a per-minute limit nor a
daily cap. Orders refused by the rate limiter after the policy allowed them
never left and have no intent row: a restart forgets them, which only ever
gives back budget that was not used at the exchange.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

from keybroker.audit import AuditLog, read_rows
from keybroker.clock import Clock

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000


class Activity:
    """Sliding one-minute order counts per credential and per bot; notional per UTC day."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._by_credential: dict[str, deque[int]] = defaultdict(deque)
        self._by_bot: dict[str, deque[int]] = defaultdict(deque)
        self._notional: dict[str, tuple[int, Decimal]] = {}

    def orders_last_minute(self, credential: str) -> int:
        return self._recent(self._by_credential, credential)

    def bot_orders_last_minute(self, bot: str) -> int:
        return self._recent(self._by_bot, bot)

    def daily_notional(self, credential: str) -> Decimal:
        day, used = self._notional.get(credential, (-1, Decimal(0)))
        return used if day == self._clock.now_ms() // _DAY_MS else Decimal(0)

    def record(
        self,
        credential: str,
        bot: str,
        *,
        orders: int,
        notional: Decimal,
        at_ms: int | None = None,
    ) -> None:
        """Count ``orders`` and ``notional`` now, or at ``at_ms`` (rebuilding, oldest first)."""
        now = self._clock.now_ms() if at_ms is None else at_ms
        for _ in range(orders):
            self._by_credential[credential].append(now)
            self._by_bot[bot].append(now)
        day = now // _DAY_MS
        if day == self._clock.now_ms() // _DAY_MS:
            self._notional[credential] = (day, self.daily_notional(credential) + notional)

    def rebuild(self, audit: Path | AuditLog) -> int:
        """Count again what the audit log says was sent today and in the last minute;
        returns the number of order rows read. A missing log counts nothing.

        ``audit`` is the log's path, or the ``AuditLog`` this process has open: the
        gateway passes its own, since reading by path opens and closes the file,
        which drops every POSIX lock the open log holds on it, and the next
        keybroker command to close the file elsewhere (``audit verify``, ``doctor``)
        then deleted the WAL the gateway was still writing every row into.
        """
        now = self._clock.now_ms()
        since = min(now - _MINUTE_MS, now // _DAY_MS * _DAY_MS)
        placed = {"kind": "intent", "request_kind": "order_place"}
        if isinstance(audit, AuditLog):
            rows = audit.read_rows(since_ms=since, match=placed)
            denied = audit.read_rows(since_ms=since, match={"kind": "denied"})
        elif not audit.exists():
            return 0
        else:
            rows = read_rows(audit, since_ms=since, match=placed)
            denied = read_rows(audit, since_ms=since, kind="denied")
        refused = {  # intents a refusal closed (a shared store's admission said no): not sent
            stored.row.intent_id for stored in denied if stored.row.intent_id is not None
        }
        for stored in rows:
            row = stored.row
            if row.credential is None or row.order is None or stored.id in refused:
                continue
            orders = _whole(row.order.get("batch_size")) or 1
            self.record(
                row.credential,
                row.bot or "",
                orders=orders if stored.ts_ms > now - _MINUTE_MS else 0,
                notional=_row_notional(row.order),
                at_ms=stored.ts_ms,
            )
        return len(rows)

    def _recent(self, table: dict[str, deque[int]], name: str) -> int:
        times = table.get(name)
        if not times:
            return 0
        cutoff = self._clock.now_ms() - _MINUTE_MS
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times)


def _row_notional(order: Mapping[str, str]) -> Decimal:
    """The notional an intent row records; rows from before it was recorded: from its fields."""
    counted = _decimal(order.get("notional"))
    if counted is not None:
        return counted
    quote = _decimal(order.get("quote_quantity"))
    if quote is not None:
        return abs(quote)
    quantity, price = _decimal(order.get("quantity")), _decimal(order.get("price"))
    if quantity is not None and price is not None:
        return abs(quantity * price) * (_whole(order.get("batch_size")) or 1)
    return Decimal(0)


def _decimal(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _whole(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
