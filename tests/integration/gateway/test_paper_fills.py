"""Paper orders through a real gateway, with the emulator as the market.

A market order's fills are the walk of the book the emulator serves at that
moment (computed here from the emulator's own depth answer); a resting limit
order fills from the emulator's public trades, partially when they traded
less; fees are the exchange's base tier; and the emulator's journal shows
that no paper order, cancel or balance query ever reached it.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway_testkit import StartEmulator, StartGateway, wait_until
from paper_testkit import FUNDS, PAPER, PaperWorld, paper_world

from keybroker.audit import verify_chain
from keybroker.paper import summarize
from keybroker.paper.fills import take
from keybroker.paper.model import Book, Level

BINANCE_FEE = Decimal("0.001")


def _book(raw: dict[str, Any]) -> Book:
    return Book(
        tuple(Level(Decimal(p), Decimal(q)) for p, q in raw["bids"]),
        tuple(Level(Decimal(p), Decimal(q)) for p, q in raw["asks"]),
    )


def _balances(world: PaperWorld) -> dict[str, tuple[Decimal, Decimal]]:
    answer = world.gateway.client().get("/pp/api/v3/account")
    assert answer.status_code == 200, answer.text
    return {
        b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in answer.json()["balances"]
    }


def _order(world: PaperWorld, **fields: str) -> Any:
    return world.gateway.client().post("/pp/api/v3/order", data={"symbol": "BTCUSDT", **fields})


def test_a_market_buy_walks_the_book_fetched_at_fill_time(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway)
    world.market(symbol="BTCUSDT", steps=3)  # a book of its own, not the opening one
    book = _book(world.public("/api/v3/depth", symbol="BTCUSDT", limit="100"))
    expected = take(book, "buy", quantity=Decimal("1.5"), step=Decimal("0.00001"))
    assert len(expected.levels) > 2  # the order really walks several levels

    answer = _order(world, side="BUY", type="MARKET", quantity="1.5")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "FILLED" and body["type"] == "MARKET"
    fills = [(Decimal(f["price"]), Decimal(f["qty"])) for f in body["fills"]]
    assert fills == [(level.price, level.qty) for level in expected.levels]
    assert Decimal(body["cummulativeQuoteQty"]) == expected.cost
    # The taker fee, in what the buy received.
    assert [Decimal(f["commission"]) for f in body["fills"]] == [
        level.qty * BINANCE_FEE for level in expected.levels
    ]
    assert {f["commissionAsset"] for f in body["fills"]} == {"BTC"}
    balances = _balances(world)
    assert balances["USDT"] == (FUNDS - expected.cost, 0)
    assert balances["BTC"] == (Decimal("1.5") * (1 - BINANCE_FEE), 0)
    # Slippage against the mid of that very book.
    summary = summarize(world.ledger_path, "pp")
    assert book.mid is not None
    assert summary.slippage_vs_mid == expected.slippage("buy", book.mid) > 0
    assert summary.fills == len(expected.levels)
    assert world.order_requests() == []


def test_a_market_sell_pays_its_fee_in_quote_and_realises_pnl(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway)
    bought = _order(world, side="BUY", type="MARKET", quantity="0.2").json()
    world.market(symbol="BTCUSDT", price="62000")
    book = _book(world.public("/api/v3/depth", symbol="BTCUSDT", limit="100"))
    expected = take(book, "sell", quantity=Decimal("0.1"), step=Decimal("0.00001"))

    sold = _order(world, side="SELL", type="MARKET", quantity="0.1").json()

    assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in sold["fills"]] == [
        (level.price, level.qty) for level in expected.levels
    ]
    fee = sum(Decimal(f["commission"]) for f in sold["fills"])
    assert fee == expected.cost * BINANCE_FEE
    assert {f["commissionAsset"] for f in sold["fills"]} == {"USDT"}
    paid = Decimal(bought["cummulativeQuoteQty"])
    held = Decimal("0.2") * (1 - BINANCE_FEE)
    summary = summarize(world.ledger_path, "pp")
    assert summary.realized_pnl == expected.cost - fee - paid * Decimal("0.1") / held
    assert summary.win_rate == 1
    assert summary.fees == paid / Decimal("0.2") * Decimal("0.0002") + fee  # BTC fee at its price
    assert world.order_requests() == []


def test_a_resting_limit_order_fills_partially_from_the_trades_that_cross_it(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway)
    before = max(t["id"] for t in world.public("/api/v3/trades", symbol="BTCUSDT", limit="500"))
    placed = _order(
        world, side="BUY", type="LIMIT", timeInForce="GTC", quantity="5", price="59000"
    ).json()
    assert (placed["status"], placed["executedQty"], placed["fills"]) == ("NEW", "0.00000000", [])
    assert _balances(world)["USDT"] == (FUNDS - 5 * 59000, Decimal(5 * 59000))

    world.market(symbol="BTCUSDT", price="58000")  # trades print around 58,000: through 59,000
    tape = world.public("/api/v3/trades", symbol="BTCUSDT", limit="500")
    crossed = sum(
        (Decimal(t["qty"]) for t in tape if t["id"] > before and Decimal(t["price"]) < 59000),
        Decimal(0),
    )
    assert 0 < crossed < 5

    def executed() -> Decimal:
        status = world.gateway.client().get(
            "/pp/api/v3/order", params={"symbol": "BTCUSDT", "orderId": placed["orderId"]}
        )
        return Decimal(status.json()["executedQty"])

    assert wait_until(lambda: executed() > 0, timeout=5)
    time.sleep(0.3)  # later polls find no new trades: nothing more fills
    status = (
        world.gateway.client()
        .get("/pp/api/v3/order", params={"symbol": "BTCUSDT", "orderId": placed["orderId"]})
        .json()
    )
    assert (status["status"], Decimal(status["executedQty"])) == ("PARTIALLY_FILLED", crossed)
    assert Decimal(status["cummulativeQuoteQty"]) == crossed * 59000  # at its own price
    trades = world.gateway.client().get("/pp/api/v3/myTrades", params={"symbol": "BTCUSDT"})
    assert {t["isMaker"] for t in trades.json()} == {True}
    fee = sum(Decimal(t["commission"]) for t in trades.json())
    assert fee == crossed * BINANCE_FEE  # the maker fee, in BTC
    balances = _balances(world)
    assert balances["BTC"] == (crossed - fee, 0)
    assert balances["USDT"] == (FUNDS - 5 * 59000, (5 - crossed) * 59000)

    # More trades through the price fill more; cancelling gives the rest back.
    world.market(symbol="BTCUSDT", price="57000")
    assert wait_until(lambda: executed() > crossed, timeout=5)
    cancelled = world.gateway.client().delete(
        "/pp/api/v3/order", params={"symbol": "BTCUSDT", "orderId": placed["orderId"]}
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELED"
    final = Decimal(cancelled.json()["executedQty"])
    assert _balances(world)["USDT"] == (FUNDS - final * 59000, 0)
    assert world.ledger().check("pp") == []
    assert world.order_requests() == []


def test_a_limit_order_that_crosses_takes_up_to_its_price_and_rests_the_rest(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway)
    book = _book(world.public("/api/v3/depth", symbol="BTCUSDT", limit="100"))
    limit = book.asks[2].price  # three levels are at or under it
    wanted = sum((level.qty for level in book.asks[:3]), Decimal(0)) + Decimal(1)

    placed = _order(
        world, side="BUY", type="LIMIT", timeInForce="GTC", quantity=str(wanted), price=str(limit)
    ).json()

    assert placed["status"] == "PARTIALLY_FILLED"
    assert [Decimal(f["price"]) for f in placed["fills"]] == [a.price for a in book.asks[:3]]
    assert Decimal(placed["executedQty"]) == wanted - 1
    assert _balances(world)["USDT"][1] == limit  # one BTC still reserved at the limit price
    open_orders = world.gateway.client().get("/pp/api/v3/openOrders").json()
    assert [o["orderId"] for o in open_orders] == [placed["orderId"]]

    ioc = _order(
        world, side="BUY", type="LIMIT", timeInForce="IOC", quantity="10", price=str(limit)
    ).json()
    assert ioc["status"] == "EXPIRED"  # what crossed was taken, the rest expired
    fok = _order(
        world, side="BUY", type="LIMIT", timeInForce="FOK", quantity="10", price=str(limit)
    ).json()
    assert (fok["status"], fok["executedQty"]) == ("EXPIRED", "0.00000000")


def test_paper_refusals_speak_binance(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway)
    client = world.gateway.client()

    maker = _order(world, side="BUY", type="LIMIT_MAKER", quantity="0.01", price="70000")
    assert (maker.status_code, maker.json()["code"]) == (400, -2010)
    poor = _order(world, side="BUY", type="LIMIT", timeInForce="GTC", quantity="20", price="59000")
    assert poor.status_code == 400
    assert poor.json() == {
        "code": -2010,
        "msg": "Account has insufficient balance for requested action.",
    }
    unknown = client.delete("/pp/api/v3/order", params={"symbol": "BTCUSDT", "orderId": "999"})
    assert (unknown.status_code, unknown.json()["code"]) == (400, -2011)
    missing = client.get("/pp/api/v3/order", params={"symbol": "BTCUSDT", "orderId": "999"})
    assert (missing.status_code, missing.json()["code"]) == (400, -2013)
    bad_symbol = client.post(
        "/pp/api/v3/order",
        data={"symbol": "BTCUSDT", "side": "BUY", "type": "STOP_LOSS", "quantity": "1"},
    )
    assert bad_symbol.status_code == 400 and bad_symbol.json()["code"] == -1102
    oco = client.post("/pp/api/v3/orderList/oto", data={"symbol": "BTCUSDT"})
    assert oco.status_code == 403 and oco.headers["x-keybroker-error"] == "paper_refused"
    assert world.order_requests() == []


def test_policy_limits_halts_and_the_audit_log_apply_to_paper_orders(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway)
    client = world.gateway.client()
    placed = _order(world, side="BUY", type="MARKET", quantity="0.01")
    assert placed.status_code == 200 and placed.headers["x-keybroker-venue"] == "paper"

    other = client.post(
        "/pp/api/v3/order",
        data={"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"},
    )
    assert other.status_code == 403 and other.json()["rule"] == "symbols"
    world.gateway.vault.halt("pp", reason="test")
    halted = _order(world, side="BUY", type="MARKET", quantity="0.01")
    assert halted.status_code == 403 and halted.json()["rule"] == "kill_switch"

    rows = world.gateway.audit()
    orders = [r.row for r in rows if r.row.request_kind == "order_place"]
    assert {(r.kind, r.paper) for r in orders} == {
        ("intent", True),
        ("result", True),
        ("denied", True),
    }
    assert [r.rule for r in orders if r.kind == "denied"] == ["symbols", "kill_switch"]
    result = next(r for r in orders if r.kind == "result")
    assert result.status == 200
    assert verify_chain(world.gateway.audit_path).ok
    assert world.order_requests() == []


def test_the_account_latency_delays_the_fill(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway, latency_ms=400)
    started = time.monotonic()
    assert _order(world, side="BUY", type="MARKET", quantity="0.01").status_code == 200
    assert time.monotonic() - started >= 0.4


def test_a_live_credential_is_untouched_by_paper(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    import dataclasses

    world = paper_world(tmp_path, emulator, gateway, policy=dataclasses.replace(PAPER, mode="live"))
    answer = _order(
        world, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="50000"
    )
    assert answer.status_code == 200 and "x-keybroker-venue" not in answer.headers
    assert len(world.exchange.orders()) == 1
    assert not any(r.row.paper for r in world.gateway.audit())
