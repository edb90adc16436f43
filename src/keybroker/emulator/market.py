"""A deterministic synthetic market for one instrument: a seeded random walk and a book around it.

    >>> market = Market(default_spot_instruments("binance")[0], seed=7)
    >>> market.best_ask() > market.mid > market.best_bid()
    True
    >>> fills = market.take("BUY", quantity=Decimal("0.5"))   # walks the asks

Same seed, same steps: same prices, same book, same candles, on every machine
(string seeds go through SHA-512 in ``random.Random``, not ``hash()``). The
market moves only when told to (``step``, ``move_to``); wall-clock time only
places the candles on the time axis. Liquidity taken from the book stays
taken until the next step rebuilds the book.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Literal

Side = Literal["BUY", "SELL"]

CANDLE_HISTORY = 1500  # candles kept per interval: Binance serves at most 1000-1500 per call
TRADE_HISTORY = 1000


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the market needs to know about one symbol; ``symbol`` is the exchange's own id."""

    symbol: str
    base: str
    quote: str
    price: Decimal  # starting mid price
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    level_qty: Decimal  # typical size of one book level
    level_gap: int = 10  # ticks between two book levels
    depth: int = 50  # levels per side
    volatility: float = 0.002  # standard deviation of one step's relative move


@dataclass(frozen=True, slots=True)
class Level:
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: int
    price: Decimal
    qty: Decimal
    time_ms: int
    buyer_is_maker: bool


def _seeded(*parts: object) -> random.Random:
    # Reproducible on purpose (a string seed goes through SHA-512); nothing here is secret.
    return random.Random(":".join(map(str, parts)))  # noqa: S311


def _to_decimal(value: float) -> Decimal:
    return Decimal(repr(round(value, 10)))


