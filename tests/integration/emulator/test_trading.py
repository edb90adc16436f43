"""The synthetic market and matching: determinism, walking the book, partial fills, balances."""

from __future__ import annotations

from decimal import Decimal

import httpx
from emulator_testkit import Binance, Okx, Serve, journal, orders_in

from keybroker.clock import FixedClock
from keybroker.emulator import EmulatorConfig

START_MS = 1_795_000_000_000


def _snapshot(http: httpx.Client) -> tuple[object, ...]:
    return (
        http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 20}).json(),
        http.get("/api/v3/klines", params={"symbol": "ETHUSDT", "interval": "1h"}).json(),
        http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT"}).json(),
        http.get("/api/v3/trades", params={"symbol": "BTCUSDT"}).json(),
    )


def test_the_same_seed_gives_the_same_market_and_another_seed_does_not(serve: Serve) -> None:
    runs = []
    for seed in (7, 7, 8):
        http = serve("binance", config=EmulatorConfig(seed=seed), clock=FixedClock(START_MS))
        before = _snapshot(http)
        moved = http.post("/__emulator__/market", json={"steps": 25}).json()
        runs.append((before, moved, _snapshot(http)))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]
    assert runs[0][0][1] != runs[2][0][1]  # klines differ too


def _asks(http: httpx.Client, path: str = "/api/v3/depth") -> list[tuple[Decimal, Decimal]]:
    rows = http.get(path, params={"symbol": "BTCUSDT", "limit": 5}).json()["asks"]
    return [(Decimal(price), Decimal(qty)) for price, qty in rows]


def test_a_market_order_walks_the_book(binance: Binance) -> None:
    asks = _asks(binance.http)
    quantity = asks[0][1] + asks[1][1] + asks[2][1] / 2
    response = binance.signed(
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": str(quantity)},
    )
    order = response.json()
    assert order["status"] == "FILLED"
    fills = [(Decimal(f["price"]), Decimal(f["qty"])) for f in order["fills"]]
    assert fills == [asks[0], asks[1], (asks[2][0], asks[2][1] / 2)]
    cost = sum(price * qty for price, qty in fills)
    assert Decimal(order["cummulativeQuoteQty"]) == cost
    assert _asks(binance.http)[:3] == [(asks[2][0], asks[2][1] / 2), asks[3], asks[4]]
    commission = sum(Decimal(f["commission"]) for f in order["fills"])
    assert commission == sum((q * Decimal("0.001")).quantize(Decimal("1e-8")) for _, q in fills)
    account = binance.signed("GET", "/api/v3/account").json()
    free = {row["asset"]: Decimal(row["free"]) for row in account["balances"]}
    assert free["USDT"] == Decimal(100000) - cost
    assert free["BTC"] == 1 + quantity - commission


def test_a_resting_limit_order_fills_partly_when_the_price_crosses_it(serve: Serve) -> None:
    clock = FixedClock(START_MS)
    http = serve("binance", clock=clock)
    twin = serve("binance", clock=FixedClock(START_MS))  # same seed: shows the book we will meet
    client = Binance(http, now_ms=clock.now_ms)
    limit = Decimal("59000.00")
    placed = client.signed(
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "1",
            "price": str(limit),
            "newClientOrderId": "rest-1",
        },
    ).json()
    assert (placed["status"], placed["executedQty"]) == ("NEW", "0.00000000")
    locked = client.signed("GET", "/api/v3/account").json()["balances"]
    assert {r["asset"]: r["locked"] for r in locked}["USDT"] == "59000.00000000"

    # The mid jumps to 58998: the asks now start at 58999 and 59000, one step each.
    move = {"symbol": "BTCUSDT", "price": "58998", "product": "spot"}
    http.post("/__emulator__/market", json=move)
    twin.post("/__emulator__/market", json=move)
    crossing = [(p, q) for p, q in _asks(twin) if p <= limit]
    assert [p for p, _ in crossing] == [Decimal("58999.00"), Decimal("59000.00")]
    order = client.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "rest-1"}
    ).json()
    executed = Decimal(order["executedQty"])
    assert executed == sum(q for _, q in crossing)
    assert 0 < executed < 1
    assert order["status"] == "PARTIALLY_FILLED"
    assert Decimal(order["cummulativeQuoteQty"]) == executed * limit  # maker, at its own price
    trades = client.signed("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}).json()
    assert [(t["isMaker"], Decimal(t["qty"])) for t in trades] == [(True, executed)]

    http.post("/__emulator__/market", json={"symbol": "BTCUSDT", "price": "55000"})
    done = client.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 1}).json()
    assert (done["status"], done["executedQty"]) == ("FILLED", "1.00000000")
    account = client.signed("GET", "/api/v3/account").json()["balances"]
    assert all(Decimal(r["locked"]) == 0 for r in account)


def test_ioc_and_fok_do_not_rest(binance: Binance) -> None:
    best = _asks(binance.http)[0]
    common = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": str(best[0])}
    ioc = binance.signed(
        "POST", "/api/v3/order", {**common, "timeInForce": "IOC", "quantity": str(best[1] * 2)}
    ).json()
    assert (ioc["status"], Decimal(ioc["executedQty"])) == ("EXPIRED", best[1])
    fok = binance.signed(
        "POST", "/api/v3/order", {**common, "timeInForce": "FOK", "quantity": "5"}
    ).json()
    assert (fok["status"], fok["executedQty"]) == ("EXPIRED", "0.00000000")
    crossing = str(_asks(binance.http)[0][0])  # the IOC took the first level
    maker = binance.signed(
        "POST",
        "/api/v3/order",
        {**common, "type": "LIMIT_MAKER", "price": crossing, "quantity": "0.01"},
    ).json()
    assert maker == {"code": -2010, "msg": "Order would immediately match and take."}


