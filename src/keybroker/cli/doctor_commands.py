"""``keybroker doctor``: the production checklist, and ``keybroker incident`` (see incident.py).

    $ keybroker doctor                       # a table for people; exit 2 when a check fails
    $ keybroker doctor --json --strict       # for CI: warnings fail too
    $ keybroker doctor --repo ../my-bot --history --online

The checks themselves live in ``keybroker.doctor``; this module gathers their
inputs (the vault, unlocked only when a check needs what is sealed in it),
runs them and prints. The passphrase is asked for only when the vault holds
a production credential (its policy is sealed) or with ``--online`` (the
key signs the exchange's permission query), and only where there is a
terminal to ask on; otherwise those checks say they could not look.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keybroker.cli import incident
from keybroker.cli.context import CliState, unlock
from keybroker.cli.output import note, print_json, print_table, say
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import KeybrokerError, VaultNotFound
from keybroker.settings import PASSPHRASE_VARIABLE
from keybroker.vault import Vault

if TYPE_CHECKING:
    from keybroker.doctor import Result

# keybroker.doctor (and through it httpx, the exchange profiles and detect-secrets)
# is imported inside the commands: every other command starts without it.

_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


def register(root: typer.Typer) -> None:
    """Add ``keybroker doctor`` and ``keybroker incident`` to the root app."""
    root.command("doctor")(doctor)
    root.command("incident")(incident.incident)


def open_for_checks(
    state: CliState, passphrase_file: Path | None, *, online: bool, credential: str | None
) -> tuple[Vault | None, str | None]:
    """The vault (unlocked when a check needs it and a passphrase can be had), or why not.

    Never raises for the vault's sake: a vault that cannot be opened is
    itself a finding, and the other checks still run.
    """
    try:
        vault = Vault.open(state.vault_path)
    except VaultNotFound:
        return None, None
    except KeybrokerError as error:
        return None, f"the vault cannot be opened: {error}"
    records = [r for r in vault.list_credentials() if credential in (None, r.name)]
    needs_key = online or any(r.environment == "production" for r in records)
    if not needs_key:
        return vault, None
    can_ask = (
        passphrase_file is not None
        or bool(state.environ.get(PASSPHRASE_VARIABLE))
        or sys.stdin.isatty()
    )
    if not can_ask:
        return vault, (
            "the vault stays locked (no terminal to ask on): give --passphrase-file "
            "for the checks that read sealed policies or sign (--online)"
        )
    try:
        unlock(vault, state, passphrase_file)
    except KeybrokerError as error:
        return vault, f"the vault could not be unlocked: {error}"
    return vault, None


def show_results(results: Sequence[Result], title: str) -> None:
    """The table for people: one row per result, its details under the advice."""
    rows = []
    for result in results:
        advice = result.advice
        if result.details:
            advice += "\n" + "\n".join(f"  {line}" for line in result.details)
        name = result.name + (f" [{result.subject}]" if result.subject else "")
        rows.append((_MARK[result.status], name, advice))
    print_table(title, ("status", "check", "advice"), rows)
    passed = sum(r.status == "pass" for r in results)
    warned = sum(r.status == "warn" for r in results)
    failed = sum(r.status == "fail" for r in results)
    say(f"{passed} passed, {warned} warnings, {failed} failed")


def doctor(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (schema version 1), for CI.")
    ] = False,
    repo: Annotated[
        Path,
        typer.Option(
            "--repo",
            help="The bot's repository to scan for keys and .env files.",
            metavar="PATH",
        ),
    ] = Path("."),
    history: Annotated[
        bool,
        typer.Option("--history", help="Also scan every commit of the repository's git history."),
    ] = False,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Ask each exchange about each key (withdrawals, IP binding, trade rights) "
            "and compare clocks; signs with the vault's keys, so it needs the passphrase.",
        ),
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 2).")] = False,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
    ] = None,
) -> None:
    """Check the production checklist: keys in code, files, policies, the exchange's view.

    Each check says pass, warn or fail with one line of advice. Exit 0 when
    nothing fails, 2 otherwise (--strict: when anything warns). Found
    secrets are shown masked (first and last four characters), never whole.
    Example: keybroker doctor --repo ~/bots/grid --history --json
    """
    from keybroker.doctor import Inputs, exit_code, report_document, run

    state = CliState.of(ctx)
    assert state.settings is not None
    if not repo.is_dir():
        raise typer.BadParameter(f"{repo} is not a directory", param_hint="--repo")
    from keybroker.doctor.scan import is_git_repository

    if not is_git_repository(repo):
        note(
            f"keybroker doctor: {repo.resolve()} is not a git work tree: scanning every file "
            "under it (--repo PATH names a bot's repository)"
        )
    vault, problem = open_for_checks(state, passphrase_file, online=online, credential=None)
    try:
        with _scan_progress() as progress:
            inputs = Inputs(
                settings=state.settings,
                environ=state.environ,
                repo=repo.resolve(),
                history=history,
                online=online,
                passphrase_file=passphrase_file,
                vault=vault,
                vault_problem=problem,
                progress=progress,
            )
            results = run(inputs)
    finally:
        if vault is not None:
            vault.close()
    if json_output:
        print_json(report_document(results, strict=strict))
    else:
        show_results(results, "keybroker doctor")
    code = exit_code(results, strict=strict)
    if code:
        raise typer.Exit(code)


@contextlib.contextmanager
def _scan_progress() -> Iterator[Callable[[str, int, int], None] | None]:
    """A bar on stderr while the scans run, when stderr is a terminal (None otherwise).

    A repository with many files, or a long history, takes minutes to scan;
    without it the command looks hung. It is transient: the report replaces it.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    bar = Progress(
        TextColumn("scanning the {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def show(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done, total=total)

    with bar:
        yield show
