"""The ledger on real SQLite files: orders, fills, reservations, cancels, and its own check."""

from __future__ import annotations

import contextlib
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.errors import PaperError
from keybroker.paper.desk import decide
from keybroker.paper.ledger import Ledger
from keybroker.paper.model import Book, Fees, Instrument, Level, NewOrder, Refusal, Refused

D = Decimal
FEES = Fees(D("0.0008"), D("0.001"))
BTC = Instrument("BTCUSDT", "BTC", "USDT", step_size=D("0.0001"))
BOOK = Book(
    bids=(Level(D(99), D(1)), Level(D(98), D(2))),
    asks=(Level(D(101), D(1)), Level(D(102), D(2))),
)


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger.open(tmp_path / "home" / "paper.db")
    ledger.reset("bot", "binance", "testnet", {"USDT": D(1000), "BTC": D(1)}, now_ms=1, fees=FEES)
    return ledger


def _place(ledger: Ledger, order: NewOrder, book: Book = BOOK, now: int = 2) -> object:
    plan, rests = decide(order, book, BTC.step_size)
    return ledger.place(
        "bot",
        order,
        BTC,
        taken=plan,
        rests=rests,
        fees=FEES,
        mid=book.mid,
        now_ms=now,
        market_url="http://x",
    )


def test_the_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    assert (ledger.path.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(ledger.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # The documented trade-off: a commit survives a killed process, not a power cut.
    assert ledger.durability() == {"journal_mode": "wal", "synchronous": "NORMAL"}


def test_what_place_returns_is_what_the_ledger_reads_back(tmp_path: Path) -> None:
    # A market buy through 200 levels: more fills than one insert statement takes.
    levels = tuple(Level(D(101) + i, D("0.01")) for i in range(200))
    book = Book(bids=(Level(D(99), D(1)),), asks=levels)
    ledger = Ledger.open(tmp_path / "paper.db")
    ledger.reset("bot", "binance", "testnet", {"USDT": D(10**6)}, now_ms=1, fees=FEES)
    first, _ = _place(ledger, NewOrder("BTCUSDT", "buy", "market", D("0.5")), book)  # type: ignore[misc]
    order, fills = _place(ledger, NewOrder("BTCUSDT", "buy", "market", D(2)), book)  # type: ignore[misc]
    assert len(fills) == 200
    assert ledger.order("bot", order_id=order.order_id) == order
    assert ledger.fills_of([order.order_id]) == fills
    assert fills[0].fill_id == len(ledger.fills_of([first.order_id])) + 1
    assert ledger.check("bot") == []


def test_a_market_buy_moves_balances_and_charges_the_taker_fee_in_base(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    order, fills = _place(ledger, NewOrder("BTCUSDT", "buy", "market", D("1.5")))  # type: ignore[misc]
    assert order.status == "FILLED" and order.cumulative_quote == D(101) + D(51)
    assert [f.fee for f in fills] == [D("0.001"), D("0.0005")]
    balances = {b.asset: (b.free, b.locked) for b in ledger.balances("bot")}
    assert balances == {"USDT": (D(1000) - 152, 0), "BTC": (D(1) + D("1.5") - D("0.0015"), 0)}
    assert ledger.check("bot") == []


def test_a_resting_order_reserves_fills_as_maker_and_cancels_cleanly(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    order, _ = _place(
        ledger,
        NewOrder(
            "BTCUSDT",
            "buy",
            "limit",
            D(2),
            price=D(100),  # type: ignore[misc]
            client_order_id="a1",
        ),
    )
    assert order.status == "NEW"
    assert {b.asset: b.locked for b in ledger.balances("bot")}["USDT"] == 200
    (resting,) = ledger.resting()
    assert (resting.remaining, resting.price) == (D(2), D(100))
    fill = ledger.fill_resting(
        order.order_id, D("0.5"), last_trade_id=7, rate=FEES.maker, mid=None, now_ms=3
    )
    assert fill is not None and fill.is_maker and fill.fee == D("0.0004")
    assert ledger.resting()[0].last_trade_id == 7
    with pytest.raises(Refused) as duplicate:
        _place(ledger, NewOrder("BTCUSDT", "buy", "limit", D(1), price=D(90), client_order_id="a1"))
    assert duplicate.value.reason is Refusal.DUPLICATE_CLIENT_ORDER_ID
    cancelled = ledger.cancel("bot", symbol="BTCUSDT", client_order_id="a1", now_ms=4)
    assert (cancelled.status, cancelled.executed_qty) == ("CANCELED", D("0.5"))
    balances = {b.asset: (b.free, b.locked) for b in ledger.balances("bot")}
    assert balances["USDT"] == (D(950), 0)
    assert (
        ledger.fill_resting(
            order.order_id, D(1), last_trade_id=8, rate=FEES.maker, mid=None, now_ms=5
        )
        is None
    )
    with pytest.raises(Refused):
        ledger.cancel("bot", symbol="BTCUSDT", order_id=order.order_id, now_ms=6)
    assert ledger.check("bot") == []


def test_an_order_the_account_cannot_pay_for_leaves_nothing_behind(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    with pytest.raises(Refused) as refused:
        _place(ledger, NewOrder("BTCUSDT", "buy", "limit", D(20), price=D(100)))
    assert refused.value.reason is Refusal.INSUFFICIENT_BALANCE
    assert ledger.orders("bot") == [] and ledger.fills("bot") == []
    with pytest.raises(Refused):
        _place(ledger, NewOrder("BTCUSDT", "sell", "market", D(2)))  # holds 1 BTC
    assert ledger.check("bot") == []


def test_check_finds_a_balance_changed_behind_the_ledger(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    _place(ledger, NewOrder("BTCUSDT", "sell", "limit", D("0.5"), price=D(110)))
    with sqlite3.connect(ledger.path) as raw:
        raw.execute("UPDATE balances SET free = '5000' WHERE asset = 'USDT'")
        raw.execute("UPDATE balances SET locked = '0' WHERE asset = 'BTC'")
    problems = ledger.check("bot")
    assert "USDT: balance differs from starting balance plus fills" in problems
    assert "BTC: locked differs from what open orders reserve" in problems


def test_a_reset_forgets_the_past(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    _place(ledger, NewOrder("BTCUSDT", "buy", "market", D(1)))
    ledger.reset("bot", "binance", "testnet", {"USDT": D(5)}, now_ms=9, fees=FEES)
    assert ledger.fills("bot") == [] and ledger.orders("bot") == []
    assert [(b.asset, b.free) for b in ledger.balances("bot")] == [("USDT", D(5))]


def test_a_ledger_that_cannot_be_opened_says_where(tmp_path: Path) -> None:
    (tmp_path / "paper.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(PaperError, match="cannot open the paper ledger"):
        Ledger.open(tmp_path / "paper.db")


ORDERS = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["market", "limit"]),
        st.decimals(min_value=D("0.01"), max_value=D(3), places=2),
        st.decimals(min_value=D(95), max_value=D(105), places=0),
        st.decimals(min_value=D(0), max_value=D(2), places=2),  # a later maker fill
        st.booleans(),  # cancel it afterwards
    ),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(orders=ORDERS)
def test_any_sequence_of_orders_fills_and_cancels_keeps_the_books_consistent(
    tmp_path_factory: pytest.TempPathFactory, orders: list[tuple[str, str, D, D, D, bool]]
) -> None:
    ledger = _ledger(tmp_path_factory.mktemp("ledger"))
    for now, (side, kind, qty, price, later, cancel) in enumerate(orders, start=2):
        order = NewOrder("BTCUSDT", side, kind, qty, price=price if kind == "limit" else None)  # type: ignore[arg-type]
        try:
            placed, fills = _place(ledger, order, now=now)  # type: ignore[misc]
        except Refused:
            continue
        assert ledger.order("bot", order_id=placed.order_id) == placed
        assert ledger.fills_of([placed.order_id]) == fills
        if placed.is_open:
            ledger.fill_resting(
                placed.order_id, later, last_trade_id=now, rate=FEES.maker, mid=None, now_ms=now
            )
            if cancel:
                with contextlib.suppress(Refused):  # filled in full meanwhile
                    ledger.cancel("bot", symbol=None, order_id=placed.order_id, now_ms=now)
        assert ledger.check("bot") == []
    assert all(b.free >= 0 and b.locked >= 0 for b in ledger.balances("bot"))
