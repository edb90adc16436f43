"""What a paper account did: P&L, fees, slippage against mid, win rate, an equity curve.

    >>> summary = summarize(home / "paper.db", "paper-bot")
    >>> summary.realized_pnl, summary.fees, summary.equity[-1]
    (Decimal('12.5'), Decimal('3.1'), (1717171717171, Decimal('10009.4')))

Read-only and offline: valuation uses the marks the paper venue noted in the
ledger (books' mids and last trades) and, for a symbol with none, its last
fill. Everything is in the account's valuation asset (``value_in``, USDT by
default): fees charged in the base asset are valued at their fill's price.

- realized P&L: average-cost, net of fees, per closing sell;
- unrealized P&L: what the open positions are worth at the last mark, less their cost;
- slippage against mid: quote lost against the mid of the book each fill was
  decided on (positive: worse than mid; maker fills at a better price count negative);
- win rate: the share of closing sells that realised a gain (None before the first);
- equity: (ms, value of every balance at the marks of that moment), from the reset on.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from keybroker.errors import PaperError
from keybroker.paper.ledger import Ledger
from keybroker.paper.model import ZERO

MAX_POINTS = 2000
"""Equity points kept (the last of each time bucket when there are more)."""


@dataclass(frozen=True, slots=True)
class PaperSummary:
    """One paper account's results; amounts in ``value_in``."""

    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    fills: int
    win_rate: Decimal | None
    slippage_vs_mid: Decimal
    equity: tuple[tuple[int, Decimal], ...]
    credential: str = ""
    value_in: str = "USDT"
    orders: int = 0
    open_orders: int = 0
    starting_equity: Decimal = ZERO

    @property
    def total_pnl(self) -> Decimal:
        return self.realized_pnl + self.unrealized_pnl

    def to_json(self) -> dict[str, object]:
        """Plain JSON values; amounts as decimal strings."""
        return {
            "credential": self.credential,
            "value_in": self.value_in,
            "realized_pnl": str(self.realized_pnl),
            "unrealized_pnl": str(self.unrealized_pnl),
            "total_pnl": str(self.total_pnl),
            "fees": str(self.fees),
            "fills": self.fills,
            "orders": self.orders,
            "open_orders": self.open_orders,
            "win_rate": None if self.win_rate is None else str(self.win_rate),
            "slippage_vs_mid": str(self.slippage_vs_mid),
            "starting_equity": str(self.starting_equity),
            "equity": [[ms, str(value)] for ms, value in self.equity],
        }


def summarize(ledger_path: Path, credential: str) -> PaperSummary:
    """The paper account ``credential`` in the ledger at ``ledger_path``.

    Raises PaperError when there is no ledger or no such account.
    """
    if not ledger_path.exists():
        raise PaperError(f"there is no paper ledger at {ledger_path}")
    ledger = Ledger.open(ledger_path)
    try:
        return _summarize(ledger, credential)
    finally:
        ledger.close()


