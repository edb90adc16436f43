"""``keybroker tokens …``: create, list and revoke the tokens bots send to the gateway.

    keybroker tokens create grid-bot --credential binance-main --expires 30d
    keybroker tokens list --json
    keybroker tokens revoke grid-bot
    keybroker tokens create-admin alice --expires 30d      # the dashboard's, a kind apart

A token is printed once, by ``create``, on stdout alone (so
``TOKEN=$(keybroker tokens create …)`` captures exactly it); everything else
goes to stderr. The vault keeps only its hash, so nothing can show it again:
``list`` reads metadata only and works without the passphrase.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from keybroker.cli.context import CliState, open_vault, show_help_without_command, unlock
from keybroker.cli.output import note, print_json, print_table, say, warn
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import InvalidInput
from keybroker.vault import AdminToken, BotToken
from keybroker.vault.records import check_name
from keybroker.vault.tokens import check_bot_name

app = typer.Typer()

_DURATION = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST = timedelta(days=3650)

PassphraseFile = Annotated[
    Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
BotArgument = Annotated[
    str, typer.Argument(metavar="BOT", help="The bot's name, e.g. grid-bot (goes into audit rows).")
]


def register(root: typer.Typer) -> None:
    """Add the ``tokens`` group to the root app."""
    root.add_typer(app, name="tokens")


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """Bot tokens for the gateway, admin tokens for its dashboard: create (shown once), list,
    revoke."""
    show_help_without_command(ctx)


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s``: one number and one unit, up to ten years."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput(
            f"--expires takes a number and a unit (s, m, h, d or w), e.g. 30d; not {text!r}"
        )
    duration = timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    if not timedelta(0) < duration <= _LONGEST:
        raise InvalidInput("--expires must be more than 0 and at most 3650d")
    return duration


def _when(moment: datetime | None, missing: str) -> str:
    return missing if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def token_json(token: BotToken, now: datetime) -> dict[str, object]:
    """A token's record for ``--json`` (never the token: the vault does not have it)."""
    return {
        "bot": token.bot,
        "state": token.state(now),
        "credentials": list(token.credentials),
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "max_orders_per_minute": token.max_orders_per_minute,
        "revoked_at": _iso(token.revoked_at),
        "last_used_at": _iso(token.last_used_at),
    }


@app.command("create")
def create(
    ctx: typer.Context,
    bot: BotArgument,
    credential: Annotated[
        list[str],
        typer.Option(
            "--credential",
            "-c",
            help="A credential the bot may use; repeat for several.",
            metavar="NAME",
        ),
    ],
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetime: 30d, 12h, 2w … (default: never).", metavar="D"),
    ] = None,
    max_orders_per_minute: Annotated[
        int | None,
        typer.Option(
            "--max-orders-per-minute",
            min=1,
            help="This bot's own order rate limit, on top of each credential's policy.",
            metavar="N",
        ),
    ] = None,
    json_output: JsonOutput = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Make a token for BOT and print it once; the vault keeps only its hash.

    The bot sends it as X-Keybroker-Token (or Authorization: Bearer). Example:
    keybroker tokens create grid-bot --credential binance-main --expires 30d
    """
    state = CliState.of(ctx)
    check_bot_name(bot)
    for name in credential:
        check_name(name)
    lifetime = None if expires is None else parse_duration(expires)
    with open_vault(state) as vault:
        for name in credential:
            vault.record(name)  # CredentialNotFound before the passphrase is asked for
        unlock(vault, state, passphrase_file)
        expires_at = None if lifetime is None else datetime.now(UTC) + lifetime
        secret, token = vault.create_token(
            bot, credential, expires_at=expires_at, max_orders_per_minute=max_orders_per_minute
        )
    try:
        if json_output:
            print_json({**token_json(token, token.created_at), "token": secret.reveal_text()})
        else:
            say(secret.reveal_text())
    finally:
        secret.wipe()
    limit = (
        "no per-bot order limit"
        if token.max_orders_per_minute is None
        else f"at most {token.max_orders_per_minute} orders per minute"
    )
    note(
        f"Token for bot {token.bot}: credentials {', '.join(token.credentials)}; "
        f"expires {_when(token.expires_at, 'never')}; {limit}."
    )
    warn("the token is shown this once and cannot be shown again: give it to the bot now")


@app.command("list")
def list_tokens(ctx: typer.Context, json_output: JsonOutput = False) -> None:
    """List bot tokens and their state (active, expired, revoked); never a token.

    Works without the passphrase. Example: keybroker tokens list --json
    """
    state = CliState.of(ctx)
    now = datetime.now(UTC)
    with open_vault(state) as vault:
        tokens = vault.list_tokens()
    if json_output:
        print_json([token_json(token, now) for token in tokens])
        return
    if not tokens:
        say("No bot tokens yet. Make one: keybroker tokens create BOT --credential NAME")
        return
    print_table(
        None,
        ("bot", "state", "credentials", "orders/min", "created", "expires", "last used"),
        (
            (
                token.bot,
                token.state(now),
                ",".join(token.credentials),
                "-" if token.max_orders_per_minute is None else str(token.max_orders_per_minute),
                _when(token.created_at, "-"),
                _when(token.expires_at, "never"),
                _when(token.last_used_at, "never"),
            )
            for token in tokens
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    bot: Annotated[str, typer.Argument(metavar="BOT", help="The bot whose token to end.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """End BOT's token; a running gateway refuses it within a second, without a restart.

    Example: keybroker tokens revoke grid-bot
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        before = vault.list_tokens()
        if not any(token.bot == bot for token in before):
            raise InvalidInput(f"no token was made for bot {bot!r}; see: keybroker tokens list")
        unlock(vault, state, passphrase_file)
        vault.revoke_token(bot)
    if any(token.bot == bot and token.revoked_at is None for token in before):
        say(f"Revoked the token of {bot}; gateways using this vault refuse it within a second.")
    else:
        say(f"The token of {bot} was already revoked.")


