"""The paper venue at work: answer a paper credential's orders, fill resting ones as trades print.

    >>> desk = Desk(home / "paper.db", clock, market)        # market: the gateway's public fetcher
    >>> call = PaperCall("paper-bot", "binance", "testnet", request, classified, intents)
    >>> answer = await desk.answer(call)
    >>> answer.status, answer.body                            # what Binance would have said

A market order walks the book fetched at fill time (after the account's
optional latency); a limit order takes what crosses on arrival and rests with
the rest, and a background task polls the public trades of every symbol with
resting orders and fills them as trades go through their price. Market data
comes through ``MarketData`` (the gateway's limiter and deduplication): the
desk itself never opens a connection and never signs anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import httpx

from keybroker.clock import Clock
from keybroker.errors import PaperError, PaperRefused
from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.paper.fills import Plan, allocate, take
from keybroker.paper.ledger import Account, Ledger, Resting
from keybroker.paper.model import (
    ZERO,
    Book,
    Fill,
    Instrument,
    NewOrder,
    Order,
    Refusal,
    Refused,
)
from keybroker.paper.venues import Answer, Venue, get_venue
from keybroker.paper.venues.base import (
    Balances,
    Cancel,
    CancelAll,
    ListFills,
    ListOrders,
    Place,
    Placed,
    QueryOrder,
    Unsupported,
)

log = logging.getLogger("keybroker.paper")


class MarketData(Protocol):
    """Public market data, fetched the way the gateway fetches it (limiter, dedup)."""

    async def fetch(
        self, credential: str, exchange: str, environment: str, request: httpx.Request
    ) -> bytes | None:
        """The body of a 200 answer to the unsigned public ``request``; None otherwise."""
        ...


class MarketDataUnavailable(Exception):
    """The book, trades or instrument could not be fetched: nothing was decided."""


@dataclass(frozen=True, slots=True)
class PaperCall:
    """A paper credential's request, classified and with its order intents."""

    credential: str
    exchange: str
    environment: str
    request: httpx.Request
    classified: ClassifiedRequest
    intents: tuple[OrderIntent, ...]


def missing_account(credential: str) -> PaperRefused:
    return PaperRefused(
        f"paper account {credential!r} has no balances yet: "
        f"keybroker paper reset {credential} --balance USDT=10000"
    )


