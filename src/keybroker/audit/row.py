"""What one audit row holds, and how it becomes the columns that are stored and hashed.

    >>> row = AuditRow("intent", bot="bot1", credential="binance-main", exchange="binance",
    ...                environment="testnet", method="POST", path="/api/v3/order",
    ...                request_kind="order_place", order={"symbol": "BTCUSDT", "side": "BUY"})
    >>> to_columns(check_row(row), id=1, ts_ms=1_700_000_000_000)["order_json"]
    '{"side":"BUY","symbol":"BTCUSDT"}'

A row never carries a secret, a signature or a bot token: callers pass names,
paths and order fields only. As a second line of defence ``check_row``
masks what looks like one anyway (a ``kb_`` token, or a ``signature=``,
``apiKey=`` ... query parameter in a path or detail), because an audit log
is kept for years and copied around, and a leaked value in it cannot be
taken back.

The stored columns are the hashed ones (``chain.py``): each is text, an
integer, a finite float or NULL, so a row read back hashes exactly as it was
written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime

from keybroker.errors import InvalidInput

KINDS = ("intent", "result", "denied", "event")

# Every stored column except ``hash``, in table order. The canonical encoding
# sorts keys, so this order matters for the table and CSV only.
COLUMNS = (
    "id",
    "ts_ms",
    "kind",
    "bot",
    "credential",
    "exchange",
    "environment",
    "method",
    "path",
    "request_kind",
    "order_json",
    "decision",
    "rule",
    "detail",
    "status",
    "venue_code",
    "latency_ms",
    "intent_id",
    "client_order_id",
    "paper",
)
_TEXT_FIELDS = (
    "kind",
    "bot",
    "credential",
    "exchange",
    "environment",
    "method",
    "path",
    "request_kind",
    "decision",
    "rule",
    "detail",
    "venue_code",
    "client_order_id",
)
MAX_TEXT = 4096
"""Longer text (an exchange's error page as a detail) is cut: rows stay small."""

_TOKEN = re.compile(r"kb(?:adm)?_[A-Za-z0-9_\-]{8,}")  # bot and admin tokens
_SECRET_PARAMETER = re.compile(
    r"(?i)(?<![A-Za-z0-9_\-])"
    r"(signature|sign|sig|secret|api[_\-]?secret|passphrase|password|token|"
    r"api[_\-]?key|access[_\-]?key|x-keybroker-token)"
    r"=[^&;#\s\"']*"
)
MASK = "***"
# Built once (json.dumps with options builds an encoder per call); sorted keys, compact.
_ORDER_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class AuditRow:
    """What callers append; no secret, signature or token may ever be a field."""

    kind: str  # "intent" | "result" | "denied" | "event"
    bot: str | None = None
    credential: str | None = None
    exchange: str | None = None
    environment: str | None = None
    method: str | None = None
    path: str | None = None
    request_kind: str | None = None
    order: Mapping[str, str] | None = None  # order intent fields as text (Decimal -> str)
    decision: str | None = None
    rule: str | None = None
    detail: str | None = None
    status: int | None = None
    venue_code: str | None = None
    latency_ms: float | None = None
    intent_id: int | None = None  # result rows point at their intent row
    client_order_id: str | None = None
    paper: bool = False


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A row as read back: its id, time, chain hash and fields."""

    id: int
    ts_ms: int
    hash: str
    row: AuditRow

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.ts_ms / 1000, tz=UTC)

    def to_dict(self) -> dict[str, object]:
        """The export shape: every field, the time as ISO 8601 UTC and as ms, and the hash."""
        out: dict[str, object] = {
            "id": self.id,
            "time": iso_time(self.ts_ms),
            "ts_ms": self.ts_ms,
            "hash": self.hash,
        }
        for item in fields(AuditRow):
            value = getattr(self.row, item.name)
            out[item.name] = dict(value) if isinstance(value, Mapping) else value
        return out


def iso_time(ts_ms: int) -> str:
    """``2024-05-01T12:00:00.123Z``: milliseconds, UTC, sortable as text."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def mask_secrets(text: str) -> str:
    """Mask bot tokens and secret-looking query parameters (keeps the parameter's name)."""
    if "kb_" not in text and "kbadm_" not in text and "=" not in text:
        return text  # the common case (names, paths without a query), without the regexes
    text = _TOKEN.sub(lambda match: match.group(0).split("_", 1)[0] + "_" + MASK, text)
    return _SECRET_PARAMETER.sub(lambda match: f"{match.group(1)}={MASK}", text)


def check_row(row: AuditRow) -> AuditRow:
    """Validate types, mask secret-looking text, cut long text; InvalidInput names the field.

    Runs in the caller's thread before a row is queued, so a bad row fails its
    own caller and never the group it would have been committed with. Text
    and numbers come out as exact ``str``/``int``/``float`` (an enum member
    would not hash as what SQLite gives back).
    """
    if row.kind not in KINDS:
        raise InvalidInput(
            f"unknown audit row kind {row.kind!r}; choose one of: {', '.join(KINDS)}"
        )
    changes: dict[str, object] = {}
    for name in _TEXT_FIELDS:
        value = getattr(row, name)
        if value is None:
            continue
        if (
            type(value) is str
            and len(value) <= MAX_TEXT
            and "kb_" not in value
            and "=" not in value
        ):
            continue  # _clean's common case, without the call: rows are checked per request
        if type(value) is not str:
            if not isinstance(value, str):
                raise InvalidInput(f"audit field {name} must be text, not {type(value).__name__}")
            value = changes[name] = str.__str__(value)
        clean = _clean(value)
        if clean is not value:
            changes[name] = clean
    if row.order is not None:
        order = _check_order(row.order)
        if order is not None:
            changes["order"] = order
    for name in ("status", "intent_id"):
        value = getattr(row, name)
        if value is None or type(value) is int:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput(f"audit field {name} must be an integer")
        changes[name] = int(value)
    latency = row.latency_ms
    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, int | float):
            raise InvalidInput("audit field latency_ms must be a number")
        if not math.isfinite(latency):
            raise InvalidInput("audit field latency_ms must be finite")
        # Always a float (SQLite REAL gives 5.0 back for 5), to the microsecond.
        rounded = round(float(latency), 3)
        if type(latency) is not float or rounded != latency:
            changes["latency_ms"] = rounded
    if not isinstance(row.paper, bool):
        raise InvalidInput("audit field paper must be true or false")
    return replace(row, **changes) if changes else row  # type: ignore[arg-type]


