"""The audit log: every request's intent and result, durable and hash-chained.

    >>> log = AuditLog.open(settings.audit_path)
    >>> intent = await log.append(AuditRow("intent", bot="bot1", credential="binance-main", ...))
    >>> ...  # only now may the request leave
    >>> await log.append(AuditRow("result", ..., status=200, latency_ms=41.7, intent_id=intent))
    >>> verify_chain(settings.audit_path).ok
    True

``chain.py`` is the pure part (canonical encoding, SHA-256 links, checking a
sequence of rows), ``row.py`` what a row may hold, ``store.py`` the SQLite
file with group commit, ``alerts.py`` the log line, webhook and command that
tell a person something went wrong.
"""

from keybroker.audit.alerts import ALERTS, Alerter, alert_name
from keybroker.audit.chain import ChainReport
from keybroker.audit.row import KINDS, AuditRow, StoredRow
from keybroker.audit.store import AuditLog, read_rows, verify_chain

__all__ = [
    "ALERTS",
    "KINDS",
    "Alerter",
    "AuditLog",
    "AuditRow",
    "ChainReport",
    "StoredRow",
    "alert_name",
    "read_rows",
    "verify_chain",
]
