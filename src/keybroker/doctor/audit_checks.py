"""Check 8: the audit log is there and its hash chain verifies; alerts reach a person.

    >>> check_audit_chain(inputs)    # pass: "1,204 rows, chain intact"

Alerts are read from what the last ``keybroker serve`` recorded
(``<home>/gateway.json``): a webhook or a command besides the log line that
every alert writes, which nobody reads at 3 a.m.
"""

from __future__ import annotations

from keybroker.audit import verify_chain
from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result
from keybroker.errors import KeybrokerError
from keybroker.gateway.record import ServeRecord, read_record


def check_audit_chain(inputs: Inputs) -> list[Result]:
    """A missing log warns (no gateway ran yet, or it was deleted); a broken chain fails."""
    path = inputs.settings.audit_path
    if not path.exists():
        return [
            Result(
                "audit",
                "audit.chain",
                "warn",
                f"no audit log at {path}: no gateway has run from this home, or the log was "
                "removed (keybroker serve creates it)",
            )
        ]
    report = verify_chain(path)
    if not report.ok:
        where = f" at row {report.first_broken}" if report.first_broken is not None else ""
        return [
            Result(
                "audit",
                "audit.chain",
                "fail",
                f"the audit log's chain is broken{where}: {report.reason}; keep the file as "
                "evidence and run `keybroker audit verify`",
            )
        ]
    return [
        Result(
            "audit",
            "audit.chain",
            "pass",
            f"{report.rows} rows, hash chain intact; head {report.head or '-'}",
        )
    ]


def serve_record(inputs: Inputs) -> tuple[ServeRecord | None, str | None]:
    """The last serve's settings, or (None, why it could not be read)."""
    try:
        return read_record(inputs.settings.gateway_record_path), None
    except KeybrokerError as error:
        return None, str(error)


def check_alerts(inputs: Inputs) -> list[Result]:
    """The last gateway start had --alert-webhook or --alert-command."""
    record, problem = serve_record(inputs)
    if problem is not None:
        return [Result("audit", "audit.alerts", "warn", problem)]
    if record is None:
        return [
            Result(
                "audit",
                "audit.alerts",
                "warn",
                "no gateway has started from this home: start it with --alert-webhook URL "
                "or --alert-command CMD so refusals and bans reach a person",
            )
        ]
    if not record.alerts_configured:
        return [
            Result(
                "audit",
                "audit.alerts",
                "warn",
                "the gateway sends alerts to its log only: restart it with --alert-webhook URL "
                "or --alert-command CMD",
            )
        ]
    where = record.alert_webhook_host or "a command"
    if record.alert_webhook_host and record.has_alert_command:
        where += " and a command"
    return [Result("audit", "audit.alerts", "pass", f"alerts go to {where}")]