class Desk:
    """One gateway's paper venue: the ledger, cached instruments, the trade poller."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        market: MarketData,
        *,
        poll_interval_s: float = 1.0,
        mark_interval_ms: int = 1000,
        book_max_age_ms: int = 0,
        on_the_way_ttl_ms: int = 60_000,
    ) -> None:
        self.path = path
        self._clock = clock
        self._market = market
        self._poll_interval_s = poll_interval_s
        self._mark_interval_ms = mark_interval_ms
        self._book_max_age_ms = book_max_age_ms
        self._books: dict[tuple[str, str, str], tuple[int, Book]] = {}
        self._ledger: Ledger | None = None
        self._instruments: dict[tuple[str, str, str], Instrument] = {}
        self._tape: dict[tuple[str, str, str], tuple[int, int]] = {}
        """(exchange, environment, symbol) -> (newest public trade id, when it was seen)."""
        self._mids: dict[tuple[str, str, str], tuple[int, Decimal]] = {}
        self._marked: dict[tuple[str, str, str], int] = {}
        self._poller: asyncio.Task[None] | None = None
        self.polls = 0
        self._on_the_way: dict[tuple[str, tuple[str, ...]], list[_OnTheWay]] = {}
        self._on_the_way_ttl_ms = on_the_way_ttl_ms

    @property
    def ledger(self) -> Ledger:
        """The ledger, opened on first use (a gateway without paper credentials makes no file)."""
        if self._ledger is None:
            self._ledger = Ledger.open(self.path)
        return self._ledger

    def start(self) -> None:
        """Resume filling resting orders left by an earlier run (if the ledger exists)."""
        if self.path.exists() and self.ledger.resting():
            self._ensure_polling()

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # -- the policy's facts ------------------------------------------------------------
    # A paper credential's ``max_open_orders`` and ``max_position_notional`` count what
    # this desk holds, never the real account. Orders the policy allowed are "on the
    # way" from the policy (step 4) to the desk (step 8) across the limiter's wait and
    # the audit write; they count at once, so orders arriving together cannot squeeze
    # past a limit together (as ``gateway/facts.py`` does for live orders). An order
    # that never arrives (refused by the limiter after it was allowed) stops counting
    # after ``on_the_way_ttl_ms``: until then the count is too high, never too low.

    def open_orders(self, credential: str) -> int:
        """Open orders in the ledger (all symbols) plus allowed orders on their way."""
        return self.ledger.open_count(credential) + sum(
            way.orders for way in self._ways(credential)
        )

    def position_notional(
        self, credential: str, exchange: str, environment: str, symbol: str
    ) -> Decimal:
        """What the paper position in ``symbol`` is worth, plus allowed orders on their way.

        The position (what was bought here and is still held) is valued at the
        mid of the last book the desk walked for it, within a minute; without
        one, at what it cost.
        """
        position = self.ledger.position(credential, symbol)
        value = ZERO
        if position is not None and position.qty:
            seen = self._mids.get((exchange, environment, symbol))
            fresh = seen is not None and self._clock.now_ms() - seen[0] <= 60_000
            value = abs(position.qty) * seen[1] if seen is not None and fresh else position.cost
        return value + sum(
            (way.grows.get(symbol, ZERO) for way in self._ways(credential)), start=ZERO
        )

    def expect(
        self,
        credential: str,
        client_order_ids: tuple[str, ...],
        *,
        orders: int,
        grows: Mapping[str, Decimal],
    ) -> None:
        """The policy allowed these orders: count them until ``arrived`` (or the TTL)."""
        way = _OnTheWay(self._clock.now_ms(), orders, dict(grows))
        self._on_the_way.setdefault((credential, client_order_ids), []).append(way)

    def arrived(self, credential: str, client_order_ids: tuple[str, ...]) -> None:
        """The desk answered the request that carried these orders (recorded or refused)."""
        key = (credential, client_order_ids)
        ways = self._on_the_way.get(key)
        if ways:
            ways.pop(0)
            if not ways:
                del self._on_the_way[key]

    def _ways(self, credential: str) -> list[_OnTheWay]:
        cutoff = self._clock.now_ms() - self._on_the_way_ttl_ms
        found: list[_OnTheWay] = []
        for key in [key for key in self._on_the_way if key[0] == credential]:
            ways = [way for way in self._on_the_way[key] if way.since_ms >= cutoff]
            if ways:
                self._on_the_way[key] = ways
                found.extend(ways)
            else:
                del self._on_the_way[key]
        return found

    # -- answering a request -------------------------------------------------------------

    async def answer(self, call: PaperCall) -> Answer:
        """The exchange-shaped answer to ``call``.

        Raises PaperRefused (no venue, not simulated, no account) and
        MarketDataUnavailable (no book or instrument: nothing was recorded).
        """
        venue = get_venue(call.exchange)
        if venue is None:
            raise PaperRefused(f"paper trading is not available for {call.exchange} yet")
        try:
            operation = venue.operation(call.request, call.classified, call.intents)
        except Refused as refused:
            return venue.refused(refused)
        if isinstance(operation, Unsupported):
            raise PaperRefused(operation.reason)
        account = self.ledger.account(call.credential)
        if account is None:
            raise missing_account(call.credential)
        if (account.exchange, account.environment) != (call.exchange, call.environment):
            raise PaperRefused(
                f"paper account {call.credential!r} was reset for {account.exchange} "
                f"{account.environment}; reset it again: keybroker paper reset {call.credential}"
            )
        now = self._clock.now_ms()
        ledger = self.ledger
        name = call.credential
        if isinstance(operation, Place):
            market_url = venue.market_url(call.request)
            if account.latency_ms:
                await asyncio.sleep(account.latency_ms / 1000)
            outcomes: list[Placed] = []
            for order in operation.orders:
                try:
                    outcomes.append(await self._place(account, venue, order, market_url, operation))
                except _Tested:
                    outcomes.append(None)
                except Refused as refused:
                    outcomes.append(refused)
            return venue.placed(operation, outcomes, self._clock.now_ms())
        if isinstance(operation, Cancel):
            cancelled: list[Order | Refused] = []
            for target in operation.targets:
                try:
                    cancelled.append(
                        ledger.cancel(
                            name,
                            symbol=target.symbol,
                            now_ms=now,
                            order_id=target.order_id,
                            client_order_id=target.client_order_id,
                        )
                    )
                except Refused as refused:
                    cancelled.append(refused)
            return venue.cancelled(operation, cancelled, now)
        if isinstance(operation, CancelAll):
            return venue.cancelled_all(
                operation, ledger.cancel_all(name, operation.symbol, now_ms=now), now
            )
        if isinstance(operation, QueryOrder):
            target = operation.target
            found = ledger.order(
                name,
                symbol=target.symbol,
                order_id=target.order_id,
                client_order_id=target.client_order_id,
            )
            return venue.order(found, ledger.fills_of([found.order_id]) if found else [])
        if isinstance(operation, ListOrders):
            orders = ledger.orders(
                name, operation.symbol, state=operation.state, limit=operation.limit
            )
            return venue.orders(orders, ledger.fills_of([o.order_id for o in orders]))
        if isinstance(operation, ListFills):
            fills = ledger.fills(name, operation.symbol, limit=operation.limit)
            orders = ledger.orders_by_id(name, {f.order_id for f in fills})
            return venue.fills(orders, fills)
        assert isinstance(operation, Balances)
        balances = [
            b for b in ledger.balances(name) if not operation.assets or b.asset in operation.assets
        ]
        return venue.balances(balances, account.fees, now)

    async def _place(
        self, account: Account, venue: Venue, order: NewOrder, market_url: str, operation: Place
    ) -> tuple[Order, Sequence[Fill]]:
        instrument = await self._instrument(account, venue, market_url, order.symbol)
        if order.quantity is not None and order.quantity < instrument.min_qty:
            raise Refused(Refusal.LOT_SIZE)
        if (
            order.price is not None
            and order.quantity is not None
            and order.price * order.quantity < instrument.min_notional
        ):
            raise Refused(Refusal.NOTIONAL)
        book = await self._book(account, venue, market_url, instrument)
        plan, rests = decide(order, book, instrument.step_size)
        if operation.test:
            raise _Tested()
        last_trade_id = 0
        if rests:
            last_trade_id = await self._tape_position(account, venue, market_url, order.symbol)
        placed, fills = self.ledger.place(
            account.credential,
            order,
            instrument,
            taken=plan,
            rests=rests,
            fees=account.fees,
            mid=book.mid,
            now_ms=self._clock.now_ms(),
            market_url=market_url,
            last_trade_id=last_trade_id,
        )
        if placed.is_open:
            self._ensure_polling()
        return placed, fills

    # -- market data --------------------------------------------------------------------

    async def _get(self, account: Account, request: httpx.Request) -> bytes:
        body = await self._market.fetch(
            account.credential, account.exchange, account.environment, request
        )
        if body is None:
            raise MarketDataUnavailable("the exchange gave no market data for the paper venue")
        return body

    async def _instrument(
        self, account: Account, venue: Venue, market_url: str, symbol: str
    ) -> Instrument:
        key = (account.exchange, account.environment, symbol)
        known = self._instruments.get(key)
        if known is None:
            body = await self._get(account, venue.instrument_request(market_url, symbol))
            known = venue.parse_instrument(body, symbol)
            if known is None:
                raise Refused(Refusal.UNKNOWN_SYMBOL)
            self._instruments[key] = known
        return known

    async def _book(
        self, account: Account, venue: Venue, market_url: str, instrument: Instrument
    ) -> Book:
        key = (account.exchange, account.environment, instrument.symbol)
        if self._book_max_age_ms:
            # Forty-five bots ordering once a second would spend the exchange's weight
            # budget on books alone; a book this young is as good as a fresh one.
            cached = self._books.get(key)
            if cached is not None and self._clock.now_ms() - cached[0] <= self._book_max_age_ms:
                return cached[1]
        body = await self._get(account, venue.book_request(market_url, instrument.symbol))
        book = venue.parse_book(body)
        if book is None:
            raise MarketDataUnavailable("the exchange's order book could not be read")
        mid = book.mid
        now = self._clock.now_ms()
        self._books[key] = (now, book)
        if mid is not None:
            self._mids[key] = (now, mid)
            self._mark(account.exchange, account.environment, instrument, mid, now)
        return book

    async def _tape_position(
        self, account: Account, venue: Venue, market_url: str, symbol: str
    ) -> int:
        """The newest public trade id now: trades after it may fill a new resting order."""
        key = (account.exchange, account.environment, symbol)
        known = self._tape.get(key)
        now = self._clock.now_ms()
        if known is not None and now - known[1] <= 2000 * self._poll_interval_s:
            return known[0]
        trades = venue.parse_trades(
            await self._get(account, venue.trades_request(market_url, symbol))
        )
        if trades is None:
            raise MarketDataUnavailable("the exchange's public trades could not be read")
        newest = max((trade.trade_id for trade in trades), default=0)
        self._tape[key] = (newest, now)
        return newest

    def _mark(
        self, exchange: str, environment: str, instrument: Instrument, price: Decimal, now: int
    ) -> None:
        key = (exchange, environment, instrument.symbol)
        if now - self._marked.get(key, -self._mark_interval_ms) < self._mark_interval_ms:
            return
        self._marked[key] = now
        self.ledger.mark(exchange, environment, instrument, price, now)

    # -- resting orders ------------------------------------------------------------------

    def _ensure_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="keybroker-paper-trades"
            )

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                if not await self.poll_once():
                    return  # nothing rests any more; the next resting order starts a new poller
            except Exception as exc:  # keep polling: one failed round must not strand orders
                log.warning("paper trade poll failed: %s", type(exc).__name__)

    async def poll_once(self) -> int:
        """Fetch recent trades of every symbol with resting orders and fill what they cross.

        Returns how many orders were resting when the round started.
        """
        self.polls += 1
        resting = self.ledger.resting()
        groups: dict[tuple[str, str, str, str], list[Resting]] = {}
        for order in resting:
            key = (order.exchange, order.environment, order.market_url, order.symbol)
            groups.setdefault(key, []).append(order)
        for (exchange, environment, market_url, symbol), orders in groups.items():
            venue = get_venue(exchange)
            if venue is None:
                continue
            request = venue.trades_request(market_url, symbol)
            body = await self._market.fetch(orders[0].credential, exchange, environment, request)
            trades = None if body is None else venue.parse_trades(body)
            if not trades:
                continue
            now = self._clock.now_ms()
            tape_key = (exchange, environment, symbol)
            self._tape[tape_key] = (trades[-1].trade_id, now)
            instrument = self._instruments.get(tape_key)
            if instrument is not None:
                self._mark(exchange, environment, instrument, trades[-1].price, now)
            recent_mid = self._mids.get(tape_key)
            mid = recent_mid[1] if recent_mid and now - recent_mid[0] <= 5000 else None
            by_credential: dict[str, list[Resting]] = {}
            for order in orders:
                by_credential.setdefault(order.credential, []).append(order)
            for credential, own in by_credential.items():
                account = self.ledger.account(credential)
                if account is None:
                    continue
                shares = allocate(
                    [(o.order_id, o.side, o.price, o.remaining, o.last_trade_id) for o in own],
                    trades,
                )
                for order_id, (qty, newest) in shares.items():
                    self.ledger.fill_resting(
                        order_id,
                        qty,
                        last_trade_id=newest,
                        rate=account.fees.maker,
                        mid=mid,
                        now_ms=now,
                    )
        return len(resting)


@dataclass(slots=True)
class _OnTheWay:
    since_ms: int
    orders: int
    grows: dict[str, Decimal]
    """Symbol -> notional the orders add to its position."""


class _Tested(Refused):
    # A test order (Binance /order/test) passed every check: nothing is recorded.
    def __init__(self) -> None:
        super().__init__(Refusal.INVALID, "test")


def decide(order: NewOrder, book: Book, step: Decimal) -> tuple[Plan, bool]:
    """What an order takes from ``book`` on arrival, and whether the rest of it rests.

    Raises Refused(WOULD_TAKE) for a post-only order that would take. A FOK
    order that cannot fill in full takes nothing (it expires, as at Binance).
    """
    if order.type == "market":
        plan = take(
            book,
            order.side,
            quantity=order.quantity,
            quote_quantity=order.quote_quantity,
            step=step,
        )
        return plan, False
    assert order.quantity is not None and order.price is not None
    plan = take(book, order.side, quantity=order.quantity, limit_price=order.price, step=step)
    if order.post_only and plan.levels:
        raise Refused(Refusal.WOULD_TAKE)
    if order.time_in_force == "FOK" and plan.qty < order.quantity:
        return Plan(()), False
    if order.time_in_force == "IOC":
        return plan, False
    return plan, plan.qty < order.quantity


def open_ledger(path: Path) -> Ledger:
    """The ledger at ``path`` for reading (the CLI, the report); PaperError when there is none."""
    if not path.exists():
        raise PaperError(
            f"there is no paper ledger at {path} yet: "
            "keybroker paper reset NAME --balance USDT=10000"
        )
    return Ledger.open(path)
