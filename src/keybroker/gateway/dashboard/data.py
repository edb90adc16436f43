"""What each dashboard page shows, as JSON documents built from the running gateway's state.

    >>> overview(gateway, paper)["credentials"][0]["halted"]
    False
    >>> audit(gateway.audit, after_id=0, match={"bot": "grid"}, limit=200)

Everything here reads metadata only: credential records (never the key
material), token records (never a token: the vault has none), limiter
snapshots, alerts and audit rows. An audit row keeps the order's fields and
its outcome; the row's path has no query string, and ``check_row`` masked
anything secret-looking before it was ever written. So a page can show all
of it, and ``tests/integration/dashboard`` checks that a canary secret and
the tokens appear in no page, answer or console line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from keybroker import __version__
from keybroker.audit import AuditLog, StoredRow
from keybroker.audit.row import iso_time
from keybroker.errors import KeybrokerError
from keybroker.exchanges import get_profile
from keybroker.gateway.access import ALL
from keybroker.gateway.dashboard.paper import PaperView
from keybroker.gateway.state import Gateway
from keybroker.vault import CredentialRecord, rotation_status

MAX_ROWS = 500


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def hosts_of(record: CredentialRecord) -> set[str]:
    """The exchange hosts this credential's requests go to (its breakers are kept per host)."""
    if record.base_url:
        return {urlsplit(record.base_url).netloc}
    try:
        profile = get_profile(record.exchange)
    except KeybrokerError:
        return set()
    return {
        urlsplit(urls[record.environment]).netloc
        for urls in profile.base_urls.values()
        if record.environment in urls
    }


def row_json(stored: StoredRow) -> dict[str, object]:
    """One audit row for a page: the order intent and the outcome, never a hash or signature."""
    row = stored.row
    return {
        "id": stored.id,
        "time": iso_time(stored.ts_ms),
        "ts_ms": stored.ts_ms,
        "kind": row.kind,
        "bot": row.bot,
        "credential": row.credential,
        "exchange": row.exchange,
        "environment": row.environment,
        "method": row.method,
        "path": row.path,
        "request_kind": row.request_kind,
        "order": dict(row.order) if row.order is not None else None,
        "decision": row.decision,
        "rule": row.rule,
        "detail": row.detail,
        "status": row.status,
        "venue_code": row.venue_code,
        "latency_ms": row.latency_ms,
        "intent_id": row.intent_id,
        "client_order_id": row.client_order_id,
        "paper": row.paper,
    }


def is_problem(stored: StoredRow) -> bool:
    """A refusal, an exchange error, or a request that got no answer."""
    row = stored.row
    if row.kind == "denied":
        return True
    return row.kind == "result" and (row.status is None or row.status >= 400)


def last_problem(log: AuditLog, credential: str) -> dict[str, object] | None:
    """The newest refusal or failure of ``credential`` among its recent rows."""
    rows = log.read_rows(last=200, match={"credential": credential})
    for stored in reversed(rows):
        if is_problem(stored):
            row = stored.row
            if row.kind == "denied":
                text = f"denied: {row.rule}" + (f" ({row.detail})" if row.detail else "")
            elif row.status is None:
                text = f"no answer: {row.detail or 'unknown'}"
            else:
                code = f" code {row.venue_code}" if row.venue_code else ""
                text = f"HTTP {row.status}{code}" + (f" ({row.detail})" if row.detail else "")
            return {"time": iso_time(stored.ts_ms), "text": text}
    return None


def last_problems(log: AuditLog, names: list[str]) -> dict[str, dict[str, object] | None]:
    """``last_problem`` of each credential (file reads: call it from a worker thread)."""
    return {name: last_problem(log, name) for name in names}


