"""summarize() on a real ledger file: P&L, fees, slippage, win rate and the equity curve."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from keybroker.errors import PaperError
from keybroker.paper import summarize
from keybroker.paper.desk import decide
from keybroker.paper.ledger import Ledger
from keybroker.paper.model import Book, Fees, Instrument, Level, NewOrder
from keybroker.paper.report import plot_equity

D = Decimal
FEES = Fees(D("0.001"), D("0.001"))
BTC = Instrument("BTCUSDT", "BTC", "USDT", step_size=D("0.0001"))
LOW = Book((Level(D(99), D(1)),), (Level(D(101), D(1)), Level(D(102), D(2))))
HIGH = Book((Level(D(110), D(1)), Level(D(109), D(2))), (Level(D(112), D(1)),))


def _trade(ledger: Ledger, side: str, qty: str, book: Book, now: int) -> None:
    order = NewOrder("BTCUSDT", side, "market", D(qty))  # type: ignore[arg-type]
    plan, rests = decide(order, book, BTC.step_size)
    ledger.place(
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


def test_a_round_trip_reports_its_pnl_fees_slippage_and_equity(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    ledger = Ledger.open(path)
    ledger.reset("bot", "binance", "testnet", {"USDT": D(1000)}, now_ms=1000, fees=FEES)
    _trade(ledger, "buy", "1.5", LOW, 2000)  # 101 + 51 = 152 for 1.4985 BTC after the fee
    ledger.mark("binance", "testnet", BTC, D(111), 3000)
    _trade(ledger, "sell", "1", HIGH, 4000)  # 110, fee 0.11 USDT
    ledger.close()

    summary = summarize(path, "bot")

    basis = D(152) * 1 / D("1.4985")
    assert summary.realized_pnl == D(110) - D("0.11") - basis
    assert summary.unrealized_pnl == D("0.4985") * D(110) - (D(152) - basis)
    assert summary.fees == D("0.001") * 101 + D("0.0005") * 102 + D("0.11")  # BTC fees at price
    assert summary.fills == 3 and summary.win_rate == 1 and summary.orders == 2
    # buy: 1 above mid 100 on 1 BTC, 2 above on 0.5; sell: 1 below mid 111 on 1 BTC
    assert summary.slippage_vs_mid == D(1) + D(1) + D(1)
    times = [ms for ms, _ in summary.equity]
    assert times == [1000, 2000, 3000, 4000]
    assert summary.equity[0][1] == 1000
    assert summary.equity[2][1] == D(848) + D("1.4985") * D(111)  # marked at 111
    assert summary.equity[-1][1] == D(848) + D("109.89") + D("0.4985") * D(110)
    assert summary.to_json()["win_rate"] == "1"


def test_the_equity_curve_is_drawn_to_a_png(tmp_path: Path) -> None:
    path = tmp_path / "paper.db"
    ledger = Ledger.open(path)
    ledger.reset("bot", "binance", "testnet", {"USDT": D(1000)}, now_ms=1000, fees=FEES)
    _trade(ledger, "buy", "1", LOW, 61_000)
    ledger.close()
    plot_equity(summarize(path, "bot"), tmp_path / "equity.png")
    assert (tmp_path / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_account_or_ledger_is_a_paper_error(tmp_path: Path) -> None:
    with pytest.raises(PaperError, match="no paper ledger"):
        summarize(tmp_path / "paper.db", "bot")
    Ledger.open(tmp_path / "paper.db").close()
    with pytest.raises(PaperError, match="paper reset bot"):
        summarize(tmp_path / "paper.db", "bot")
