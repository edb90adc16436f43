"""``keybroker incident NAME``: a key may be compromised; stop it first, then walk the way out.

    $ keybroker incident binance-main               # halts at once, then asks step by step
    $ keybroker incident binance-main --yes --json  # scripts: every step it can do alone

Seed 000 §10 and seed 001 in order: (1) halt the credential at once, with
the vault's halt that ``keybroker halt`` uses (no passphrase: an emergency
must not wait for one), so every gateway on this vault refuses its new
orders within a second; (2) show what it did lately (orders and errors from
the audit log) and which bot tokens can use it; (3) revoke those tokens;
(4) have the key disabled at the exchange (keybroker never signs key
management, so a person does this on the exchange's site); (5) rotate to a
new key; (6) run the doctor's checks for this credential. Every step that
changes something is written to the audit log as an ``event`` row.

Interactive by default. ``--yes`` answers yes where keybroker can act alone
(revoking tokens); what needs a person (the exchange's site, typing a new
key) stays "pending" with the command to run. ``--json`` never prompts.
The halt is never lifted here: ``keybroker resume NAME`` once all is done.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer

from keybroker.audit import AuditLog, AuditRow, StoredRow, read_rows
from keybroker.cli.context import CliState, open_vault, unlock
from keybroker.cli.output import note, print_json, print_table, say
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import AuditError, KeybrokerError
from keybroker.settings import PASSPHRASE_VARIABLE
from keybroker.vault import CredentialRecord, Vault

SCHEMA = "keybroker-incident"
SCHEMA_VERSION = 1
RECENT_ROWS = 5000
"""How far back the audit log is read for this credential's orders and errors."""
SHOWN = 10
ORDER_KINDS = ("order_place", "order_cancel")
EXIT_FAILED = 2


@dataclass
class Step:
    """One step of the walk-through: ``done``, ``skipped``, ``pending`` or ``failed``."""

    step: str
    status: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"step": self.step, "status": self.status, "detail": self.detail}


class _Audit:
    """Incident events for the audit log; a log that cannot be written is said, not fatal."""

    def __init__(self, path: Path, record: CredentialRecord) -> None:
        self.path = path
        self.record = record
        self.problem: str | None = None

    def event(self, decision: str, detail: str) -> None:
        row = AuditRow(
            "event",
            credential=self.record.name,
            exchange=self.record.exchange,
            environment=self.record.environment,
            decision=decision,
            rule="incident",
            detail=detail,
        )
        try:
            with AuditLog.open(self.path) as log:
                log.append_sync(row)
        except AuditError as error:
            self.problem = str(error)


def _recent(path: Path, name: str) -> tuple[list[StoredRow], list[StoredRow]]:
    """This credential's latest orders sent (intent rows) and errors (each at most SHOWN).

    Orders are read apart from errors: a bot hammering a halted key fills the
    log with denials, which must not push out of sight the orders that did go
    to the exchange; and only this credential's rows are read, however many
    other credentials wrote since.
    """
    if not path.is_file():
        return [], []
    mine = {"credential": name}
    try:
        orders = [
            r
            for kind in ORDER_KINDS
            for r in read_rows(
                path, last=SHOWN, match={**mine, "kind": "intent", "request_kind": kind}
            )
        ]
        rows = read_rows(path, last=RECENT_ROWS, match=mine)
    except AuditError:
        return [], []
    orders.sort(key=lambda r: r.id)
    errors = [
        r
        for r in rows
        if r.row.kind == "denied"
        or (r.row.kind == "result" and (r.row.status is None or r.row.status >= 400))
    ]
    return orders[-SHOWN:], errors[-SHOWN:]


def _row_line(stored: StoredRow) -> str:
    row = stored.row
    parts = [
        str(stored.to_dict()["time"]),
        row.kind,
        row.bot or "-",
        row.method or "",
        row.path or "",
    ]
    if row.order:
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(row.order.items())))
    if row.status is not None:
        parts.append(f"status {row.status}")
    if row.venue_code:
        parts.append(f"code {row.venue_code}")
    if row.rule:
        parts.append(f"rule {row.rule}")
    if row.detail:
        parts.append(row.detail)
    return " ".join(part for part in parts if part)


