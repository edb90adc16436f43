"""The paper venue's value types: books, trades, instruments, orders, fills, and what is refused.

    >>> book = Book(bids=(Level(Decimal(99), Decimal(1)),), asks=(Level(Decimal(101), Decimal(2)),))
    >>> book.mid
    Decimal('100')

Exchange-neutral on purpose: a venue adapter (``venues/<exchange>.py``) reads
the exchange's wire format into these and writes answers from them, so the
fill model and the ledger never see a Binance or OKX field name. Sides are
``"buy"``/``"sell"``, order types ``"market"``/``"limit"``, statuses Binance's
words (NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED), which every adapter
maps to its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

ZERO = Decimal(0)

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
Status = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"]
OPEN_STATUSES: frozenset[str] = frozenset({"NEW", "PARTIALLY_FILLED"})


@dataclass(frozen=True, slots=True)
class Level:
    """One price level of a book, or one slice of a fill."""

    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class Book:
    """An order book as the exchange gave it: bids best (highest) first, asks best first."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    @property
    def mid(self) -> Decimal | None:
        """The midpoint of best bid and best ask; the one side's best when the other is empty."""
        if self.bids and self.asks:
            return (self.bids[0].price + self.asks[0].price) / 2
        if self.bids:
            return self.bids[0].price
        if self.asks:
            return self.asks[0].price
        return None


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """One trade from the exchange's public tape."""

    trade_id: int
    price: Decimal
    qty: Decimal
    ms: int


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the fill model needs to know about a symbol (the exchange's own spelling)."""

    symbol: str
    base: str
    quote: str
    step_size: Decimal = Decimal("0.00000001")
    min_qty: Decimal = ZERO
    min_notional: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class Fees:
    """Maker and taker fee rates as fractions (0.001 is 0.1 %)."""

    maker: Decimal
    taker: Decimal


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order the bot asked for, read from the exchange's wire format by its venue adapter.

    Exactly one of ``quantity`` (base) and ``quote_quantity`` (spend this much
    quote: a market buy by amount) is set. ``post_only`` orders that would take
    are refused, as the exchange refuses them.
    """

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal | None
    quote_quantity: Decimal | None = None
    price: Decimal | None = None
    time_in_force: TimeInForce = "GTC"
    post_only: bool = False
    client_order_id: str = ""


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the ledger holds it (after its immediate fills, if any)."""

    order_id: int
    credential: str
    client_order_id: str
    symbol: str
    base: str
    quote: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    quantity: Decimal | None
    quote_quantity: Decimal | None
    price: Decimal | None
    status: Status
    executed_qty: Decimal
    cumulative_quote: Decimal
    created_ms: int
    updated_ms: int

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        """Base quantity still to fill (limit orders; market orders never rest)."""
        return max(ZERO, (self.quantity or ZERO) - self.executed_qty)

    @property
    def average_price(self) -> Decimal:
        return self.cumulative_quote / self.executed_qty if self.executed_qty else ZERO


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of a paper order; ``mid`` is the market's mid when it was decided."""

    fill_id: int
    order_id: int
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    is_maker: bool
    mid: Decimal | None
    ms: int


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal


class Refusal(enum.Enum):
    """Why the paper venue refused an order or a cancel; each adapter has its exchange's code."""

    UNKNOWN_SYMBOL = "unknown_symbol"
    INVALID = "invalid"
    LOT_SIZE = "lot_size"
    NOTIONAL = "notional"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    WOULD_TAKE = "would_take"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    UNKNOWN_ORDER = "unknown_order"


class Refused(Exception):
    """The paper venue refuses; ``reason`` says why, ``detail`` names the field (never a value)."""

    def __init__(self, reason: Refusal, detail: str = "") -> None:
        super().__init__(reason.value + (f": {detail}" if detail else ""))
        self.reason = reason
        self.detail = detail
