"""When a stored key is due for rotation (seed 000, §5).

    >>> rotation_status(record, now=datetime.now(UTC))
    'ok'

Trading keys can lose money, so they age faster: warn after 30 days, due
after 60. Read-only keys: warn after 60 days, due after 90. Age counts from
the last rotation, or from when the key was added if it never was rotated.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from keybroker.vault.records import CredentialRecord

RotationStatus = Literal["ok", "warn", "due"]

# (warn after, due after) by whether the key may trade.
_TRADE_LIMITS = (timedelta(days=30), timedelta(days=60))
_READ_LIMITS = (timedelta(days=60), timedelta(days=90))


def rotation_status(record: CredentialRecord, now: datetime) -> RotationStatus:
    """``"due"`` once the key is older than its limit, ``"warn"`` in the month before.

    "After 30 days" means strictly older than 30 days: a key exactly 30 days
    old is still ``"ok"``. ``now`` must be timezone-aware (records are UTC).
    """
    warn_after, due_after = _TRADE_LIMITS if "trade" in record.scopes else _READ_LIMITS
    age = now - (record.rotated_at or record.created_at)
    if age > due_after:
        return "due"
    if age > warn_after:
        return "warn"
    return "ok"
