"""Orders, wallets and matching over the synthetic markets; exchange-neutral and pure.

    >>> rules = Rules("spot", Decimal("0.001"), Decimal("0.001"), refuse_crossing_post_only=True,
    ...               refuse_unfilled_fok=False)
    >>> engine = Engine({"spot": (rules, default_spot_instruments("binance"))}, seed=1)
    >>> buy = OrderRequest("BTCUSDT", "BUY", "MARKET", quantity=Decimal("0.01"))
    >>> engine.place("key-1", "spot", buy, now_ms=0).status
    'FILLED'

The exchange modules translate their wire formats into ``OrderRequest`` and a
``Refused`` back into their own codes; nothing here knows an error code. Money
is ``Decimal`` throughout. A *product* is one book family: ``spot`` wallets
(free and locked per asset) or ``usdm`` (a USDT margin wallet with one-way
positions, cross margin, fixed leverage).

Market orders walk the book at each level's price (taker fee). Limit orders
take what crosses, then rest (GTC) or expire (IOC/FOK); a resting order fills
at its own price (maker fee) when a later step moves the book through it, and
only as far as the book has volume at or beyond that price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from keybroker.emulator.market import Instrument, Level, Market, Side

OrderType = Literal["LIMIT", "MARKET"]
TimeInForce = Literal["GTC", "IOC", "FOK"]
Status = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED"]

ZERO = Decimal(0)
FEE_QUANTUM = Decimal("0.00000001")
DEFAULT_BALANCES: Mapping[str, Decimal] = {
    "BTC": Decimal("1"),
    "ETH": Decimal("10"),
    "USDT": Decimal("100000"),
}


class Refusal(StrEnum):
    """Why the engine said no; each exchange module maps these to its own codes."""

    UNKNOWN_SYMBOL = "unknown symbol"
    UNKNOWN_ORDER = "unknown order"
    PRICE_FILTER = "price is not a positive multiple of the tick size"
    LOT_SIZE = "quantity is below the minimum or not a multiple of the step size"
    NOTIONAL = "order value is below the minimum notional"
    DUPLICATE_CLIENT_ORDER_ID = "an open order already has this client order id"
    INSUFFICIENT_BALANCE = "insufficient balance"
    INSUFFICIENT_MARGIN = "insufficient margin"
    WOULD_TAKE = "a post-only order would take liquidity"
    FOK_UNFILLED = "a fill-or-kill order cannot fill completely"
    REDUCE_ONLY = "a reduce-only order would not reduce the position"


class Refused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rules:
    """How one product trades: fees, and whether it refuses or expires the unfillable."""

    kind: Literal["spot", "linear"]
    maker_fee: Decimal
    taker_fee: Decimal
    refuse_crossing_post_only: bool
    refuse_unfilled_fok: bool
    leverage: int = 20


@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce = "GTC"
    quantity: Decimal | None = None
    quote_quantity: Decimal | None = None  # market buys that spend an amount of quote
    price: Decimal | None = None
    client_order_id: str = ""
    post_only: bool = False
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class Fill:
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    trade_id: int
    is_maker: bool
    time_ms: int


@dataclass
class Order:
    order_id: int
    account: str
    product: str
    request: OrderRequest
    created_ms: int
    updated_ms: int
    status: Status = "NEW"
    executed_qty: Decimal = ZERO
    cumulative_quote: Decimal = ZERO
    fills: list[Fill] = field(default_factory=list)
    reserved: Decimal = ZERO  # spot: locked asset; usdm: initial margin held for the order

    @property
    def symbol(self) -> str:
        return self.request.symbol

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def remaining(self) -> Decimal:
        return (self.request.quantity or ZERO) - self.executed_qty

    @property
    def average_price(self) -> Decimal:
        if self.executed_qty == 0:
            return ZERO
        return self.cumulative_quote / self.executed_qty

    def snapshot(self) -> dict[str, object]:
        """A JSON-ready summary for the journal."""
        r = self.request
        return {
            "order_id": self.order_id,
            "client_order_id": r.client_order_id,
            "product": self.product,
            "symbol": r.symbol,
            "side": r.side,
            "type": r.type,
            "time_in_force": r.time_in_force,
            "price": None if r.price is None else str(r.price),
            "quantity": None if r.quantity is None else str(r.quantity),
            "quote_quantity": None if r.quote_quantity is None else str(r.quote_quantity),
            "status": self.status,
            "executed_qty": str(self.executed_qty),
            "cumulative_quote": str(self.cumulative_quote),
        }


@dataclass
class Position:
    amount: Decimal = ZERO  # signed: long > 0, short < 0
    entry_price: Decimal = ZERO
    updated_ms: int = 0


@dataclass
class Account:
    free: dict[str, Decimal]
    locked: dict[str, Decimal]
    margin_balance: Decimal  # usdm wallet balance in USDT, realised PnL and fees included
    positions: dict[str, Position] = field(default_factory=dict)
    updated_ms: int = 0


class Engine:
    """Every product's markets, every account's wallets and orders."""

    def __init__(
        self,
        products: Mapping[str, tuple[Rules, list[Instrument]]],
        seed: int,
        *,
        balances: Mapping[str, Mapping[str, Decimal]] | None = None,
        now_ms: int = 0,
    ) -> None:
        self.rules = {product: rules for product, (rules, _) in products.items()}
        self.markets = {
            product: {i.symbol: Market(i, seed, now_ms) for i in instruments}
            for product, (_, instruments) in products.items()
        }
        self._initial_balances = balances or {}
        self._accounts: dict[str, Account] = {}
        self.orders: list[Order] = []
        self._next_order_id = 1

    # --- look-ups ----------------------------------------------------------------------------

    def market(self, product: str, symbol: str) -> Market:
        """The market, or Refused(UNKNOWN_SYMBOL)."""
        market = self.markets[product].get(symbol)
        if market is None:
            raise Refused(Refusal.UNKNOWN_SYMBOL)
        return market

    def account(self, key: str) -> Account:
        if key not in self._accounts:
            start = dict(self._initial_balances.get(key, DEFAULT_BALANCES))
            self._accounts[key] = Account(
                free=start, locked={}, margin_balance=start.get("USDT", ZERO)
            )
        return self._accounts[key]

    def find(
        self,
        account: str,
        product: str,
        symbol: str | None,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
    ) -> Order | None:
        """The account's order by id, or the newest one with that client order id."""
        for order in reversed(self.orders):
            if order.account != account or order.product != product:
                continue
            if symbol is not None and order.symbol != symbol:
                continue
            if order_id is not None and order.order_id == order_id:
                return order
            if order_id is None and client_order_id and order.client_order_id == client_order_id:
                return order
        return None

    def open_orders(self, account: str, product: str, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self.orders
            if o.account == account
            and o.product == product
            and o.is_open
            and (symbol is None or o.symbol == symbol)
        ]

    # --- placing and cancelling -----------------------------------------------------------

    def place(self, account: str, product: str, request: OrderRequest, now_ms: int) -> Order:
        """Check, reserve funds, take what crosses, rest the remainder; or raise Refused."""
        market = self.market(product, request.symbol)
        rules = self.rules[product]
        self._check_filters(market, request)
        if request.client_order_id and any(
            o.client_order_id == request.client_order_id for o in self.open_orders(account, product)
        ):
            raise Refused(Refusal.DUPLICATE_CLIENT_ORDER_ID)
        order = Order(self._next_order_id, account, product, request, now_ms, now_ms)
        preview = self._preview(market, request)
        if request.type == "LIMIT" and preview and request.post_only:
            if rules.refuse_crossing_post_only:
                raise Refused(Refusal.WOULD_TAKE)
            return self._record(order, "EXPIRED")
        if request.time_in_force == "FOK" and sum(lv.qty for lv in preview) < order.remaining:
            if rules.refuse_unfilled_fok:
                raise Refused(Refusal.FOK_UNFILLED)
            return self._record(order, "EXPIRED")
        self._reserve(order, market, rules, preview)
        self._next_order_id += 1
        self.orders.append(order)
        taken = market.take(
            request.side,
            quantity=request.quantity,
            quote_quantity=request.quote_quantity,
            limit_price=request.price,
        )
        for level in taken:
            self._fill(order, market, level.price, level.qty, is_maker=False, now_ms=now_ms)
        if request.type == "MARKET" or request.time_in_force != "GTC":
            self._close(order, "EXPIRED" if self._unfilled(order, market) else "FILLED", now_ms)
        elif order.remaining == 0:
            self._close(order, "FILLED", now_ms)
        return order

    def cancel(
        self,
        account: str,
        product: str,
        symbol: str,
        now_ms: int,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
    ) -> Order:
        """Cancel an open order; Refused(UNKNOWN_ORDER) if there is none to cancel."""
        order = self.find(
            account, product, symbol, order_id=order_id, client_order_id=client_order_id
        )
        if order is None or not order.is_open:
            raise Refused(Refusal.UNKNOWN_ORDER)
        self._close(order, "CANCELED", now_ms)
        return order

    # --- moving markets -------------------------------------------------------------------

    def step(self, now_ms: int, count: int = 1, symbol: str | None = None) -> None:
        """Walk every market (or every product's ``symbol``) and fill resting orders it crosses."""
        for product, markets in self.markets.items():
            for market in markets.values():
                if symbol is None or market.instrument.symbol == symbol:
                    for _ in range(count):
                        market.step(now_ms)
                        self._match_resting(product, market, now_ms)

    def move(self, symbol: str, price: Decimal, now_ms: int, product: str | None = None) -> int:
        """Jump ``symbol``'s mid to ``price`` in every product (or one); returns markets moved."""
        moved = 0
        for name, markets in self.markets.items():
            market = markets.get(symbol)
            if market is not None and product in (None, name):
                market.move_to(price, now_ms)
                self._match_resting(name, market, now_ms)
                moved += 1
        return moved

    def _match_resting(self, product: str, market: Market, now_ms: int) -> None:
        for order in [o for o in self.orders if o.product == product and o.is_open]:
            if order.symbol != market.instrument.symbol or order.request.price is None:
                continue
            taken = market.take(
                order.request.side, quantity=order.remaining, limit_price=order.request.price
            )
            qty = sum((level.qty for level in taken), ZERO)
            if qty > 0:
                self._fill(order, market, order.request.price, qty, is_maker=True, now_ms=now_ms)
                if order.remaining == 0:
                    self._close(order, "FILLED", now_ms)

    # --- internals ------------------------------------------------------------------------

    def _check_filters(self, market: Market, request: OrderRequest) -> None:
        spec = market.instrument
        price = request.price
        if request.type == "LIMIT" and (price is None or price <= 0 or price % spec.tick_size):
            raise Refused(Refusal.PRICE_FILTER)
        if request.quantity is not None and (
            request.quantity < spec.min_qty or request.quantity % spec.step_size
        ):
            raise Refused(Refusal.LOT_SIZE)
        reference = price if price is not None else market.mid
        notional = (
            request.quote_quantity
            if request.quote_quantity is not None
            else (request.quantity or ZERO) * reference
        )
        if notional < spec.min_notional:
            raise Refused(Refusal.NOTIONAL)

    def _preview(self, market: Market, request: OrderRequest) -> list[Level]:
        return market.take(
            request.side,
            quantity=request.quantity,
            quote_quantity=request.quote_quantity,
            limit_price=request.price,
            dry_run=True,
        )

    def _reserve(self, order: Order, market: Market, rules: Rules, preview: list[Level]) -> None:
        request, spec = order.request, market.instrument
        wallet = self.account(order.account)
        cost = sum((lv.price * lv.qty for lv in preview), ZERO)
        if rules.kind == "linear":
            notional = (request.quantity or ZERO) * request.price if request.price else cost
            margin = self._margin_needed(wallet, order, notional, rules.leverage)
            if margin > self.available_margin(order.account, order.product):
                raise Refused(Refusal.INSUFFICIENT_MARGIN)
            order.reserved = margin
            return
        if request.side == "BUY":
            asset = spec.quote
            if request.quote_quantity is not None:
                need = request.quote_quantity
            elif request.type == "LIMIT":
                need = (request.quantity or ZERO) * (request.price or ZERO)
            else:
                need = cost
        else:
            asset, need = spec.base, request.quantity or ZERO
        if wallet.free.get(asset, ZERO) < need:
            raise Refused(Refusal.INSUFFICIENT_BALANCE)
        wallet.free[asset] -= need
        wallet.locked[asset] = wallet.locked.get(asset, ZERO) + need
        order.reserved = need

    def _margin_needed(
        self, wallet: Account, order: Order, notional: Decimal, leverage: int
    ) -> Decimal:
        request = order.request
        position = wallet.positions.get(request.symbol, Position())
        opposite = (position.amount > 0 and request.side == "SELL") or (
            position.amount < 0 and request.side == "BUY"
        )
        quantity = request.quantity or ZERO
        closable = abs(position.amount) if opposite else ZERO
        if request.reduce_only and (not opposite or quantity > closable):
            raise Refused(Refusal.REDUCE_ONLY)
        if quantity == 0:
            return notional / leverage
        opening = max(ZERO, quantity - closable)
        return notional * opening / quantity / leverage

    def available_margin(self, account: str, product: str) -> Decimal:
        """usdm: wallet + unrealised PnL - position margin - margin held by open orders."""
        wallet = self.account(account)
        leverage = self.rules[product].leverage
        held = sum((o.reserved for o in self.open_orders(account, product)), ZERO)
        unrealised, position_margin = ZERO, ZERO
        for symbol, position in wallet.positions.items():
            mark = self.markets[product][symbol].mid
            unrealised += (mark - position.entry_price) * position.amount
            position_margin += abs(position.amount) * mark / leverage
        return wallet.margin_balance + unrealised - position_margin - held

    def _fill(
        self,
        order: Order,
        market: Market,
        price: Decimal,
        qty: Decimal,
        *,
        is_maker: bool,
        now_ms: int,
    ) -> None:
        rules, spec = self.rules[order.product], market.instrument
        wallet = self.account(order.account)
        notional = price * qty
        rate = rules.maker_fee if is_maker else rules.taker_fee
        if rules.kind == "linear":
            fee, fee_asset = (notional * rate).quantize(FEE_QUANTUM), spec.quote
            wallet.margin_balance -= fee
            self._move_position(wallet, spec.symbol, order.request.side, price, qty, now_ms)
            release = min(order.reserved, notional / rules.leverage)
            order.reserved -= release
        elif order.request.side == "BUY":
            fee, fee_asset = (qty * rate).quantize(FEE_QUANTUM), spec.base
            self._spend(wallet, order, spec.quote, notional)
            wallet.free[spec.base] = wallet.free.get(spec.base, ZERO) + qty - fee
        else:
            fee, fee_asset = (notional * rate).quantize(FEE_QUANTUM), spec.quote
            self._spend(wallet, order, spec.base, qty)
            wallet.free[spec.quote] = wallet.free.get(spec.quote, ZERO) + notional - fee
        trade = market.print_trade(
            price, qty, now_ms, buyer_is_maker=((order.request.side == "BUY") == is_maker)
        )
        order.fills.append(Fill(price, qty, fee, fee_asset, trade.trade_id, is_maker, now_ms))
        order.executed_qty += qty
        order.cumulative_quote += notional
        order.status = "PARTIALLY_FILLED"
        order.updated_ms = wallet.updated_ms = now_ms

    @staticmethod
    def _spend(wallet: Account, order: Order, asset: str, amount: Decimal) -> None:
        wallet.locked[asset] = wallet.locked.get(asset, ZERO) - amount
        order.reserved -= amount

    @staticmethod
    def _move_position(
        wallet: Account, symbol: str, side: Side, price: Decimal, qty: Decimal, now_ms: int
    ) -> None:
        position = wallet.positions.setdefault(symbol, Position())
        signed = qty if side == "BUY" else -qty
        if position.amount == 0 or (position.amount > 0) == (signed > 0):
            size = abs(position.amount)
            position.entry_price = (size * position.entry_price + qty * price) / (size + qty)
        else:
            closing = min(abs(position.amount), qty)
            direction = 1 if position.amount > 0 else -1
            wallet.margin_balance += closing * (price - position.entry_price) * direction
            if qty > abs(position.amount):
                position.entry_price = price
        position.amount += signed
        if position.amount == 0:
            position.entry_price = ZERO
        position.updated_ms = now_ms

    def _unfilled(self, order: Order, market: Market) -> bool:
        request = order.request
        if request.quote_quantity is None:
            return order.remaining > 0
        left = request.quote_quantity - order.cumulative_quote
        best = market.best_ask()
        return best is None or left >= best * market.instrument.step_size

    def _close(self, order: Order, status: Status, now_ms: int) -> None:
        if order.reserved > 0 and self.rules[order.product].kind == "spot":
            spec = self.markets[order.product][order.symbol].instrument
            asset = spec.quote if order.request.side == "BUY" else spec.base
            wallet = self.account(order.account)
            wallet.locked[asset] -= order.reserved
            wallet.free[asset] = wallet.free.get(asset, ZERO) + order.reserved
        order.reserved = ZERO
        order.status = status
        order.updated_ms = now_ms

    def _record(self, order: Order, status: Status) -> Order:
        # An order that expires on arrival (post-only crossing, unfillable FOK) still exists.
        order.status = status
        self._next_order_id += 1
        self.orders.append(order)
        return order
