"""``keybroker paper reset|report``: a paper credential's starting balances, and how it did.

    keybroker paper reset paper-bot --balance USDT=10000 --balance BTC=0.5
    keybroker paper report paper-bot --plot equity.png
    keybroker paper report paper-bot --json

The ledger is ``<home>/paper.db``; the gateway's paper venue writes it, these
commands reset and read it. Neither needs the passphrase: a paper account
holds no key and no real money. Put a credential in paper mode with
``keybroker policy set NAME --mode paper`` (or ``keys add ... --paper``).
"""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keybroker.cli.context import CliState, open_vault, show_help_without_command
from keybroker.cli.output import note, print_json, print_table, say, warn
from keybroker.errors import InvalidInput, PaperError

if TYPE_CHECKING:
    from keybroker.paper.report import PaperSummary

# keybroker.paper (httpx and the exchange profiles behind its venues) is imported inside
# the commands, so that every other command starts as fast as before.

app = typer.Typer()

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The paper credential's name.")]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def register(root: typer.Typer) -> None:
    """Add ``keybroker paper`` to the root app."""
    root.add_typer(app, name="paper")


@app.callback(invoke_without_command=True)
def group(ctx: typer.Context) -> None:
    """Paper trading: reset a paper account's balances, report its P&L."""
    show_help_without_command(ctx)


@app.command("reset")
def reset(
    ctx: typer.Context,
    name: NameArgument,
    balance: Annotated[
        list[str],
        typer.Option(
            "--balance",
            help="A starting balance ASSET=AMOUNT; repeat for each asset (USDT=10000).",
            metavar="ASSET=AMOUNT",
        ),
    ],
    maker_fee: Annotated[
        str | None,
        typer.Option(
            "--maker-fee",
            help="Maker fee, e.g. 0.1% (default: the exchange's base tier).",
            metavar="PCT",
        ),
    ] = None,
    taker_fee: Annotated[
        str | None,
        typer.Option(
            "--taker-fee",
            help="Taker fee, e.g. 0.1% (default: the exchange's base tier).",
            metavar="PCT",
        ),
    ] = None,
    latency_ms: Annotated[
        int,
        typer.Option(
            "--latency-ms",
            min=0,
            max=60_000,
            help="Wait this long before each order is filled (default 0).",
        ),
    ] = 0,
    value_in: Annotated[
        str, typer.Option("--value-in", help="Asset the report values everything in.")
    ] = "USDT",
    json_output: JsonOutput = False,
) -> None:
    """Start a paper account again: forget its orders and fills, set its balances.

    Example: keybroker paper reset paper-bot --balance USDT=10000 --maker-fee 0.08%
    """
    from keybroker.paper import Fees, Ledger, get_venue

    state = CliState.of(ctx)
    assert state.settings is not None
    balances = _balances(balance)
    with open_vault(state) as vault:
        record = vault.record(name)  # CredentialNotFound: a paper account needs a credential
    venue = get_venue(record.exchange)
    if venue is None:
        raise InvalidInput(f"paper trading is not available for {record.exchange} yet")
    fees = Fees(
        maker=venue.fees.maker if maker_fee is None else _rate("--maker-fee", maker_fee),
        taker=venue.fees.taker if taker_fee is None else _rate("--taker-fee", taker_fee),
    )
    ledger = Ledger.open(state.settings.paper_path)
    try:
        account = ledger.reset(
            name,
            record.exchange,
            record.environment,
            balances,
            now_ms=time.time_ns() // 1_000_000,
            fees=fees,
            value_in=value_in.strip().upper(),
            latency_ms=latency_ms,
        )
    finally:
        ledger.close()
    document = {
        "credential": name,
        "exchange": account.exchange,
        "environment": account.environment,
        "balances": {asset: str(amount) for asset, amount in balances.items()},
        "maker_fee": str(account.fees.maker),
        "taker_fee": str(account.fees.taker),
        "latency_ms": account.latency_ms,
        "value_in": account.value_in,
    }
    if json_output:
        print_json(document)
        return
    held = ", ".join(f"{asset} {amount}" for asset, amount in balances.items())
    say(f"Paper account {name} reset: {held}.")
    say(
        f"Fees {_percent(account.fees.maker)} maker, {_percent(account.fees.taker)} taker"
        + (f"; {latency_ms} ms before each fill." if latency_ms else ".")
    )
    note(f"Its orders go to the paper venue only in paper mode: policy set {name} --mode paper")


