"""``keybroker policy set|show``: what a credential may be used for through the gateway.

    keybroker policy set binance-main --scope trade --symbols BTCUSDT,ETHUSDT --max-notional 500
    keybroker policy show binance-main --json

A credential without a stored policy has the default: read-only, no symbols.
``set`` changes only the fields it is given and keeps the rest, so granting
one more symbol never resets a limit by accident. Both commands unlock the
vault: policies are sealed like the keys, so that nobody can loosen one by
editing the file.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from keybroker.cli.context import CliState, open_vault, show_help_without_command, unlock
from keybroker.cli.output import print_json, print_table, say, warn
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import InvalidInput, KeybrokerError, UsageError, VaultError
from keybroker.policy import DEFAULT_POLICY, Policy
from keybroker.policy.document import MODES
from keybroker.vault import Vault

app = typer.Typer()

# Spellings that remove a limit (back to "no limit of this kind").
_NO_LIMIT = frozenset({"none", "off", "unlimited"})


def register(root: typer.Typer) -> None:
    """Add ``keybroker policy`` to the root app."""
    root.add_typer(app, name="policy")


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """Per-credential policy: scopes, symbols, order limits, transfers, production."""
    show_help_without_command(ctx)


PassphraseFile = Annotated[
    Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The credential's name.")]


def _limit_option(flag: str, help_text: str, metavar: str = "N") -> Any:
    return typer.Option(flag, help=f"{help_text} 'none' removes the limit.", metavar=metavar)


@app.command("set")
def set_policy(
    ctx: typer.Context,
    name: NameArgument,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="read, or trade (which includes read); repeat or write read,trade.",
            metavar="SCOPE",
        ),
    ] = None,
    symbols: Annotated[
        str | None,
        typer.Option(
            "--symbols",
            help="Symbols orders may use, in the exchange's spelling, comma-separated "
            "(BTCUSDT,ETHUSDT); replaces the list; '' allows none.",
            metavar="A,B",
        ),
    ] = None,
    order_types: Annotated[
        str | None,
        typer.Option(
            "--order-types",
            help="Order types allowed, in the exchange's spelling (LIMIT,MARKET); "
            "'' or 'any' allows any.",
            metavar="A,B",
        ),
    ] = None,
    max_notional: Annotated[
        str | None, _limit_option("--max-notional", "Largest order, in the quote currency.")
    ] = None,
    max_orders_per_minute: Annotated[
        str | None,
        _limit_option("--max-orders-per-minute", "Orders per minute, all bots together."),
    ] = None,
    price_collar: Annotated[
        str | None,
        _limit_option(
            "--price-collar",
            "Refuse a price more than PCT percent from the last price (e.g. 5 or 5%).",
            "PCT",
        ),
    ] = None,
    daily_notional: Annotated[
        str | None,
        _limit_option("--daily-notional", "Order notional per UTC day, in the quote currency."),
    ] = None,
    max_open_orders: Annotated[
        str | None, _limit_option("--max-open-orders", "Open orders at once.")
    ] = None,
    max_leverage: Annotated[
        str | None, _limit_option("--max-leverage", "Futures: highest leverage.")
    ] = None,
    max_position_notional: Annotated[
        str | None,
        _limit_option(
            "--max-position-notional", "Futures: largest position per symbol, in quote currency."
        ),
    ] = None,
    allow_transfers: Annotated[
        bool | None,
        typer.Option(
            "--allow-transfers/--no-allow-transfers",
            help="Transfers between the account's own wallets (withdrawals: never).",
            show_default=False,
        ),
    ] = None,
    allow_production: Annotated[
        bool | None,
        typer.Option(
            "--allow-production/--no-allow-production",
            help="Let a production (live-money) credential be used at all.",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="live (orders go to the exchange) or paper (the gateway's paper venue answers "
            "orders, cancels, order queries and balances; market data stays real).",
            metavar="MODE",
        ),
    ] = None,
    json_output: JsonOutput = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Change a credential's policy; fields not given keep their value.

    A new credential may only read. Example, to let a bot trade two symbols
    with orders of at most 500 USDT:

        keybroker policy set binance-main --scope trade --symbols BTCUSDT,ETHUSDT --max-notional 500
    """
    state = CliState.of(ctx)
    # Every value is checked before the vault is opened or a passphrase asked for.
    changes: dict[str, Any] = {}
    if scope is not None:
        changes["scopes"] = _scopes(scope)
    if symbols is not None:
        changes["symbols"] = _names(symbols, clear=("",))
    if order_types is not None:
        changes["order_types"] = _names(order_types, clear=("", "any"))
    for field, text, parse in (
        ("max_notional", max_notional, _decimal),
        ("max_orders_per_minute", max_orders_per_minute, _whole),
        ("price_collar_pct", price_collar, _percent),
        ("daily_notional", daily_notional, _decimal),
        ("max_open_orders", max_open_orders, _whole),
        ("max_leverage", max_leverage, _decimal),
        ("max_position_notional", max_position_notional, _decimal),
    ):
        if text is not None:
            none = text.strip().lower() in _NO_LIMIT
            changes[field] = None if none else parse(_FLAGS[field], text)
    # Checked here too, so a bad value is reported before the passphrase is asked for.
    _changed(DEFAULT_POLICY, changes)
    if allow_transfers is not None:
        changes["allow_transfers"] = allow_transfers
    if allow_production is not None:
        changes["allow_production"] = allow_production
    if mode is not None:
        if mode.strip().lower() not in MODES:
            raise InvalidInput(f"--mode takes one of: {', '.join(MODES)}")
        changes["mode"] = mode.strip().lower()
    if not changes:
        raise UsageError("nothing to change: give at least one option (see: policy set --help)")
    with open_vault(state) as vault:
        record = vault.record(name)  # CredentialNotFound before any passphrase prompt
        unlock(vault, state, passphrase_file)
        current, _ = _stored(vault, name)
        policy = _changed(current, changes)
        from keybroker.paper.keyless import is_keyless  # lazy: keeps the CLI's start fast

        if not policy.is_paper and is_keyless(vault.credential(name)):
            raise InvalidInput(
                f"{name} has no exchange key, so it can only trade on paper; "
                f"give it a key first: keybroker keys rotate {name}"
            )
        vault.set_policy(name, policy.to_json())
    if json_output:
        print_json(_policy_json(name, policy, stored=True))
    else:
        say(f"Policy of {name} set.")
        _print(name, policy, stored=True)
    _warnings(name, policy, record.environment, record.scopes, record.exchange)


