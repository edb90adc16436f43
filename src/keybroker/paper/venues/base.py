"""What a venue adapter is: an exchange's wire format for the paper venue, both ways.

    >>> venue = get_venue("binance")
    >>> operation = venue.operation(request, classified, intents)      # Place(...), Cancel(...)
    >>> answer = venue.placed(operation, [(order, fills)], now_ms)      # the exchange's own JSON

The desk (``desk.py``) works in exchange-neutral terms; an adapter turns a
bot's request into an ``Operation`` (orders come from the exchange profile's
own order-intent parser, so what the policy judged is what is simulated),
builds the public market-data requests the fill model needs and reads their
answers, and writes every answer in the exchange's shape: status, JSON body
and error codes as the exchange would send them, so a bot cannot tell paper
from live. Adding an exchange is adding one module with a ``VENUE``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

import httpx

from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.paper.model import (
    Balance,
    Book,
    Fees,
    Fill,
    Instrument,
    NewOrder,
    Order,
    PublicTrade,
    Refused,
)


@dataclass(frozen=True, slots=True)
class Place:
    """New orders (several for a batch endpoint); ``test``: validate, record nothing."""

    orders: tuple[NewOrder, ...]
    batch: bool = False
    test: bool = False
    response_type: str = "FULL"
    """Binance's newOrderRespType (ACK, RESULT, FULL); other venues ignore it."""


@dataclass(frozen=True, slots=True)
class Target:
    """One order named by id or client order id (on ``symbol`` when given)."""

    symbol: str | None
    order_id: int | None
    client_order_id: str | None


@dataclass(frozen=True, slots=True)
class Cancel:
    targets: tuple[Target, ...]
    batch: bool = False
    new_client_order_id: str | None = None
    """Binance's newClientOrderId of the cancel itself."""


@dataclass(frozen=True, slots=True)
class CancelAll:
    symbol: str


@dataclass(frozen=True, slots=True)
class QueryOrder:
    target: Target


@dataclass(frozen=True, slots=True)
class ListOrders:
    """Open, closed or all orders, newest ``limit``."""

    symbol: str | None
    state: str = "open"
    limit: int = 500


@dataclass(frozen=True, slots=True)
class ListFills:
    symbol: str | None
    limit: int = 500


@dataclass(frozen=True, slots=True)
class Balances:
    assets: frozenset[str] = field(default_factory=frozenset)
    """Only these (OKX's ``ccy``); empty: all."""


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A request of a kind the paper venue must answer (it changes or reads the paper
    account) but does not simulate; refused, never forwarded."""

    reason: str


Operation = (
    Place | Cancel | CancelAll | QueryOrder | ListOrders | ListFills | Balances | Unsupported
)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the exchange would have answered: status, JSON body, headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)

    @classmethod
    def json(cls, status: int, payload: object) -> Answer:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"))


Placed = tuple[Order, Sequence[Fill]] | Refused | None
"""One order's outcome: the order and its fills, why it was refused, or None for a test
order (Binance's /order/test) that passed every check and was not recorded."""


class Venue(Protocol):
    """One exchange's wire format for the paper venue."""

    exchange: str
    fees: Fees
    """The exchange's base-tier spot fees: the default of a new paper account."""
    book_depth: int
    """Levels per side asked for when a market order walks the book."""

    def answers(self, classified: ClassifiedRequest) -> bool:
        """Whether the paper venue answers this request for a paper credential.

        Everything that places, cancels or reads orders, and the balances; not
        public market data, nor other signed reads (fees, permissions), which
        still go to the exchange when the credential has a key.
        """
        ...

    def operation(
        self,
        request: httpx.Request,
        classified: ClassifiedRequest,
        intents: Sequence[OrderIntent],
    ) -> Operation:
        """What the bot's request asks of the paper account; Unsupported when not simulated.

        Raises Refused (INVALID) for a request the exchange would refuse as a whole.
        """
        ...

    def market_url(self, request: httpx.Request) -> str:
        """The scheme and host market data is fetched from (the one the bot's request named)."""
        ...

    def book_request(self, market_url: str, symbol: str) -> httpx.Request: ...

    def parse_book(self, body: bytes) -> Book | None: ...

    def trades_request(self, market_url: str, symbol: str) -> httpx.Request: ...

    def parse_trades(self, body: bytes) -> list[PublicTrade] | None:
        """Public trades, oldest first; None when the body cannot be read."""
        ...

    def instrument_request(self, market_url: str, symbol: str) -> httpx.Request: ...

    def parse_instrument(self, body: bytes, symbol: str) -> Instrument | None: ...

    def placed(self, operation: Place, outcomes: Sequence[Placed], now_ms: int) -> Answer: ...

    def cancelled(
        self, operation: Cancel, outcomes: Sequence[Order | Refused], now_ms: int
    ) -> Answer:
        """The answer to a cancel: one outcome per target."""
        ...

    def cancelled_all(
        self, operation: CancelAll, orders: Sequence[Order], now_ms: int
    ) -> Answer: ...

    def refused(self, refused: Refused) -> Answer:
        """The exchange's error answer for a request refused as a whole."""
        ...

    def order(self, order: Order | None, fills: Sequence[Fill]) -> Answer: ...

    def orders(self, orders: Sequence[Order], fills: Sequence[Fill]) -> Answer: ...

    def fills(self, orders: Sequence[Order], fills: Sequence[Fill]) -> Answer: ...

    def balances(self, balances: Sequence[Balance], fees: Fees, now_ms: int) -> Answer: ...


def decimal_text(value: Decimal, places: int | None = None) -> str:
    """Plain notation; ``places`` fixes the digits after the point (Binance writes 8)."""
    if places is not None:
        return f"{value:.{places}f}"
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"