def overview(gateway: Gateway, paper: PaperView) -> dict[str, object]:
    """Each credential with its exchange, environment, mode, scopes, key age, halt and breaker."""
    now_ms = gateway.clock.now_ms()
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    halted = gateway.access.halted
    breakers = {
        str(entry["host"]): int(str(entry["until_ms"]))
        for entry in gateway.limiter.snapshot()
        if entry.get("type") == "breaker"
    }
    credentials = []
    for record in gateway.access.vault.list_credentials():
        since = record.rotated_at or record.created_at
        open_breakers = {
            host: until for host, until in breakers.items() if host in hosts_of(record)
        }
        try:
            mode = paper.mode(record.name)
        except Exception:  # a seam that fails must not take the page down
            mode = "unknown"
        credentials.append(
            {
                "name": record.name,
                "exchange": record.exchange,
                "environment": record.environment,
                "mode": mode,
                "scopes": list(record.scopes),
                "key_age_days": round((now - since).total_seconds() / 86400, 1),
                "key_since": _iso(since),
                "rotation": rotation_status(record, now),
                "halted": record.name in halted or ALL in halted,
                "halted_since": _iso(halted.get(record.name) or halted.get(ALL)),
                "breaker": "open" if open_breakers else "closed",
                "breaker_until": (iso_time(max(open_breakers.values())) if open_breakers else None),
                "last_error": None,  # filled by last_problems(), off the event loop
            }
        )
    metrics = gateway.metrics
    return {
        "version": __version__,
        "uptime_s": round((now_ms - gateway.started_ms) / 1000),
        "all_halted": ALL in halted,
        "credentials": credentials,
        "requests": {
            outcome: int(metrics.total("keybroker_requests_total", outcome=outcome))
            for outcome in ("forwarded", "denied", "rate_limited", "no_answer")
        },
    }


def limits(gateway: Gateway) -> dict[str, object]:
    """Each budget's use against its limit, plus pauses, open breakers and the queue."""
    budgets, pauses, breakers = [], [], []
    totals: dict[str, object] = {}
    for entry in gateway.limiter.snapshot():
        kind = entry.get("type")
        if kind == "budget":
            budgets.append(
                {
                    key: entry.get(key)
                    for key in (
                        "key",
                        "name",
                        "scope",
                        "counts",
                        "capacity",
                        "per_seconds",
                        "used",
                        "waiting",
                        "paused_until_ms",
                    )
                }
            )
        elif kind == "pause":
            pauses.append({"key": entry.get("key"), "until": iso_time(int(str(entry["until_ms"])))})
        elif kind == "breaker":
            until = iso_time(int(str(entry["until_ms"])))
            breakers.append({"host": entry.get("host"), "until": until})
        elif kind == "totals":
            totals = {key: value for key, value in entry.items() if key != "type"}
    return {"budgets": budgets, "pauses": pauses, "breakers": breakers, "totals": totals}


def audit(
    log: AuditLog, *, after_id: int, match: Mapping[str, str], limit: int
) -> dict[str, object]:
    """Rows after ``after_id`` (or the newest ``limit`` when it is 0) matching the filters."""
    limit = max(1, min(limit, MAX_ROWS))
    if after_id > 0:
        rows = log.read_rows(after_id=after_id, match=match, limit=limit)
    else:
        rows = log.read_rows(last=limit, match=match)
    return {"rows": [row_json(row) for row in rows]}


def alerts_raised(gateway: Gateway, *, after: int) -> list[dict[str, object]]:
    """Alerts raised since sequence number ``after`` (the last 500 are kept), oldest first."""
    return [
        {"seq": seq, "time": iso_time(ms), **event}
        for seq, ms, event in list(gateway.recent_alerts)
        if seq > after
    ]


def denials(log: AuditLog, *, after_id: int) -> list[dict[str, object]]:
    """Denied rows after ``after_id``, or the newest 100 when it is 0 (file reads)."""
    match = {"kind": "denied"}
    if after_id > 0:
        rows = log.read_rows(after_id=after_id, match=match, limit=MAX_ROWS)
    else:
        rows = log.read_rows(last=100, match=match)
    return [row_json(row) for row in rows]


def tokens(gateway: Gateway) -> dict[str, object]:
    """Bot tokens (name, credentials, last used, expiry, state) and admin tokens; never a token."""
    vault = gateway.access.vault
    now = datetime.fromtimestamp(gateway.clock.now_ms() / 1000, tz=UTC)
    return {
        "bots": [
            {
                "bot": token.bot,
                "state": token.state(now),
                "credentials": list(token.credentials),
                "max_orders_per_minute": token.max_orders_per_minute,
                "created_at": _iso(token.created_at),
                "expires_at": _iso(token.expires_at),
                "last_used_at": _iso(token.last_used_at),
                "revoked_at": _iso(token.revoked_at),
            }
            for token in vault.list_tokens()
        ],
        "admins": [
            {
                "name": token.name,
                "state": token.state(now),
                "created_at": _iso(token.created_at),
                "expires_at": _iso(token.expires_at),
                "last_used_at": _iso(token.last_used_at),
            }
            for token in vault.list_admin_tokens()
        ],
    }
