"""The fill model, pure: walk a book, cross resting orders with public trades, charge fees.

    >>> plan = take(book, "buy", quantity=Decimal("0.5"), step=Decimal("0.0001"))
    >>> plan.average_price, plan.slippage(book.mid)

A market order walks the book fetched at fill time, level by level, so its
slippage is what that depth gives (no constant, no cap); a book that runs out
fills it partially. A limit order that crosses the book on arrival takes up to
its price as a taker and rests with the rest; a resting limit order fills as a
maker when public trades go *through* its price (a trade exactly at the price
does not count: where the order would stand in the queue is unknown), and
only as much as those trades traded. Fees are charged in what the order
receives, as Binance and OKX spot do: base for a buy, quote for a sell.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from keybroker.paper.model import ZERO, Book, Level, PublicTrade, Side


@dataclass(frozen=True, slots=True)
class Plan:
    """The slices an order takes from a book: (price, qty), best first."""

    levels: tuple[Level, ...]

    @property
    def qty(self) -> Decimal:
        return sum((level.qty for level in self.levels), ZERO)

    @property
    def cost(self) -> Decimal:
        """Quote amount of the slices (before fees)."""
        return sum((level.price * level.qty for level in self.levels), ZERO)

    @property
    def average_price(self) -> Decimal:
        qty = self.qty
        return self.cost / qty if qty else ZERO

    def slippage(self, side: Side, mid: Decimal | None) -> Decimal:
        """Quote currency lost against the mid (positive: worse than mid)."""
        if mid is None:
            return ZERO
        sign = 1 if side == "buy" else -1
        return sum((sign * (level.price - mid) * level.qty for level in self.levels), ZERO)


def take(
    book: Book,
    side: Side,
    *,
    quantity: Decimal | None = None,
    quote_quantity: Decimal | None = None,
    limit_price: Decimal | None = None,
    step: Decimal = Decimal("0.00000001"),
) -> Plan:
    """Walk the side of ``book`` a ``side`` order takes from, up to ``limit_price``.

    A buy walks the asks upward, a sell the bids downward. Exactly one of
    ``quantity`` (base) and ``quote_quantity`` (quote to spend; each slice is
    rounded down to ``step``) is given. Fewer than asked when the book runs out.
    """
    if (quantity is None) == (quote_quantity is None):
        raise ValueError("give exactly one of quantity and quote_quantity")
    levels = book.asks if side == "buy" else book.bids
    remaining = quantity if quantity is not None else quote_quantity
    assert remaining is not None
    taken: list[Level] = []
    for level in levels:
        if remaining <= 0:
            break
        if limit_price is not None and (
            (side == "buy" and level.price > limit_price)
            or (side == "sell" and level.price < limit_price)
        ):
            break
        if quantity is not None:
            qty = min(level.qty, remaining)
            remaining -= qty
        else:
            affordable = (remaining / level.price).quantize(step, rounding=ROUND_DOWN)
            qty = min(level.qty, affordable)
            remaining -= qty * level.price
        if qty <= 0:
            break
        taken.append(Level(level.price, qty))
    return Plan(tuple(taken))


def crosses(side: Side, limit_price: Decimal, trade_price: Decimal) -> bool:
    """Whether a public trade at ``trade_price`` went through a resting order's price."""
    return trade_price < limit_price if side == "buy" else trade_price > limit_price


def traded_through(
    side: Side, limit_price: Decimal, trades: Iterable[PublicTrade], after_trade_id: int
) -> tuple[Decimal, int]:
    """(volume that traded through ``limit_price`` after ``after_trade_id``, newest id seen)."""
    volume = ZERO
    newest = after_trade_id
    for trade in trades:
        if trade.trade_id <= after_trade_id:
            continue
        newest = max(newest, trade.trade_id)
        if crosses(side, limit_price, trade.price):
            volume += trade.qty
    return volume, newest


def allocate(
    resting: Sequence[tuple[int, Side, Decimal, Decimal, int]], trades: Sequence[PublicTrade]
) -> dict[int, tuple[Decimal, int]]:
    """Share new public volume among one account's resting orders on one symbol.

    ``resting`` holds (order id, side, limit price, remaining qty, last trade
    id seen). Best-priced orders are served first, and a trade's volume is
    used once per account: two orders of one bot cannot both fill from one
    0.1 BTC print. Returns {order id: (qty to fill, newest trade id seen)}.
    """
    used: dict[int, Decimal] = {}
    result: dict[int, tuple[Decimal, int]] = {}

    def priority(order: tuple[int, Side, Decimal, Decimal, int]) -> tuple[int, Decimal, int]:
        _, side, price, _, _ = order
        return (0 if side == "buy" else 1, -price if side == "buy" else price, order[0])

    newest_id = max((trade.trade_id for trade in trades), default=0)
    for order_id, side, price, remaining, after in sorted(resting, key=priority):
        want = remaining
        got = ZERO
        for trade in trades:
            if want <= 0:
                break
            if trade.trade_id <= after or not crosses(side, price, trade.price):
                continue
            left = trade.qty - used.get(trade.trade_id, ZERO)
            if left <= 0:
                continue
            qty = min(left, want)
            used[trade.trade_id] = used.get(trade.trade_id, ZERO) + qty
            want -= qty
            got += qty
        result[order_id] = (got, max(after, newest_id))
    return result


def fee(side: Side, price: Decimal, qty: Decimal, rate: Decimal) -> Decimal:
    """The fee of one slice, in what the order receives: base for a buy, quote for a sell."""
    return qty * rate if side == "buy" else price * qty * rate