class Market:
    """One instrument's market; pure apart from its own seeded random state."""

    def __init__(self, instrument: Instrument, seed: int, now_ms: int = 0) -> None:
        self.instrument = instrument
        self.seed = seed
        self.mid = instrument.price
        self.steps = 0
        self._walk = _seeded(seed, instrument.symbol, "walk")
        self._bids: list[Level] = []
        self._asks: list[Level] = []
        self._shapes: dict[int, list[tuple[float, float, float, float, float]]] = {}
        self._trades: deque[Trade] = deque(maxlen=TRADE_HISTORY)
        self._next_trade_id = 1
        self._rebuild_book()
        self._print_public_trades(now_ms, count=50)

    # --- the book -------------------------------------------------------------------------

    def book(self, limit: int | None = None) -> tuple[list[Level], list[Level]]:
        """(bids best first, asks best first), after whatever takers consumed this step."""
        bids = [level for level in self._bids if level.qty > 0]
        asks = [level for level in self._asks if level.qty > 0]
        if limit is not None:
            return bids[:limit], asks[:limit]
        return bids, asks

    def best_bid(self) -> Decimal | None:
        bids, _ = self.book(1)
        return bids[0].price if bids else None

    def best_ask(self) -> Decimal | None:
        _, asks = self.book(1)
        return asks[0].price if asks else None

    def take(
        self,
        side: Side,
        *,
        quantity: Decimal | None = None,
        quote_quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        dry_run: bool = False,
    ) -> list[Level]:
        """Walk the opposite side of the book; return (price, qty) per level touched.

        A BUY walks the asks upward, a SELL the bids downward, stopping at
        ``limit_price`` if given. Exactly one of ``quantity`` (base) and
        ``quote_quantity`` (spend this much quote) is given. Returns fewer than
        asked when the book runs out. ``dry_run`` leaves the book as it was.
        """
        if (quantity is None) == (quote_quantity is None):
            raise ValueError("give exactly one of quantity and quote_quantity")
        levels = self._asks if side == "BUY" else self._bids
        step = self.instrument.step_size
        taken: list[Level] = []
        remaining = quantity if quantity is not None else quote_quantity
        assert remaining is not None
        for index, level in enumerate(levels):
            if remaining <= 0:
                break
            if level.qty <= 0:
                continue
            if limit_price is not None and (
                (side == "BUY" and level.price > limit_price)
                or (side == "SELL" and level.price < limit_price)
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
            if not dry_run:
                levels[index] = Level(level.price, level.qty - qty)
        return taken

    # --- moving the market ----------------------------------------------------------------

    def step(self, now_ms: int, count: int = 1) -> None:
        """Move the random walk ``count`` steps; each step rebuilds the book and prints trades."""
        tick = self.instrument.tick_size
        for _ in range(count):
            move = _to_decimal(self._walk.gauss(0.0, self.instrument.volatility))
            self.mid = max(tick, (self.mid * (1 + move)).quantize(tick, ROUND_HALF_EVEN))
            self.steps += 1
            self._rebuild_book()
            self._print_public_trades(now_ms, count=5)

    def move_to(self, price: Decimal, now_ms: int) -> None:
        """Put the mid price at ``price`` (a step that jumps instead of walking)."""
        if price <= 0:
            raise ValueError("price must be positive")
        self.mid = price.quantize(self.instrument.tick_size, ROUND_HALF_EVEN)
        self.steps += 1
        self._rebuild_book()
        self._print_public_trades(now_ms, count=5)

    def _rebuild_book(self) -> None:
        spec = self.instrument
        rng = _seeded(self.seed, spec.symbol, "book", self.steps)
        gap = spec.tick_size * spec.level_gap
        self._bids, self._asks = [], []
        for i in range(spec.depth):
            for levels, sign in ((self._bids, -1), (self._asks, 1)):
                size = spec.level_qty * _to_decimal(rng.uniform(0.5, 1.5) * (1 + i / 10))
                qty = max(spec.step_size, size.quantize(spec.step_size, ROUND_DOWN))
                price = self.mid + sign * gap * (i + 1)
                if price > 0:
                    levels.append(Level(price, qty))

    # --- trades ---------------------------------------------------------------------------

    def trades(self, limit: int) -> list[Trade]:
        """The most recent public trades, oldest first."""
        return list(self._trades)[-limit:] if limit > 0 else []

    def print_trade(
        self, price: Decimal, qty: Decimal, time_ms: int, buyer_is_maker: bool
    ) -> Trade:
        """Add a trade to the public tape (synthetic or a user's fill); returns it."""
        trade = Trade(self._next_trade_id, price, qty, time_ms, buyer_is_maker)
        self._next_trade_id += 1
        self._trades.append(trade)
        return trade

    def _print_public_trades(self, now_ms: int, count: int) -> None:
        spec = self.instrument
        rng = _seeded(self.seed, spec.symbol, "trades", self.steps)
        gap = spec.tick_size * spec.level_gap
        for i in range(count):
            buyer_is_maker = rng.random() < 0.5
            price = self.mid - gap if buyer_is_maker else self.mid + gap
            size = spec.level_qty * _to_decimal(rng.uniform(0.01, 0.5))
            qty = max(spec.step_size, size.quantize(spec.step_size, ROUND_DOWN))
            self.print_trade(price, qty, now_ms - (count - i) * 1000, buyer_is_maker)

    # --- candles --------------------------------------------------------------------------

    def candles(
        self,
        interval_ms: int,
        now_ms: int,
        *,
        limit: int,
        start_ms: int | None = None,
        end_ms: int | None = None,
        from_start: bool | None = None,
    ) -> list[Candle]:
        """Up to ``limit`` candles opening within [start_ms, end_ms], oldest first.

        The newest candle is the one containing ``now_ms`` and closes at the
        current mid, so candles, ticker and book always agree; the shape of the
        history behind it is fixed by the seed and the interval. ``from_start``
        (default: whether ``start_ms`` is given) keeps the oldest ``limit``
        candles of the range instead of the newest, as Binance does with
        ``startTime``.
        """
        shape = self._shape(interval_ms)
        newest_open = now_ms - now_ms % interval_ms
        backs = [
            back
            for back in range(len(shape))
            if (end_ms is None or newest_open - back * interval_ms <= end_ms)
            and (start_ms is None or newest_open - back * interval_ms >= start_ms)
        ]
        if from_start is None:
            from_start = start_ms is not None
        backs = backs[-limit:] if from_start else backs[:limit]
        spec = self.instrument
        tick, step = spec.tick_size, spec.step_size
        mid = float(self.mid)
        chosen: list[Candle] = []
        for back in reversed(backs):
            o, h, low, c, v = shape[back]
            volume = (spec.level_qty * _to_decimal(v)).quantize(step, ROUND_DOWN)
            close = self.mid if back == 0 else _to_decimal(c * mid).quantize(tick)
            open_ = _to_decimal(o * mid).quantize(tick)
            chosen.append(
                Candle(
                    open_ms=newest_open - back * interval_ms,
                    open=open_,
                    high=max(_to_decimal(h * mid).quantize(tick), open_, close),
                    low=min(_to_decimal(low * mid).quantize(tick), open_, close),
                    close=close,
                    volume=volume,
                    quote_volume=(volume * close).quantize(tick),
                    trades=int(v * 3) + 1,
                )
            )
        return chosen

    def _shape(self, interval_ms: int) -> list[tuple[float, float, float, float, float]]:
        # (open, high, low, close, volume) relative to the newest close, newest first.
        if interval_ms not in self._shapes:
            rng = _seeded(self.seed, self.instrument.symbol, "candles", interval_ms)
            sigma = self.instrument.volatility * math.sqrt(max(1.0, interval_ms / 60_000)) / 3
            close = 1.0
            shape = []
            for _ in range(CANDLE_HISTORY):
                open_ = close / math.exp(rng.gauss(0.0, sigma))
                high = max(open_, close) * (1 + abs(rng.gauss(0.0, sigma)) / 2)
                low = min(open_, close) * (1 - abs(rng.gauss(0.0, sigma)) / 2)
                volume = rng.uniform(5, 50) * math.sqrt(max(1.0, interval_ms / 60_000))
                shape.append((open_, high, low, close, volume))
                close = open_
            self._shapes[interval_ms] = shape
        return self._shapes[interval_ms]


def default_spot_instruments(symbol_style: Literal["binance", "okx"]) -> list[Instrument]:
    """BTC and ETH against USDT, with Binance-like (``BTCUSDT``) or OKX-like (``BTC-USDT``) ids."""

    def name(base: str, quote: str) -> str:
        return f"{base}{quote}" if symbol_style == "binance" else f"{base}-{quote}"

    return [
        Instrument(
            symbol=name("BTC", "USDT"),
            base="BTC",
            quote="USDT",
            price=Decimal("60000.00"),
            tick_size=Decimal("0.01") if symbol_style == "binance" else Decimal("0.1"),
            step_size=Decimal("0.00001") if symbol_style == "binance" else Decimal("0.00000001"),
            min_qty=Decimal("0.00001"),
            min_notional=Decimal("5"),
            level_qty=Decimal("0.25"),
            level_gap=100 if symbol_style == "binance" else 10,
        ),
        Instrument(
            symbol=name("ETH", "USDT"),
            base="ETH",
            quote="USDT",
            price=Decimal("3000.00"),
            tick_size=Decimal("0.01"),
            step_size=Decimal("0.0001") if symbol_style == "binance" else Decimal("0.000001"),
            min_qty=Decimal("0.0001"),
            min_notional=Decimal("5"),
            level_qty=Decimal("2.5"),
            level_gap=10,
        ),
    ]


def default_usdm_instruments() -> list[Instrument]:
    """USDⓈ-M perpetuals on BTC and ETH (same symbols, and so the same walk, as spot)."""
    return [
        Instrument(
            symbol="BTCUSDT",
            base="BTC",
            quote="USDT",
            price=Decimal("60000.0"),
            tick_size=Decimal("0.1"),
            step_size=Decimal("0.001"),
            min_qty=Decimal("0.001"),
            min_notional=Decimal("5"),
            level_qty=Decimal("0.5"),
            level_gap=10,
        ),
        Instrument(
            symbol="ETHUSDT",
            base="ETH",
            quote="USDT",
            price=Decimal("3000.00"),
            tick_size=Decimal("0.01"),
            step_size=Decimal("0.001"),
            min_qty=Decimal("0.001"),
            min_notional=Decimal("5"),
            level_qty=Decimal("5"),
            level_gap=10,
        ),
    ]