@app.command("show")
def show(
    ctx: typer.Context,
    name: NameArgument,
    json_output: JsonOutput = False,
    passphrase_file: PassphraseFile = None,
) -> None:
    """Show a credential's policy (the default, read-only, if none was set).

    Example: keybroker policy show binance-main --json
    """
    state = CliState.of(ctx)
    with open_vault(state) as vault:
        record = vault.record(name)
        unlock(vault, state, passphrase_file)
        policy, stored = _stored(vault, name)
    if json_output:
        print_json(_policy_json(name, policy, stored=stored))
    else:
        _print(name, policy, stored=stored)
    _warnings(name, policy, record.environment, record.scopes, record.exchange)


# -- reading the vault ------------------------------------------------------------------------


def _stored(vault: Vault, name: str) -> tuple[Policy, bool]:
    document = vault.policy_document(name)
    if document is None:
        return DEFAULT_POLICY, False
    try:
        return Policy.from_json(document), True
    except InvalidInput as error:
        # Authentic (the vault checked it) yet unreadable: written by a newer
        # keybroker. Not the user's typing mistake, so not a usage error.
        raise VaultError(
            f"the stored policy of {name!r} cannot be read by this keybroker ({error}); "
            "upgrade keybroker"
        ) from None


_FLAGS = {
    "scopes": "--scope",
    "symbols": "--symbols",
    "order_types": "--order-types",
    "max_notional": "--max-notional",
    "max_orders_per_minute": "--max-orders-per-minute",
    "price_collar_pct": "--price-collar",
    "daily_notional": "--daily-notional",
    "max_open_orders": "--max-open-orders",
    "max_leverage": "--max-leverage",
    "max_position_notional": "--max-position-notional",
}


def _changed(current: Policy, changes: dict[str, Any]) -> Policy:
    try:
        return dataclasses.replace(current, **changes)
    except InvalidInput as error:
        # "policy max_notional must not be negative" -> "--max-notional must not be negative"
        message = str(error)
        for field, flag in _FLAGS.items():
            prefix = f"policy {field}"
            if message.startswith(prefix):
                message = flag + message[len(prefix) :]
                break
        raise InvalidInput(message) from None


# -- parsing options --------------------------------------------------------------------------