def _summarize(ledger: Ledger, credential: str) -> PaperSummary:
    account = ledger.account(credential)
    if account is None:
        raise PaperError(
            f"no paper account {credential!r} in {ledger.path}: "
            f"keybroker paper reset {credential} --balance USDT=10000"
        )
    value_in = account.value_in
    fills = ledger.fills(credential)
    orders = ledger.orders(credential, limit=1_000_000)
    symbols = {order.order_id: (order.base, order.quote) for order in orders}
    marks = ledger.marks(account.exchange, account.environment, account.reset_ms)

    # Prices in value_in: the latest mark of BASE/value_in, else the latest fill.
    price: dict[str, Decimal] = {value_in: Decimal(1)}
    holdings = dict(ledger.starting(credential))
    points: list[tuple[int, Decimal]] = [(account.reset_ms, _value(holdings, price))]
    fees = ZERO
    slippage = ZERO
    pending = iter(marks)
    upcoming = next(pending, None)
    for fill in sorted(fills, key=lambda f: (f.ms, f.fill_id)):
        while upcoming is not None and upcoming[0] <= fill.ms:
            if upcoming[2] == value_in:
                price[upcoming[1]] = upcoming[3]
                points.append((upcoming[0], _value(holdings, price)))
            upcoming = next(pending, None)
        base, quote = symbols.get(fill.order_id, ("", ""))
        sign = 1 if fill.side == "buy" else -1
        holdings[base] = holdings.get(base, ZERO) + sign * fill.qty
        holdings[quote] = holdings.get(quote, ZERO) - sign * fill.qty * fill.price
        holdings[fill.fee_asset] = holdings.get(fill.fee_asset, ZERO) - fill.fee
        if quote == value_in:
            price[base] = fill.price
            fees += fill.fee if fill.fee_asset == quote else fill.fee * fill.price
            if fill.mid is not None:
                slippage += sign * (fill.price - fill.mid) * fill.qty
        points.append((fill.ms, _value(holdings, price)))
    while upcoming is not None:
        if upcoming[2] == value_in:
            price[upcoming[1]] = upcoming[3]
            points.append((upcoming[0], _value(holdings, price)))
        upcoming = next(pending, None)

    positions = ledger.positions(credential)
    realized = sum((p.realized for p in positions if p.quote == value_in), ZERO)
    unrealized = ZERO
    for position in positions:
        if position.quote == value_in and position.qty and position.base in price:
            unrealized += position.qty * price[position.base] - position.cost
    closes = sum(p.closes for p in positions if p.quote == value_in)
    wins = sum(p.wins for p in positions if p.quote == value_in)
    return PaperSummary(
        realized_pnl=realized,
        unrealized_pnl=unrealized,
        fees=fees,
        fills=len(fills),
        win_rate=Decimal(wins) / Decimal(closes) if closes else None,
        slippage_vs_mid=slippage,
        equity=_thin(points),
        credential=credential,
        value_in=value_in,
        orders=len(orders),
        open_orders=sum(1 for order in orders if order.is_open),
        starting_equity=points[0][1],
    )


def _value(holdings: dict[str, Decimal], price: dict[str, Decimal]) -> Decimal:
    # Assets without a price yet (never traded or marked against value_in) count as nothing.
    return sum(
        (amount * price[asset] for asset, amount in holdings.items() if asset in price), ZERO
    )


def _thin(points: list[tuple[int, Decimal]]) -> tuple[tuple[int, Decimal], ...]:
    # One point per ms (the last), then at most MAX_POINTS, always keeping the first and last.
    last: dict[int, Decimal] = {}
    for ms, value in points:
        last[ms] = value
    merged = sorted(last.items())
    if len(merged) <= MAX_POINTS:
        return tuple(merged)
    stride = len(merged) / (MAX_POINTS - 1)
    picked = [merged[min(len(merged) - 1, int(i * stride))] for i in range(MAX_POINTS - 1)]
    return tuple([*picked, merged[-1]])


def plot_equity(summary: PaperSummary, path: Path) -> None:
    """Draw the equity curve to a PNG; PaperError when matplotlib (extra ``plot``) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: a file is all we draw
        import matplotlib.pyplot as plt
    except ImportError:
        raise PaperError(
            'drawing the equity curve needs matplotlib: pip install "keybroker[plot]"'
        ) from None
    start = summary.equity[0][0] if summary.equity else 0
    minutes = [(ms - start) / 60_000 for ms, _ in summary.equity]
    values = [float(value) for _, value in summary.equity]
    figure, axes = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        axes.plot(minutes, values, drawstyle="steps-post", linewidth=1.4)
        axes.axhline(float(summary.starting_equity), color="grey", linewidth=0.8, linestyle="--")
        axes.set_title(f"paper account {summary.credential}: equity in {summary.value_in}")
        axes.set_ylabel(summary.value_in)
        axes.set_xlabel("minutes since the reset")
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, format="png")
    except OSError as exc:
        raise PaperError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        plt.close(figure)