# -- admin tokens: the dashboard's ---------------------------------------------------------

AdminArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Who holds it, e.g. alice (goes into audit rows).")
]


def admin_json(token: AdminToken, now: datetime) -> dict[str, object]:
    """An admin token's record for ``--json`` (never the token)."""
    return {
        "name": token.name,
        "state": token.state(now),
        "created_at": _iso(token.created_at),
        "expires_at": _iso(token.expires_at),
        "revoked_at": _iso(token.revoked_at),
        "last_used_at": _iso(token.last_used_at),
    }


@app.command("create-admin")
def create_admin(
    ctx: typer.Context,
    name: AdminArgument,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetime: 30d, 12h, 2w … (default: never).", metavar="D"),
    ] = None,
    json_output: JsonOutput = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Make an admin token for the dashboard (/_/dashboard) and print it once.

    An admin token opens the dashboard (watch, halt, resume, revoke bot
    tokens) and nothing else: it cannot sign exchange requests, and a bot
    token cannot open the dashboard. Paste it into the login page; the
    browser then keeps only a session cookie. Example:
    keybroker tokens create-admin alice --expires 30d
    """
    state = CliState.of(ctx)
    check_bot_name(name)
    lifetime = None if expires is None else parse_duration(expires)
    with open_vault(state) as vault:
        unlock(vault, state, passphrase_file)
        expires_at = None if lifetime is None else datetime.now(UTC) + lifetime
        secret, token = vault.create_admin_token(name, expires_at=expires_at)
    try:
        if json_output:
            print_json({**admin_json(token, token.created_at), "token": secret.reveal_text()})
        else:
            say(secret.reveal_text())
    finally:
        secret.wipe()
    note(f"Admin token for {token.name}; expires {_when(token.expires_at, 'never')}.")
    warn("the token is shown this once and cannot be shown again; it opens the dashboard only")


@app.command("list-admin")
def list_admin(ctx: typer.Context, json_output: JsonOutput = False) -> None:
    """List admin tokens and their state (active, expired, revoked); never a token.

    Works without the passphrase. Example: keybroker tokens list-admin --json
    """
    state = CliState.of(ctx)
    now = datetime.now(UTC)
    with open_vault(state) as vault:
        tokens = vault.list_admin_tokens()
    if json_output:
        print_json([admin_json(token, now) for token in tokens])
        return
    if not tokens:
        say("No admin tokens yet. Make one: keybroker tokens create-admin NAME")
        return
    print_table(
        None,
        ("name", "state", "created", "expires", "last used"),
        (
            (
                token.name,
                token.state(now),
                _when(token.created_at, "-"),
                _when(token.expires_at, "never"),
                _when(token.last_used_at, "never"),
            )
            for token in tokens
        ),
    )


@app.command("revoke-admin")
def revoke_admin(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The admin whose token to end.")],
    passphrase_file: PassphraseFile = None,
) -> None:
    """End NAME's admin token; its dashboard sessions end at their next request.

    Example: keybroker tokens revoke-admin alice
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        before = vault.list_admin_tokens()
        if not any(token.name == name for token in before):
            raise InvalidInput(
                f"no admin token was made for {name!r}; see: keybroker tokens list-admin"
            )
        unlock(vault, state, passphrase_file)
        vault.revoke_admin_token(name)
    if any(token.name == name and token.revoked_at is None for token in before):
        say(f"Revoked the admin token of {name}; its dashboard sessions end at once.")
    else:
        say(f"The admin token of {name} was already revoked.")