def _ask(question: str, interactive: bool, default: bool = True) -> bool:
    if not interactive:
        return False
    return typer.confirm(question, default=default, err=True)


def _ensure_unlocked(vault: Vault, state: CliState, passphrase_file: Path | None) -> None:
    if not vault.is_unlocked:
        unlock(vault, state, passphrase_file)


def _revoke_tokens(
    vault: Vault,
    state: CliState,
    passphrase_file: Path | None,
    bots: list[str],
    audit: _Audit,
    *,
    yes: bool,
    interactive: bool,
) -> Step:
    if not bots:
        return Step("revoke_tokens", "skipped", "no active bot token uses this credential")
    command = " && ".join(f"keybroker tokens revoke {bot}" for bot in bots)
    if not (yes or _ask(f"Revoke the tokens of {', '.join(bots)}?", interactive)):
        return Step("revoke_tokens", "pending", f"not revoked; to do it: {command}")
    try:
        _ensure_unlocked(vault, state, passphrase_file)
        for bot in bots:
            vault.revoke_token(bot)
            audit.event("token_revoked", f"bot {bot}: token revoked during the incident")
    except KeybrokerError as error:
        return Step("revoke_tokens", "failed", f"{error}; to do it: {command}")
    return Step("revoke_tokens", "done", f"revoked: {', '.join(bots)}")


def _disable_at_exchange(record: CredentialRecord, audit: _Audit, *, interactive: bool) -> Step:
    what = (
        f"disable or delete the key {record.key_id} on {record.exchange}'s API management "
        "page (keybroker never signs key management)"
    )
    if interactive:
        note(f"Now {what}.")
    if _ask("Done: is the key disabled at the exchange?", interactive, default=False):
        audit.event("exchange_key_disabled", f"the user confirmed {record.key_id} is disabled")
        return Step("disable_at_exchange", "done", f"confirmed: {record.key_id} disabled")
    return Step("disable_at_exchange", "pending", what)


def _rotate(
    vault: Vault,
    state: CliState,
    passphrase_file: Path | None,
    record: CredentialRecord,
    audit: _Audit,
    *,
    interactive: bool,
) -> Step:
    command = f"keybroker keys rotate {record.name}"
    if not _ask(
        f"Rotate {record.name} to a new key now (make it at {record.exchange} first)?",
        interactive,
    ):
        return Step("rotate", "pending", f"make a new key at {record.exchange}, then: {command}")
    from keybroker.cli.material import from_prompts, is_current_key
    from keybroker.exchanges import get_profile

    try:
        _ensure_unlocked(vault, state, passphrase_file)
        material = from_prompts(get_profile(record.exchange), record.key_type)
        try:
            if is_current_key(vault, record.name, material):
                # The key at risk stays in service: never report that as rotated.
                return Step(
                    "rotate",
                    "failed",
                    f"that is the key at risk ({record.key_id}), not a new one; make a new "
                    f"key at {record.exchange}, then: {command}",
                )
            rotated = vault.rotate(record.name, material)
        finally:
            material.secret.wipe()
    except KeybrokerError as error:
        return Step("rotate", "failed", f"{error}; to do it: {command}")
    audit.event("rotated", f"new key {rotated.key_id} replaces {record.key_id}")
    return Step("rotate", "done", f"new key {rotated.key_id}; the old one is forgotten")


