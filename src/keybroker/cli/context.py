"""What every command shares: the global options, and opening and unlocking the vault.

    >>> state = CliState.of(ctx)
    >>> with open_vault(state) as vault:
    ...     unlock(vault, state, passphrase_file)

The environment is read here and in the root callback only (STYLE.md
convention 7); commands get it through ``CliState``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import typer

from keybroker.cli.output import warn
from keybroker.cli.passphrase import current_passphrase
from keybroker.settings import Settings
from keybroker.vault import Vault


@dataclass
class CliState:
    """Filled by the root callback; read by every command and by the error handler."""

    debug: bool = False
    settings: Settings | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    log_handler: logging.Handler | None = None
    """Set by --debug; removed when the command ends (the CLI may run in-process)."""

    @classmethod
    def of(cls, ctx: typer.Context) -> CliState:
        state = ctx.find_object(cls)
        if state is None or state.settings is None:
            raise RuntimeError("the root callback did not run")
        return state

    @property
    def vault_path(self) -> Path:
        assert self.settings is not None
        return self.settings.vault_path


def open_vault(state: CliState) -> Vault:
    """Open the vault (still locked) and print its warnings, one line each on stderr."""
    vault = Vault.open(state.vault_path)
    for line in vault.warnings:
        warn(line)
    return vault


def unlock(vault: Vault, state: CliState, passphrase_file: Path | None) -> None:
    """Unlock with the passphrase from the usual sources; WrongPassphrase after the delay."""
    passphrase = current_passphrase(passphrase_file, state.environ)
    try:
        vault.unlock(passphrase)
    finally:
        passphrase.wipe()


def show_help_without_command(ctx: typer.Context) -> None:
    """``keybroker`` or ``keybroker keys`` alone: print the help and exit 0 (not click's 2)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
