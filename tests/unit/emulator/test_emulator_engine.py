"""The emulator's market and engine without a server: determinism and the books balance."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.emulator.engine import ZERO, Engine, OrderRequest, Refused, Rules
from keybroker.emulator.market import Market, default_spot_instruments

SPOT = Rules(
    "spot",
    Decimal("0.001"),
    Decimal("0.002"),
    refuse_crossing_post_only=True,
    refuse_unfilled_fok=False,
)
BTC_USDT = default_spot_instruments("binance")[0]
NOW = 1_795_000_000_000


def test_a_market_is_a_function_of_its_seed_and_steps() -> None:
    one, two, other = Market(BTC_USDT, 3, NOW), Market(BTC_USDT, 3, NOW), Market(BTC_USDT, 4, NOW)
    for market in (one, two, other):
        market.step(NOW, count=10)
    assert one.mid == two.mid != other.mid
    assert one.book(10) == two.book(10)
    assert one.candles(60_000, NOW, limit=50) == two.candles(60_000, NOW, limit=50)


def test_candles_end_at_the_mid_and_respect_their_range() -> None:
    market = Market(BTC_USDT, 1, NOW)
    hourly = market.candles(3_600_000, NOW, limit=24)
    assert len(hourly) == 24
    assert hourly[-1].close == market.mid
    assert hourly[-1].open_ms == NOW - NOW % 3_600_000
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in hourly)
    start = hourly[3].open_ms
    assert market.candles(3_600_000, NOW, limit=2, start_ms=start) == hourly[3:5]
    assert market.candles(3_600_000, NOW, limit=2, end_ms=start) == hourly[2:4]


def test_take_walks_levels_in_price_order_and_stops_at_the_limit() -> None:
    market = Market(BTC_USDT, 1, NOW)
    _, asks = market.book(3)
    taken = market.take("BUY", quantity=asks[0].qty + asks[1].qty, limit_price=asks[0].price)
    assert taken == [asks[0]]
    quote = asks[1].price * asks[1].qty
    assert market.take("BUY", quote_quantity=quote, dry_run=True) == [asks[1]]


Operation = tuple[str, int, int]
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["market-buy", "market-sell", "limit-buy", "limit-sell", "cancel", "step", "move"]
        ),
        st.integers(1, 400),  # size in thousandths of a BTC
        st.integers(-30, 30),  # price offset in level gaps
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(operations)
def test_wallets_never_go_negative_and_every_unit_is_accounted_for(ops: list[Operation]) -> None:
    engine = Engine({"spot": (SPOT, [BTC_USDT])}, seed=5, now_ms=NOW)
    account = engine.account("k")
    start = dict(account.free)
    gap = BTC_USDT.tick_size * BTC_USDT.level_gap
    for kind, size, offset in ops:
        market = engine.markets["spot"]["BTCUSDT"]
        quantity = Decimal(size) / 1000
        try:
            if kind.startswith("market"):
                side = "BUY" if kind.endswith("buy") else "SELL"
                engine.place(
                    "k", "spot", OrderRequest("BTCUSDT", side, "MARKET", quantity=quantity), NOW
                )
            elif kind.startswith("limit"):
                side = "BUY" if kind.endswith("buy") else "SELL"
                price = market.mid + gap * offset
                engine.place(
                    "k",
                    "spot",
                    OrderRequest("BTCUSDT", side, "LIMIT", quantity=quantity, price=price),
                    NOW,
                )
            elif kind == "cancel":
                for order in engine.open_orders("k", "spot")[:1]:
                    engine.cancel("k", "spot", "BTCUSDT", NOW, order_id=order.order_id)
            elif kind == "step":
                engine.step(NOW)
            else:
                engine.move("BTCUSDT", market.mid + gap * offset, NOW)
        except Refused:
            pass
        assert all(amount >= 0 for amount in account.free.values())
        assert all(amount >= 0 for amount in account.locked.values())
        open_orders = engine.open_orders("k", "spot")
        for asset, side in (("USDT", "BUY"), ("BTC", "SELL")):
            held = sum((o.reserved for o in open_orders if o.request.side == side), ZERO)
            assert account.locked.get(asset, ZERO) == held
    bought = sold = spent = received = base_fees = quote_fees = ZERO
    for order in engine.orders:
        for fill in order.fills:
            if order.request.side == "BUY":
                bought += fill.qty
                spent += fill.price * fill.qty
                base_fees += fill.fee
            else:
                sold += fill.qty
                received += fill.price * fill.qty
                quote_fees += fill.fee
    btc = account.free["BTC"] + account.locked.get("BTC", ZERO)
    usdt = account.free["USDT"] + account.locked.get("USDT", ZERO)
    assert btc == start["BTC"] + bought - sold - base_fees
    assert usdt == start["USDT"] - spent + received - quote_fees