@app.command("report")
def report(
    ctx: typer.Context,
    name: NameArgument,
    json_output: JsonOutput = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Draw the equity curve to this PNG file (needs matplotlib).",
            metavar="FILE.png",
        ),
    ] = None,
) -> None:
    """How a paper account did: P&L, fees, slippage against mid, fills, win rate, equity.

    Example: keybroker paper report paper-bot --plot equity.png
    """
    from keybroker.paper import Ledger, summarize
    from keybroker.paper.report import plot_equity

    state = CliState.of(ctx)
    assert state.settings is not None
    summary = summarize(state.settings.paper_path, name)
    ledger = Ledger.open(state.settings.paper_path)
    try:
        problems = ledger.check(name)
    finally:
        ledger.close()
    if plot is not None:
        plot_equity(summary, plot)
    if json_output:
        document = summary.to_json()
        document["consistent"] = not problems
        print_json(document)
    else:
        _print(summary)
        if plot is not None:
            say(f"Equity curve drawn to {plot}.")
    for problem in problems:
        warn(f"ledger: {problem}")
    if problems:
        raise PaperError(f"the paper ledger of {name!r} is inconsistent (see above)")


def _print(summary: PaperSummary) -> None:
    unit = f" {summary.value_in}"
    last = summary.equity[-1][1] if summary.equity else summary.starting_equity
    win_rate = "no closed trades yet" if summary.win_rate is None else _percent(summary.win_rate)
    print_table(
        f"paper account {summary.credential}",
        ("measure", "value"),
        (
            (
                "equity now",
                f"{_amount(last)}{unit} (started at {_amount(summary.starting_equity)})",
            ),
            ("total P&L", f"{_amount(summary.total_pnl)}{unit}"),
            ("realised P&L", f"{_amount(summary.realized_pnl)}{unit} (net of fees)"),
            ("unrealised P&L", f"{_amount(summary.unrealized_pnl)}{unit}"),
            ("fees", f"{_amount(summary.fees)}{unit}"),
            ("slippage against mid", f"{_amount(summary.slippage_vs_mid)}{unit}"),
            ("fills", str(summary.fills)),
            ("orders", f"{summary.orders} ({summary.open_orders} open)"),
            ("win rate", win_rate),
        ),
    )


def _amount(value: Decimal) -> str:
    return f"{value:,.2f}"


def _percent(rate: Decimal) -> str:
    return f"{(rate * 100).normalize():f}%"


def _balances(values: list[str]) -> dict[str, Decimal]:
    balances: dict[str, Decimal] = {}
    for value in values:
        asset, sign, amount = value.partition("=")
        asset = asset.strip().upper()
        if not sign or not asset or not asset.isalnum():
            raise InvalidInput(f"--balance takes ASSET=AMOUNT (USDT=10000), not {value!r}")
        try:
            number = Decimal(amount.strip())
        except InvalidOperation:
            raise InvalidInput(f"--balance {asset}: {amount.strip()!r} is not a number") from None
        if not number.is_finite() or number < 0:
            raise InvalidInput(f"--balance {asset} must be a number of at least 0")
        if asset in balances:
            raise InvalidInput(f"--balance {asset} is given twice")
        balances[asset] = number
    return balances


def _rate(flag: str, text: str) -> Decimal:
    raw = text.strip()
    try:
        value = Decimal(raw.removesuffix("%").strip())
    except InvalidOperation:
        raise InvalidInput(f"{flag} takes a percentage such as 0.1%") from None
    if not value.is_finite() or not 0 <= value < 100:
        raise InvalidInput(f"{flag} must be from 0% to below 100%")
    return value / 100
