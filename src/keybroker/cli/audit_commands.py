"""``keybroker audit …``: read, follow, verify and export the audit log (``<home>/audit.db``).

    keybroker audit tail -n 50
    keybroker audit tail -f --json          # one JSON object per line, as rows arrive
    keybroker audit verify                  # exit 2 naming the first broken row
    keybroker audit export --since 7d --csv > audit.csv

None of these needs the passphrase: the log holds no secret (names, paths,
order fields, decisions and results only), and a person checking it may not
be the person who may unlock the vault. Nothing here writes to the log.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from keybroker.audit import StoredRow, read_rows, verify_chain
from keybroker.audit.row import COLUMNS
from keybroker.cli.context import CliState, show_help_without_command
from keybroker.cli.output import note, print_json, say
from keybroker.clock import Clock, SystemClock
from keybroker.errors import InvalidInput

EXIT_BROKEN = 2
FOLLOW_INTERVAL = 0.25
"""Seconds between looks for new rows in ``tail -f`` (a read of an index, cheap)."""
_EXPORT_BATCH = 1000

app = typer.Typer()


def register(root: typer.Typer) -> None:
    """Add ``keybroker audit`` to the root app."""
    root.add_typer(app, name="audit")


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """The audit log: tail (-f), verify the hash chain, export rows since a time."""
    show_help_without_command(ctx)


JsonLines = Annotated[
    bool, typer.Option("--json", help="One JSON object per row and line, for scripts.")
]


def _audit_path(ctx: typer.Context) -> Path:
    state = CliState.of(ctx)
    assert state.settings is not None
    return state.settings.audit_path


@app.command("tail")
def tail(
    ctx: typer.Context,
    lines: Annotated[
        int, typer.Option("-n", "--lines", help="How many of the last rows to show.", min=0)
    ] = 20,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new rows until Ctrl-C.")
    ] = False,
    json_output: JsonLines = False,
) -> None:
    """Show the last rows of the audit log; with -f keep following it.

    Example: keybroker audit tail -n 5 -f
    """
    path = _audit_path(ctx)
    show = _json_line if json_output else _human_line
    if not follow:
        for stored in read_rows(path, last=lines):
            say(show(stored))
        return
    try:
        last_id = 0
        waited = False
        while not path.is_file():
            if not waited:
                note(f"waiting for the audit log {path} to appear (Ctrl-C to stop)")
                waited = True
            time.sleep(FOLLOW_INTERVAL)
        for stored in read_rows(path, last=lines):
            say(show(stored))
            last_id = stored.id
        if last_id == 0:
            last_id = _last_id(path)
        while True:
            time.sleep(FOLLOW_INTERVAL)
            for stored in read_rows(path, after_id=last_id, limit=_EXPORT_BATCH):
                say(show(stored))
                last_id = stored.id
    except KeyboardInterrupt:
        return  # Ctrl-C is how following ends: not an error


def _last_id(path: Path) -> int:
    newest = read_rows(path, last=1)
    return newest[-1].id if newest else 0


@app.command("verify")
def verify(ctx: typer.Context, json_output: JsonLines = False) -> None:
    """Recompute the SHA-256 chain over every row; exit 2 naming the first broken row.

    On success it prints the head hash: note it somewhere else, and a later
    verify that ends on a different head shows rows were cut off the end.
    """
    report = verify_chain(_audit_path(ctx))
    if json_output:
        print_json(
            {
                "ok": report.ok,
                "rows": report.rows,
                "first_broken": report.first_broken,
                "reason": report.reason,
                "head": report.head,
            }
        )
    elif report.ok:
        say(f"audit log ok: {report.reason}; head {report.head or '-'}")
    if not report.ok:
        where = f"at row {report.first_broken}" if report.first_broken is not None else ""
        typer.echo(
            f"keybroker: audit log broken {where}: {report.reason}".replace("  ", " "), err=True
        )
        raise typer.Exit(EXIT_BROKEN)


@app.command("export")
def export(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Rows from this time on: a duration back from now (30m, 12h, 7d, 2w) or "
            "an ISO date or time (2024-05-01, 2024-05-01T12:00:00Z; UTC unless it says).",
            metavar="WHEN",
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="JSON Lines: one object per row (the default).")
    ] = False,
    csv_output: Annotated[
        bool, typer.Option("--csv", help="CSV with a header row; order fields as JSON text.")
    ] = False,
) -> None:
    """Print every row since WHEN to stdout, as JSON Lines or CSV.

    Example: keybroker audit export --since 2024-05-01 --csv > may.csv
    """
    if json_output and csv_output:
        raise InvalidInput("choose one of --json and --csv")
    since_ms = parse_since(since, SystemClock())
    path = _audit_path(ctx)
    writer = csv.writer(sys.stdout, lineterminator="\n") if csv_output else None
    if writer is not None:
        writer.writerow(_CSV_HEADER)
    last_id = 0
    while True:
        batch = read_rows(path, after_id=last_id, since_ms=since_ms, limit=_EXPORT_BATCH)
        for stored in batch:
            if writer is not None:
                writer.writerow(_csv_cells(stored))
            else:
                sys.stdout.write(_json_line(stored) + "\n")
        if len(batch) < _EXPORT_BATCH:
            break
        last_id = batch[-1].id
    sys.stdout.flush()


# -- formats ---------------------------------------------------------------------------

_CSV_HEADER = [
    "id",
    "time",
    *[c for c in COLUMNS if c not in ("id", "order_json")],
    "order",
    "hash",
]
_CSV_HEADER.insert(_CSV_HEADER.index("decision"), _CSV_HEADER.pop(_CSV_HEADER.index("order")))
_FORMULA_START = re.compile(r"^(?:[=+@\t\r]|-(?![0-9.]))")


def _json_line(stored: StoredRow) -> str:
    return json.dumps(stored.to_dict(), sort_keys=True, separators=(",", ":"))


def _csv_cells(stored: StoredRow) -> list[str]:
    data = stored.to_dict()
    cells = []
    for name in _CSV_HEADER:
        value = data.get(name)
        if name == "order" and value is not None:
            value = json.dumps(value, sort_keys=True, separators=(",", ":"))
        text = (
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
        # A cell starting with = + @ (or a non-numeric -) is a formula to a spreadsheet;
        # bots choose client order ids and exchanges write details, so quote those.
        cells.append("'" + text if _FORMULA_START.match(text) else text)
    return cells


_HUMAN_SKIP = ("id", "time", "ts_ms", "hash", "kind", "order", "paper")


def _human_line(stored: StoredRow) -> str:
    """``#12 2024-05-01T12:00:00.123Z intent bot=bot1 credential=… order[symbol=BTCUSDT …]``."""
    data = stored.to_dict()
    parts = [f"#{stored.id}", str(data["time"]), stored.row.kind]
    if stored.row.paper:
        parts.append("paper")
    for name, value in data.items():
        if name in _HUMAN_SKIP or value is None:
            continue
        parts.append(f"{name}={_one_line(str(value))}")
    if stored.row.order:
        fields = " ".join(f"{k}={_one_line(v)}" for k, v in sorted(stored.row.order.items()))
        parts.append(f"order[{fields}]")
    return " ".join(parts)


def _one_line(text: str) -> str:
    """A value printed for people stays on its line (and cannot fake another row)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


# -- --since ---------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, clock: Clock) -> int:
    """WHEN as ms since the epoch: ``30m``/``12h``/``7d``/``2w`` back from now, or ISO 8601.

    A date or time without a zone is UTC (the log's times are UTC).
    """
    value = text.strip()
    match = _DURATION.match(value.lower())
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return clock.now_ms() - int(seconds * 1000)
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is neither a duration (30m, 12h, 7d, 2w) "
            "nor an ISO date or time (2024-05-01, 2024-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
