"""``keybroker halt`` and ``keybroker resume``: the kill switch for new orders.

    keybroker halt binance-main --reason "grid bot runs away"
    keybroker halt --all
    keybroker resume binance-main

A halt is stored in the vault, so every gateway using it stops placing new
orders for that credential within a second (cancels and reads still pass),
and it holds across restarts until resumed. ``halt`` asks for no passphrase:
an emergency button must not wait for one. ``resume`` does ask.

Gateways on several hosts (``serve --redis``) share halts through Redis: the
gateway on this host publishes a halt from this vault, and lifts it there on
resume. ``--redis URL`` (or $KEYBROKER_REDIS_URL) also writes the store
directly, for a host with no gateway running or a halt made elsewhere.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer

from keybroker.cli.context import CliState, open_vault, unlock
from keybroker.cli.output import print_json, say, warn
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import KeybrokerError, UsageError
from keybroker.secret import Secret
from keybroker.settings import REDIS_URL_VARIABLE
from keybroker.vault import Halt

EVERY = "*"

NameArgument = Annotated[
    str | None, typer.Argument(metavar="NAME", help="The credential (or use --all).")
]
AllOption = Annotated[bool, typer.Option("--all", help="Every credential in the vault.")]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="Print the halts now in force as JSON, for scripts.")
]
RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help=(
            "Also write the halt to the Redis that gateways on other hosts share "
            f"(serve --redis) \\[default: ${REDIS_URL_VARIABLE} if set]."
        ),
        metavar="URL",
    ),
]


def _store(option: str | None, state: CliState) -> Secret | None:
    url = option or state.environ.get(REDIS_URL_VARIABLE, "").strip()
    return Secret(url) if url else None


def register(root: typer.Typer) -> None:
    """Add ``halt`` and ``resume`` to the root app."""
    root.command("halt")(halt)
    root.command("resume")(resume)


def _target(name: str | None, every: bool, command: str) -> str | None:
    """The credential name, or None for --all; exactly one of the two must be given."""
    if (name is None) == (not every):
        raise UsageError(f"give a credential NAME or --all (see: keybroker {command} --help)")
    return name


def _label(name: str | None) -> str:
    return "every credential" if name in (None, EVERY) else str(name)


def _halts_json(halts: list[Halt]) -> list[dict[str, str]]:
    return [
        {"name": h.name, "halted_at": h.halted_at.astimezone(UTC).isoformat(), "reason": h.reason}
        for h in halts
    ]


def halt(
    ctx: typer.Context,
    name: NameArgument = None,
    every: AllOption = False,
    reason: Annotated[
        str, typer.Option("--reason", help="Why; shown by resume and in the gateway's status.")
    ] = "",
    json_output: JsonOutput = False,
    redis: RedisOption = None,
) -> None:
    """Stop new orders at once on every gateway using this vault; cancels and reads pass.

    Needs no passphrase. Holds across restarts until: keybroker resume NAME|--all.
    Example: keybroker halt binance-main --reason "runaway bot"
    """
    state = CliState.of(ctx)
    target = _target(name, every, "halt")
    with open_vault(state) as vault:
        already = {h.name: h for h in vault.list_halts()}.get(target or EVERY)
        vault.halt(target, reason)
        halts = vault.list_halts()
    store = _store(redis, state)
    if store is not None:
        from keybroker.gateway.coordination_redis import publish_halt, shown_url

        made = next(h for h in halts if h.name == (target or EVERY))
        try:
            publish_halt(store, made.name, made.halted_at, origin=f"cli:{state.vault_path}")
        except KeybrokerError as error:
            # The vault's halt is written and holds: say so, or in an emergency the
            # error alone reads as "nothing was halted".
            raise type(error)(
                f"{_label(target)} is halted in this vault (gateways using it stop within a "
                f"second), but not in Redis: {error}; gateways on other hosts go on: rerun "
                f"keybroker halt {target or '--all'} --redis URL when Redis answers"
            ) from None
        if not json_output:
            say(f"Published to {shown_url(store.reveal_text())}: gateways on every host stop.")
    if json_output:
        print_json(_halts_json(halts))
        return
    if already is not None:
        since = already.halted_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        say(f"{_label(target)} was already halted (since {since}); the halt stands.")
    else:
        say(
            f"Halted {_label(target)}: gateways using this vault refuse new orders within a "
            "second; cancels and reads still pass."
        )
    say(f"Lift it with: keybroker resume {target or '--all'}")


def resume(
    ctx: typer.Context,
    name: NameArgument = None,
    every: AllOption = False,
    json_output: JsonOutput = False,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help=(
                "Also lift it in the Redis that gateways on other hosts share, wherever it was "
                f"made \\[default: ${REDIS_URL_VARIABLE} if set]."
            ),
            metavar="URL",
        ),
    ] = None,
) -> None:
    """Lift a halt (--all lifts every halt); asks for the vault passphrase.

    Example: keybroker resume binance-main
    """
    state = CliState.of(ctx)
    target = _target(name, every, "resume")
    with open_vault(state) as vault:
        before = {h.name for h in vault.list_halts()}
        unlock(vault, state, passphrase_file)
        vault.resume(target)
        halts = vault.list_halts()
    store = _store(redis, state)
    if store is not None:
        from keybroker.gateway.coordination_redis import lift_halt

        try:
            lift_halt(store, target)
        except KeybrokerError as error:
            lifted = "every halt" if target is None else f"the halt of {target}"
            raise type(error)(
                f"{lifted} is lifted in this vault, but not in Redis: {error}; gateways on "
                "other hosts refuse orders until: keybroker resume "
                f"{target or '--all'} --redis URL"
            ) from None
    if json_output:
        print_json(_halts_json(halts))
    elif target is None:
        say("Resumed every credential: no halt is in force." if before else "Nothing was halted.")
    elif target in before:
        say(f"Resumed {target}.")
    else:
        say(f"{target} was not halted.")
    if target is not None and any(h.name == EVERY for h in halts):
        warn(f"{target} is still halted by `keybroker halt --all`; lift that with --all")
