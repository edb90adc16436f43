"""How the command line talks: plain lines, rich tables for people, JSON for scripts.

    >>> say("Created vault at /tmp/kb/vault.db")
    >>> warn("the vault directory is readable by group")   # stderr, one line

Messages go through ``typer.echo`` rather than rich so that a long path or
error never wraps onto a second line: scripts read errors as one line each.
Rich is used for tables only, with markup off, because credential names and
notes are user data and ``[brackets]`` in them must print as typed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import typer
from rich.console import Console
from rich.table import Table

_PIPE_WIDTH = 240


def say(line: str = "") -> None:
    """One line for people on stdout."""
    typer.echo(line)


def warn(line: str) -> None:
    """One warning line on stderr."""
    typer.echo(f"keybroker: warning: {line}", err=True)


def note(line: str) -> None:
    """One progress or advice line on stderr, so stdout stays clean for ``--json``."""
    typer.echo(line, err=True)


def print_json(value: object) -> None:
    """Machine-readable output: stable key order, no colours, ends with a newline."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table for people; scripts use ``--json`` instead of parsing it."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    # Built per call, so the console writes to whatever sys.stdout is now
    # (typer's CliRunner swaps it); markup off because cells hold user data.
    console = Console(markup=False, highlight=False, emoji=False)
    if not console.is_terminal:
        # Piped or captured: no terminal width to respect, so do not wrap
        # names and key ids into pieces at rich's default of 80 columns.
        console = Console(markup=False, highlight=False, emoji=False, width=_PIPE_WIDTH)
    console.print(table)
