"""One check's verdict, and the report they add up to (the ``--json`` schema lives here).

    >>> Result("process", "process.root", "warn", "running as root; run keybroker as a user")
    >>> exit_code([...], strict=False)      # 0 when nothing failed, else 2

Every result is built from names, paths, counts and masked values only: a
check that finds a secret says where it is and shows ``mask(value)``,
never the value, so a doctor report can be pasted into an issue or kept as
a CI artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[str, ...] = get_args(Status)

SCHEMA = "keybroker-doctor"
SCHEMA_VERSION = 1
"""Bumped when a key of the JSON document is removed or changes meaning (never for additions)."""

EXIT_OK = 0
EXIT_FAILED = 2

GROUPS: dict[str, str] = {
    "secrets": "secrets in code",
    "env": ".env files",
    "files": "keybroker's files",
    "output": "secret-safe output",
    "environments": "environments",
    "online": "the exchange's view",
    "rotation": "key rotation",
    "audit": "audit log and alerts",
    "gateway": "gateway settings",
    "process": "process",
}
"""Check groups in report order, the issue's checklist order, with their titles."""


@dataclass(frozen=True, slots=True)
class Result:
    """One check's verdict: status, a stable name, one line of advice, optional detail lines.

    ``subject`` names what was checked when a check runs per thing (a
    credential, an exchange). ``advice`` is one line that says what to do
    (or why all is well); ``details`` are the findings behind it.
    """

    group: str
    name: str
    status: Status
    advice: str
    details: tuple[str, ...] = ()
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.group not in GROUPS:
            raise ValueError(f"unknown group {self.group!r}")
        # One line of advice, always: a table cell and a CI log line each.
        object.__setattr__(self, "advice", " ".join(self.advice.split()))

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group,
            "name": self.name,
            "subject": self.subject,
            "status": self.status,
            "advice": self.advice,
            "details": list(self.details),
        }


def counts(results: Sequence[Result]) -> dict[str, int]:
    return {status: sum(1 for r in results if r.status == status) for status in STATUSES}


def exit_code(results: Sequence[Result], *, strict: bool) -> int:
    """0 when nothing failed (with ``strict``: nothing failed or warned), else 2."""
    bad = ("fail", "warn") if strict else ("fail",)
    return EXIT_FAILED if any(r.status in bad for r in results) else EXIT_OK


def report_document(results: Sequence[Result], *, strict: bool) -> dict[str, object]:
    """The ``--json`` document, schema version 1 (README and tests hold it stable).

    ``{"schema": "keybroker-doctor", "version": 1, "ok": bool, "strict": bool,
    "exit_code": 0|2, "counts": {"pass": n, "warn": n, "fail": n},
    "results": [{"group", "name", "subject", "status", "advice", "details"}]}``
    """
    code = exit_code(results, strict=strict)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "ok": code == EXIT_OK,
        "strict": strict,
        "exit_code": code,
        "counts": counts(results),
        "results": [result.to_dict() for result in results],
    }
