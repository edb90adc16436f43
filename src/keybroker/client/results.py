"""The typed answers of the adapters: frozen, Decimal for every price and quantity.

    >>> order = adapter.place_order("BTCUSDT", "buy", "limit", Decimal("0.001"), Decimal("50000"))
    >>> order.status, order.price
    ('open', Decimal('50000'))

Both adapters return these same types, so a bot can switch exchange without
switching parsing. Amounts are Decimal, never float: a float cannot hold
0.1 exactly, and an order sized by a float is an order sized by accident.
Times are milliseconds since the epoch, as the exchanges give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["limit", "market", "limit_maker"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
OrderStatus = Literal[
    "accepted",  # the exchange took it and reported no fill state (OKX answers ids only)
    "open",
    "partially_filled",
    "filled",
    "canceled",
    "expired",
    "rejected",
]


@dataclass(frozen=True, slots=True)
class Kline:
    """One candle; ``is_closed`` is False for the candle still forming."""

    open_time_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time_ms: int
    quote_volume: Decimal | None = None
    trades: int | None = None
    is_closed: bool = True


@dataclass(frozen=True, slots=True)
class Ticker:
    """Last price, best bid and ask, and the last 24 hours."""

    symbol: str
    last: Decimal
    bid: Decimal | None
    ask: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal | None
    time_ms: int | None


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Bids best (highest) first, asks best (lowest) first."""

    symbol: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the exchange reported it.

    ``type`` is ``limit``, ``market`` or ``limit_maker`` for the orders the adapters
    place, and the exchange's own name, lower-cased, for others (``stop_loss``).
    ``filled_quantity`` and ``average_price`` are None when the exchange did not
    say (status ``accepted``); ``price`` is None for market orders.
    """

    symbol: str
    order_id: str
    client_order_id: str
    side: Side
    type: str
    status: OrderStatus
    quantity: Decimal
    price: Decimal | None
    filled_quantity: Decimal | None
    average_price: Decimal | None
    time_in_force: TimeInForce | None
    created_ms: int | None
    updated_ms: int | None

    @property
    def is_open(self) -> bool:
        """Still working on the book (or accepted and not yet known to be done)."""
        return self.status in ("accepted", "open", "partially_filled")
