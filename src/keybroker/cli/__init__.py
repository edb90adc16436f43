"""The ``keybroker`` command line: one Typer app, one place where errors become exit codes.

    $ keybroker init
    $ keybroker keys add binance-main --exchange binance
    $ keybroker keys list

Every failure ends as one line on stderr (``keybroker: <message>``) and an
exit code: 0 done, 1 the command was used wrongly, 2 keybroker refused or
something failed. Tracebacks appear only with ``--debug``: a traceback
quotes source lines and exception text, and neither belongs in a terminal
scrollback next to a trading key by default.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from keybroker import __version__
from keybroker.cli import (
    audit_commands,
    demo,
    doctor_commands,
    emulator_commands,
    halt_commands,
    key_commands,
    openbao_commands,
    paper_commands,
    policy_commands,
    serve_commands,
    token_commands,
    vault_commands,
)
from keybroker.cli.context import CliState, show_help_without_command
from keybroker.errors import KeybrokerError
from keybroker.settings import HOME_VARIABLE, Settings

EXIT_USAGE = 1
EXIT_FAILED = 2


class _Group(TyperGroup):
    """The root group: runs the command and turns every outcome into a message and a code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        state = extra.pop("obj", None) or CliState()
        try:
            result = super().main(
                args,
                prog_name or "keybroker",
                complete_var,
                standalone_mode=False,
                obj=state,
                **extra,
            )
            code = result if isinstance(result, int) else 0
        except KeybrokerError as error:
            code = _report(f"keybroker: {error}", error, state, error.exit_code)
        except typer.Abort as error:
            code = _report("keybroker: aborted", error, state, EXIT_USAGE)
        except typer.TyperException as error:
            # Typer's (vendored click's) parsing errors: unknown option, bad value,
            # missing argument. All are usage errors: exit 1, not click's 2.
            context = getattr(error, "ctx", None)
            hint = f" (see: {context.command_path} --help)" if context is not None else ""
            format_message = getattr(error, "format_message", None)
            message = format_message() if callable(format_message) else str(error)
            if "unexpected extra argument" in message:
                # Click would quote the argument, and people do paste secrets there.
                message = (
                    "unexpected extra argument (not shown); secrets never go on the command "
                    "line: use the prompt, --from-env or --stdin"
                )
            # No traceback even with --debug: it would be the parser's internals,
            # and its message quotes the arguments.
            typer.echo(f"keybroker: {message}{hint}", err=True)
            code = EXIT_USAGE
        except Exception as error:
            # Not one of ours: a bug. Its text may quote input, so only the type is shown.
            code = _report(
                f"keybroker: unexpected {type(error).__name__}; rerun with --debug for details",
                error,
                state,
                EXIT_FAILED,
            )
        finally:
            if state.log_handler is not None:
                logger = logging.getLogger("keybroker")
                logger.removeHandler(state.log_handler)
                logger.setLevel(logging.NOTSET)
                state.log_handler = None
        if standalone_mode:
            sys.exit(code)
        return code


def _report(line: str, error: BaseException, state: CliState, code: int) -> int:
    if state.debug:
        traceback.print_exception(error, file=sys.stderr)
    typer.echo(line, err=True)
    return code


app = typer.Typer(
    cls=_Group,
    name="keybroker",
    help="Trading bots use exchange API keys without ever holding them.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"keybroker {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help=f"Where the vault lives (else ${HOME_VARIABLE}, else the user data directory).",
            metavar="PATH",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Keep exchange API keys in an encrypted vault; bots never hold them.

    The passphrase comes from --passphrase-file, else $KEYBROKER_PASSPHRASE
    (weaker: other processes can read environments), else a hidden prompt.
    Start with: keybroker init, or see it all at once: keybroker demo
    """
    state = ctx.ensure_object(CliState)
    state.debug = debug
    state.environ = dict(os.environ)
    state.settings = Settings.from_env(state.environ, home=home.expanduser() if home else None)
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("keybroker")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        state.log_handler = handler
    show_help_without_command(ctx)


app.command("init")(vault_commands.init)
app.command("demo")(demo.demo)
app.add_typer(key_commands.app, name="keys")
app.add_typer(vault_commands.app, name="vault")
emulator_commands.register(app)
policy_commands.register(app)
audit_commands.register(app)
serve_commands.register(app)
token_commands.register(app)
halt_commands.register(app)
openbao_commands.register(app)
doctor_commands.register(app)
paper_commands.register(app)


def main() -> None:
    """Entry point of the ``keybroker`` script and ``python -m keybroker``."""
    typer.main.get_command(app).main(prog_name="keybroker")