def incident(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The credential at risk.")],
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="Do without asking what keybroker can do alone (revoke the bots' tokens); "
            "steps that need a person stay pending.",
        ),
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the incident as JSON; never prompts.")
    ] = False,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
    ] = None,
) -> None:
    """A key may be leaked: halt it now, see what it did, revoke, rotate, re-check.

    The halt comes first and needs no passphrase; every gateway on this vault
    refuses the credential's new orders within a second. Then: its recent
    orders and errors, the bot tokens using it, revoking them, disabling the
    key at the exchange, rotating, and the doctor's checks for it.
    Lift the halt afterwards with: keybroker resume NAME
    Example: keybroker incident binance-main
    """
    from keybroker.doctor import CREDENTIAL_CHECKS, Inputs, report_document, run

    state = CliState.of(ctx)
    assert state.settings is not None
    interactive = not json_output and sys.stdin.isatty()
    can_unlock = (
        interactive or passphrase_file is not None or bool(state.environ.get(PASSPHRASE_VARIABLE))
    )
    audit_path = state.settings.audit_path
    with open_vault(state) as vault:
        record = vault.record(name)  # CredentialNotFound: nothing is halted by a typo
        vault.halt(name, "keybroker incident")
        halt = {h.name: h for h in vault.list_halts()}[name]
        audit = _Audit(audit_path, record)
        audit.event("halted", "keybroker incident: new orders refused until resumed")
        if not json_output:
            say(f"Halted {name}: gateways using this vault refuse its new orders within a second.")
        orders, errors = _recent(audit_path, name)
        bots = vault.holders_of(name, halt.halted_at)
        if not json_output:
            _show_findings(record, orders, errors, bots)
        steps = [
            _revoke_tokens(
                vault, state, passphrase_file if can_unlock else None, bots, audit,
                yes=yes and can_unlock, interactive=interactive,
            ),
            _disable_at_exchange(record, audit, interactive=interactive),
            _rotate(vault, state, passphrase_file, record, audit, interactive=interactive),
        ]  # fmt: skip
        if yes and not can_unlock and bots:
            steps[0].detail += " (no passphrase source: give --passphrase-file)"
        inputs = Inputs(
            settings=state.settings,
            environ=state.environ,
            repo=Path("."),
            credential=name,
            vault=vault,
        )
        results = run(inputs, CREDENTIAL_CHECKS)
        done = ", ".join(s.step for s in steps if s.status == "done") or "nothing"
        audit.event("incident_walked", f"steps done: {done}; the halt stands")
    report = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "credential": name,
        "exchange": record.exchange,
        "environment": record.environment,
        "key_id": record.key_id,
        "halted": True,
        "halted_at": halt.halted_at.astimezone(UTC).isoformat(),
        "orders": [stored.to_dict() for stored in orders],
        "errors": [stored.to_dict() for stored in errors],
        "tokens": bots,
        "steps": [step.to_dict() for step in steps],
        "audited": audit.problem is None,
        "doctor": report_document(results, strict=False),
    }
    if json_output:
        print_json(report)
    else:
        from keybroker.cli.doctor_commands import show_results

        print_table("steps", ("step", "status", "detail"),
                    [(s.step, s.status, s.detail) for s in steps])  # fmt: skip
        show_results(results, f"keybroker doctor for {name}")
        say(f"{name} stays halted; when the new key is in and checks pass: keybroker resume {name}")
    if audit.problem is not None:
        typer.echo(f"keybroker: the audit log could not be written: {audit.problem}", err=True)
    if audit.problem is not None or any(step.status == "failed" for step in steps):
        raise typer.Exit(EXIT_FAILED)


def _show_findings(
    record: CredentialRecord, orders: list[StoredRow], errors: list[StoredRow], bots: list[str]
) -> None:
    say(f"{record.name}: {record.exchange} {record.environment}, key {record.key_id}")
    say(f"Recent orders ({len(orders)}):" if orders else "No recent orders in the audit log.")
    for stored in orders:
        say(f"  {_row_line(stored)}")
    say(f"Recent errors ({len(errors)}):" if errors else "No recent errors in the audit log.")
    for stored in errors:
        say(f"  {_row_line(stored)}")
    say(f"Bot tokens using it: {', '.join(bots)}" if bots else "No active bot token uses it.")
