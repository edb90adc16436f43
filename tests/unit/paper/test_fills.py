"""The fill model: book walks, limit prices, quote amounts, trades through a price, fees."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.paper.fills import allocate, crosses, fee, take, traded_through
from keybroker.paper.model import Book, Level, PublicTrade

D = Decimal
BOOK = Book(
    bids=(Level(D(99), D(1)), Level(D(98), D(2)), Level(D(97), D(3))),
    asks=(Level(D(101), D(1)), Level(D(102), D(2)), Level(D(103), D(3))),
)


def test_a_buy_walks_the_asks_and_its_slippage_comes_from_depth() -> None:
    plan = take(BOOK, "buy", quantity=D("2.5"))
    assert plan.levels == (Level(D(101), D(1)), Level(D(102), D("1.5")))
    assert plan.cost == D(101) + D(153)
    assert plan.average_price == D(254) / D("2.5")
    assert plan.slippage("buy", BOOK.mid) == D(1) * 1 + D(2) * D("1.5")  # mid is 100


def test_a_sell_walks_the_bids_down_to_its_limit() -> None:
    plan = take(BOOK, "sell", quantity=D(10), limit_price=D(98))
    assert plan.levels == (Level(D(99), D(1)), Level(D(98), D(2)))
    assert plan.slippage("sell", BOOK.mid) == D(1) + D(4)


def test_a_quote_amount_buys_whole_steps_and_an_empty_book_fills_nothing() -> None:
    plan = take(BOOK, "buy", quote_quantity=D(200), step=D("0.01"))
    assert plan.levels == (Level(D(101), D(1)), Level(D(102), D("0.97")))
    assert plan.cost <= 200
    assert take(Book((), ()), "buy", quantity=D(1)).levels == ()
    with pytest.raises(ValueError, match="exactly one"):
        take(BOOK, "buy")


def test_a_book_that_runs_out_fills_partially() -> None:
    assert take(BOOK, "buy", quantity=D(100)).qty == 6


def test_trades_count_only_when_they_go_through_the_price() -> None:
    assert crosses("buy", D(100), D("99.99")) and not crosses("buy", D(100), D(100))
    assert crosses("sell", D(100), D("100.01")) and not crosses("sell", D(100), D(100))
    trades = [
        PublicTrade(1, D(95), D(5), 0),
        PublicTrade(2, D(99), D(1), 0),
        PublicTrade(3, D(100), D(7), 0),
        PublicTrade(4, D(98), D(2), 0),
    ]
    assert traded_through("buy", D(100), trades, after_trade_id=1) == (D(3), 4)


def test_one_print_fills_an_account_once_best_price_first() -> None:
    trades = [PublicTrade(10, D(95), D("0.5"), 0), PublicTrade(11, D(96), D("0.25"), 0)]
    shares = allocate(
        [(1, "buy", D(97), D(1), 9), (2, "buy", D(99), D(1), 9), (3, "sell", D(90), D(1), 9)],
        trades,
    )
    assert shares[2] == (D("0.75"), 11)  # the better-priced buy first
    assert shares[1] == (D(0), 11)  # nothing left for the other
    assert shares[3] == (D(0), 11)  # once per account, whichever side it would fill


def test_fees_are_charged_in_what_the_order_receives() -> None:
    assert fee("buy", D(100), D(2), D("0.001")) == D("0.002")  # base
    assert fee("sell", D(100), D(2), D("0.001")) == D("0.2")  # quote


@given(
    quantity=st.decimals(min_value=D("0.001"), max_value=D(20), places=3),
    side=st.sampled_from(["buy", "sell"]),
)
def test_a_walk_never_takes_more_than_asked_nor_more_than_the_book(
    quantity: Decimal, side: str
) -> None:
    plan = take(BOOK, side, quantity=quantity)  # type: ignore[arg-type]
    assert plan.qty == min(quantity, D(6))
    levels = BOOK.asks if side == "buy" else BOOK.bids
    assert all(
        a.price == b.price and a.qty <= b.qty for a, b in zip(plan.levels, levels, strict=False)
    )
