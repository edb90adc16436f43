"""The desk's answers for a paper credential's policy: open orders and positions, on real ledgers.

Orders the policy allowed count from that moment ("on their way") until the
desk answered them, or for ``on_the_way_ttl_ms`` when they never arrive
(refused by the limiter in between): a count may be too high for a while,
never too low.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx

from keybroker.clock import FixedClock
from keybroker.paper import Desk
from keybroker.paper.desk import decide
from keybroker.paper.model import Book, Fees, Instrument, Level, NewOrder

D = Decimal
FEES = Fees(D("0.001"), D("0.001"))
BTC = Instrument("BTCUSDT", "BTC", "USDT", step_size=D("0.0001"))
BOOK = Book(bids=(Level(D(99), D(5)),), asks=(Level(D(101), D(5)),))


class NoMarket:
    """The desk's market data is not used here: nothing is fetched."""

    async def fetch(
        self, credential: str, exchange: str, environment: str, request: httpx.Request
    ) -> bytes | None:
        raise AssertionError("no market data is fetched for the policy's facts")


def _desk(tmp_path: Path, clock: FixedClock) -> Desk:
    desk = Desk(tmp_path / "paper.db", clock, NoMarket(), on_the_way_ttl_ms=30_000)
    desk.ledger.reset(
        "pp", "binance", "testnet", {"USDT": D(10_000)}, now_ms=clock.now_ms(), fees=FEES
    )
    return desk


def _rest(desk: Desk, client_order_id: str, price: int = 90) -> int:
    order = NewOrder(
        "BTCUSDT", "buy", "limit", D(1), price=D(price), client_order_id=client_order_id
    )
    plan, rests = decide(order, BOOK, BTC.step_size)
    placed, _ = desk.ledger.place(
        "pp", order, BTC, taken=plan, rests=rests, fees=FEES, mid=BOOK.mid, now_ms=1, market_url=""
    )
    return placed.order_id


def test_open_orders_are_the_ledgers_plus_those_on_their_way(tmp_path: Path) -> None:
    clock = FixedClock(1_000)
    desk = _desk(tmp_path, clock)
    _rest(desk, "a")
    assert desk.open_orders("pp") == 1
    desk.expect("pp", ("b",), orders=1, grows={})
    desk.expect("pp", ("c",), orders=1, grows={})
    assert desk.open_orders("pp") == 3
    assert desk.open_orders("other") == 0
    # "b" arrives: recorded in the ledger and no longer on its way; still three.
    _rest(desk, "b")
    desk.arrived("pp", ("b",))
    assert desk.open_orders("pp") == 3
    # "c" never arrives (the limiter refused it after the policy): it stops counting
    # after the TTL, not before.
    clock.advance(29_000)
    assert desk.open_orders("pp") == 3
    clock.advance(2_000)
    assert desk.open_orders("pp") == 2
    # Arriving twice, or for a request never expected, changes nothing.
    desk.arrived("pp", ("b",))
    desk.arrived("pp", ("zzz",))
    assert desk.open_orders("pp") == 2


def test_the_same_client_order_ids_on_their_way_twice_count_twice(tmp_path: Path) -> None:
    desk = _desk(tmp_path, FixedClock(1_000))
    desk.expect("pp", ("x",), orders=1, grows={})
    desk.expect("pp", ("x",), orders=1, grows={})
    assert desk.open_orders("pp") == 2
    desk.arrived("pp", ("x",))
    assert desk.open_orders("pp") == 1


def test_a_position_is_valued_at_cost_until_a_book_is_seen_plus_what_is_on_its_way(
    tmp_path: Path,
) -> None:
    clock = FixedClock(1_000)
    desk = _desk(tmp_path, clock)
    assert desk.position_notional("pp", "binance", "testnet", "BTCUSDT") == 0
    order = NewOrder("BTCUSDT", "buy", "market", D(2))
    plan, _ = decide(order, BOOK, BTC.step_size)
    desk.ledger.place(
        "pp", order, BTC, taken=plan, rests=False, fees=FEES, mid=BOOK.mid, now_ms=1, market_url=""
    )
    assert desk.position_notional("pp", "binance", "testnet", "BTCUSDT") == D(202)  # its cost
    desk.expect("pp", ("y",), orders=1, grows={"BTCUSDT": D(50), "ETHUSDT": D(7)})
    assert desk.position_notional("pp", "binance", "testnet", "BTCUSDT") == D(252)
    assert desk.position_notional("pp", "binance", "testnet", "ETHUSDT") == D(7)