def _scopes(values: list[str]) -> tuple[str, ...]:
    requested = {part.strip().lower() for value in values for part in value.split(",")}
    requested.discard("")
    unknown = sorted(requested - {"read", "trade"})
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}; choose from: read, trade")
    if not requested:
        raise InvalidInput("--scope needs read or trade")
    # Trading without reading would leave a bot unable to see its own orders.
    return ("read", "trade") if "trade" in requested else ("read",)


def _names(text: str, *, clear: tuple[str, ...]) -> tuple[str, ...]:
    if text.strip().lower() in clear:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _decimal(flag: str, text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidInput(f"{flag} takes a number or 'none'") from None
    if not value.is_finite():
        raise InvalidInput(f"{flag} takes a finite number or 'none'")
    return value


def _percent(flag: str, text: str) -> Decimal:
    return _decimal(flag, text.strip().removesuffix("%"))


def _whole(flag: str, text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise InvalidInput(f"{flag} takes a whole number or 'none'") from None


# -- output -------------------------------------------------------------------------------------


def _policy_json(name: str, policy: Policy, *, stored: bool) -> dict[str, object]:
    return {
        "credential": name,
        "stored": stored,
        "policy": {**policy.to_dict(), "mode": policy.mode},
    }


def _limit(value: object, unit: str = "") -> str:
    return "no limit" if value is None else f"{value}{unit}"


def _print(name: str, policy: Policy, *, stored: bool) -> None:
    title = f"policy of {name}" + ("" if stored else " (the default: none set yet)")
    print_table(
        title,
        ("rule", "value"),
        (
            ("mode", "paper (the paper venue answers orders)" if policy.is_paper else "live"),
            ("scopes", ",".join(policy.scopes) or "none"),
            ("symbols", ",".join(policy.symbols) or "none (no symbol may trade)"),
            ("order types", ",".join(policy.order_types) or "any"),
            ("max notional", _limit(policy.max_notional, " per order")),
            ("max orders per minute", _limit(policy.max_orders_per_minute)),
            ("price collar", _limit(policy.price_collar_pct, "% from the last price")),
            ("daily notional", _limit(policy.daily_notional, " per UTC day")),
            ("max open orders", _limit(policy.max_open_orders)),
            ("max leverage", _limit(policy.max_leverage)),
            ("max position notional", _limit(policy.max_position_notional, " per symbol")),
            ("transfers", "allowed" if policy.allow_transfers else "denied"),
            ("production", "allowed" if policy.allow_production else "denied"),
            ("withdrawals, key management", "denied (always)"),
        ),
    )


def _warnings(
    name: str, policy: Policy, environment: str, key_scopes: tuple[str, ...], exchange: str
) -> None:
    if environment == "production" and not policy.allow_production:
        warn(
            f"{name} is a production credential and its policy does not allow production: "
            f"the gateway refuses every request (grant: policy set {name} --allow-production)"
        )
    if "trade" in policy.scopes and not policy.symbols:
        warn(f"the policy of {name} grants trade but no symbols, so no order can pass")
    if "trade" in policy.scopes and "trade" not in key_scopes and not policy.is_paper:
        warn(
            f"{name} was stored with scopes {','.join(key_scopes)}: "
            "check the key itself may trade at the exchange"
        )
    _fact_warnings(name, policy, exchange)


def _fact_warnings(name: str, policy: Policy, exchange: str) -> None:
    """Rules the gateway answers by asking the exchange: say where it cannot, so the
    user learns it now rather than from every order being refused."""
    if policy.max_open_orders is None and policy.max_position_notional is None:
        return
    from keybroker.exchanges import get_profile  # heavy: only when these rules are set

    try:
        tools = get_profile(exchange).orders
    except KeybrokerError:
        return
    if policy.max_open_orders is not None and (tools is None or tools.open_orders_request is None):
        warn(
            f"the gateway cannot count open orders at {exchange}: every new order of {name} "
            f"will be refused by max_open_orders (remove it: policy set {name} "
            "--max-open-orders none)"
        )
    if policy.max_position_notional is None:
        return
    if tools is None or tools.position_request is None:
        warn(
            f"the gateway cannot read positions at {exchange}: every sized order of {name} "
            f"will be refused by max_position_notional (remove it: policy set {name} "
            "--max-position-notional none)"
        )
    else:
        warn(
            f"max_position_notional is answered at {exchange} for {tools.positions_on}: "
            f"other orders of {name} are refused while it is set"
        )