def test_a_duplicate_client_order_id_is_refused_while_the_first_is_open(binance: Binance) -> None:
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "50000",
        "newClientOrderId": "dup-1",
    }
    first = binance.signed("POST", "/api/v3/order", order)
    assert first.status_code == 200
    second = binance.signed("POST", "/api/v3/order", order)
    assert (second.status_code, second.json()) == (
        400,
        {"code": -2010, "msg": "Duplicate order sent."},
    )
    by_client_id = binance.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "dup-1"}
    ).json()
    assert by_client_id["orderId"] == first.json()["orderId"]
    cancelled = binance.signed(
        "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "dup-1"}
    ).json()
    assert cancelled["status"] == "CANCELED"
    assert (
        binance.signed(
            "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": first.json()["orderId"]}
        ).json()["code"]
        == -2011
    )
    assert len(orders_in(journal(binance.http))) == 1


def test_refusals_use_binance_codes(binance: Binance) -> None:
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    cases = [
        ({**base, "quantity": "10", "price": "50000"}, -2010),  # 500000 USDT > 100000
        ({**base, "quantity": "0.01", "price": "50000.001"}, -1013),
        ({**base, "quantity": "0.000001", "price": "50000"}, -1013),
        ({**base, "symbol": "DOGEUSDT", "quantity": "1", "price": "1"}, -1121),
        ({**base, "type": "STOP_LOSS", "quantity": "1", "price": "1"}, -1014),
    ]
    for params, code in cases:
        assert binance.signed("POST", "/api/v3/order", params).json()["code"] == code
    missing = binance.signed("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 99})
    assert missing.json() == {"code": -2013, "msg": "Order does not exist."}


def test_usdm_orders_move_positions_and_margin(binance: Binance) -> None:
    asks = _asks(binance.http, "/fapi/v1/depth")
    order = binance.signed(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.100",
            "newClientOrderId": "fut-1",
        },
    ).json()
    assert order["status"] == "FILLED"
    account = binance.signed("GET", "/fapi/v3/account").json()
    position = next(p for p in account["positions"] if p["symbol"] == "BTCUSDT")
    assert Decimal(position["positionAmt"]) == Decimal("0.1")
    cost = Decimal(order["cumQuote"])
    assert cost >= asks[0][0] * Decimal("0.1")
    fee = cost * Decimal("0.0005")
    assert Decimal(account["totalWalletBalance"]) == Decimal(100000) - fee
    duplicate = binance.signed(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "50000",
            "newClientOrderId": "fut-2",
        },
    )
    assert duplicate.status_code == 200
    again = binance.signed(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "50000",
            "newClientOrderId": "fut-2",
        },
    )
    assert again.json()["code"] == -4116
    reduce = binance.signed(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.001",
            "reduceOnly": "true",
        },
    )
    assert reduce.json()["code"] == -2022
    too_big = binance.signed(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "100",
            "price": "50000",
        },
    )
    assert too_big.json() == {"code": -2019, "msg": "Margin is insufficient."}


def test_okx_orders_fill_and_refuse_with_okx_codes(okx: Okx) -> None:
    book = okx.http.get("/api/v5/market/books", params={"instId": "BTC-USDT", "sz": 3}).json()
    best_ask = Decimal(book["data"][0]["asks"][0][0])
    market = okx.request(
        "POST",
        "/api/v5/trade/order",
        body={
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "market",
            "sz": "600",
            "clOrdId": "mkt1",
        },
    ).json()  # a market buy's sz is quote by default
    assert market["code"] == "0"
    order = okx.request(
        "GET", "/api/v5/trade/order", params={"instId": "BTC-USDT", "clOrdId": "mkt1"}
    ).json()["data"][0]
    assert (order["state"], order["tgtCcy"]) == ("filled", "quote_ccy")
    assert Decimal(order["avgPx"]) == best_ask
    fee = (Decimal(order["accFillSz"]) * Decimal("0.001")).quantize(Decimal("1e-8"))
    assert Decimal(order["fee"]) == -fee
    resting = {
        "instId": "BTC-USDT",
        "tdMode": "cash",
        "side": "buy",
        "ordType": "limit",
        "sz": "0.01",
        "px": "50000",
        "clOrdId": "dup1",
    }
    assert okx.request("POST", "/api/v5/trade/order", body=resting).json()["code"] == "0"
    duplicate = okx.request("POST", "/api/v5/trade/order", body=resting)
    assert duplicate.status_code == 200
    assert duplicate.json()["code"] == "1"
    assert duplicate.json()["data"][0]["sCode"] == "51016"
    poor = okx.request(
        "POST", "/api/v5/trade/order", body={**resting, "clOrdId": "poor1", "sz": "100"}
    ).json()
    assert poor["data"][0]["sCode"] == "51008"
    missing = okx.request(
        "GET", "/api/v5/trade/order", params={"instId": "BTC-USDT", "ordId": "999"}
    ).json()
    assert missing["code"] == "51603"
    batch = okx.request(
        "POST",
        "/api/v5/trade/batch-orders",
        body=[{**resting, "clOrdId": "batch1"}, {**resting, "clOrdId": "batch2", "sz": "100"}],
    ).json()
    assert batch["code"] == "2"
    assert [d["sCode"] for d in batch["data"]] == ["0", "51008"]
    pending = okx.request("GET", "/api/v5/trade/orders-pending").json()["data"]
    assert sorted(o["clOrdId"] for o in pending) == ["batch1", "dup1"]