def _clean(text: str) -> str:
    """``text`` itself when nothing needs masking or cutting (the common case)."""
    if len(text) <= MAX_TEXT and "kb_" not in text and "=" not in text:
        return text
    clean = _cut(mask_secrets(text))
    return text if clean == text else clean


def _check_order(order: Mapping[str, str]) -> dict[str, str] | None:
    """A clean copy of the order fields, or None when they are fine as they are."""
    if not isinstance(order, Mapping):
        raise InvalidInput("audit field order must map text to text")
    changed = not isinstance(order, dict)
    clean: dict[str, str] = {}
    for key, value in order.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInput("audit field order must map text to text")
        if type(key) is not str or type(value) is not str:
            key, value, changed = str.__str__(key), str.__str__(value), True
        if len(value) <= MAX_TEXT and "kb_" not in value and "=" not in value:
            clean[key] = value  # _clean's common case, without the call
            continue
        masked = _clean(value)
        changed = changed or masked is not value
        clean[key] = masked
    return clean if changed else None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def to_columns(row: AuditRow, *, id: int, ts_ms: int) -> dict[str, object]:
    """The stored (and hashed) columns of a checked row, ``hash`` excepted."""
    order = None if row.order is None else _ORDER_ENCODER.encode(dict(row.order))
    return {
        "id": id,
        "ts_ms": ts_ms,
        "kind": row.kind,
        "bot": row.bot,
        "credential": row.credential,
        "exchange": row.exchange,
        "environment": row.environment,
        "method": row.method,
        "path": row.path,
        "request_kind": row.request_kind,
        "order_json": order,
        "decision": row.decision,
        "rule": row.rule,
        "detail": row.detail,
        "status": row.status,
        "venue_code": row.venue_code,
        "latency_ms": row.latency_ms,
        "intent_id": row.intent_id,
        "client_order_id": row.client_order_id,
        "paper": 1 if row.paper else 0,
    }


def from_columns(values: Mapping[str, object], hash: str) -> StoredRow:
    """Read back what ``to_columns`` stored (for display; ``verify_chain`` checks the bytes)."""
    order_json = values["order_json"]
    order: dict[str, str] | None = None
    if isinstance(order_json, str):
        try:
            parsed = json.loads(order_json)
        except ValueError:
            parsed = {"unreadable": order_json}
        order = {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else None
    row = AuditRow(
        kind=str(values["kind"]),
        bot=_text(values["bot"]),
        credential=_text(values["credential"]),
        exchange=_text(values["exchange"]),
        environment=_text(values["environment"]),
        method=_text(values["method"]),
        path=_text(values["path"]),
        request_kind=_text(values["request_kind"]),
        order=order,
        decision=_text(values["decision"]),
        rule=_text(values["rule"]),
        detail=_text(values["detail"]),
        status=_integer(values["status"]),
        venue_code=_text(values["venue_code"]),
        latency_ms=_number(values["latency_ms"]),
        intent_id=_integer(values["intent_id"]),
        client_order_id=_text(values["client_order_id"]),
        paper=bool(values["paper"]),
    )
    return StoredRow(
        id=_integer(values["id"]) or 0, ts_ms=_integer(values["ts_ms"]) or 0, hash=hash, row=row
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) else None
