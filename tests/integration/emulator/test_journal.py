"""The journal says what arrived, and the control endpoints reset and steer the emulator."""

from __future__ import annotations

from emulator_testkit import BINANCE_SECRET, Binance, Okx, journal, orders_in


def test_the_journal_records_every_request_and_the_orders_they_made(binance: Binance) -> None:
    binance.http.get("/api/v3/time")
    binance.signed("GET", "/api/v3/account", sign_with="wrong-secret")
    placed = binance.signed(
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.01",
            "price": "70000",
            "newClientOrderId": "journal-1",
        },
    ).json()
    binance.signed("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]})
    entries = journal(binance.http)
    assert [
        (e["seq"], e["method"], e["path"], e["kind"], e["accepted"], e["status"], e["code"])
        for e in entries
    ] == [
        (1, "GET", "/api/v3/time", "public", True, 200, None),
        (2, "GET", "/api/v3/account", "private", False, 400, "-1022"),
        (3, "POST", "/api/v3/order", "order", True, 200, None),
        (4, "DELETE", "/api/v3/order", "cancel", True, 200, None),
    ]
    order = entries[2]
    assert order["api_key"] == binance.api_key
    assert order["params"]["newClientOrderId"] == "journal-1"
    assert "signature" not in order["params"]
    assert order["orders"] == [
        {
            "order_id": placed["orderId"],
            "client_order_id": "journal-1",
            "product": "spot",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT",
            "time_in_force": "GTC",
            "price": "70000",
            "quantity": "0.01",
            "quote_quantity": None,
            "status": "NEW",
            "executed_qty": "0",
            "cumulative_quote": "0",
        }
    ]
    assert len(orders_in(entries)) == 1  # "exactly one order arrived"
    text = binance.http.get("/__emulator__/journal").text
    assert BINANCE_SECRET not in text
    later = binance.http.get("/__emulator__/journal", params={"since": 3}).json()["entries"]
    assert [e["seq"] for e in later] == [4]


def test_reset_restores_markets_wallets_orders_and_the_journal(binance: Binance) -> None:
    before = binance.http.get("/__emulator__/market").json()
    binance.signed(
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"},
    )
    binance.http.post("/__emulator__/market", json={"steps": 3})
    binance.http.post("/__emulator__/clock", json={"advance_ms": 5_000})
    assert binance.http.post("/__emulator__/reset").json() == {"reset": True}
    assert binance.http.get("/__emulator__/journal").json() == {"entries": []}
    assert binance.http.get("/__emulator__/market").json() == before
    assert binance.http.get("/__emulator__/clock").json()["offset_ms"] == 0
    account = binance.signed("GET", "/api/v3/account").json()
    assert {b["asset"]: b["free"] for b in account["balances"]}["BTC"] == "1.00000000"


def test_the_clock_control_moves_server_time(okx: Okx) -> None:
    before = int(okx.http.get("/api/v5/public/time").json()["data"][0]["ts"])
    okx.http.post("/__emulator__/clock", json={"advance_ms": 3_600_000})
    after = int(okx.http.get("/api/v5/public/time").json()["data"][0]["ts"])
    assert after - before >= 3_600_000
    stale = okx.request("GET", "/api/v5/account/balance")  # our clock is now an hour behind
    assert stale.json()["code"] == "50102"


def test_control_endpoints_refuse_nonsense(okx: Okx) -> None:
    assert okx.http.post("/__emulator__/market", json={"steps": 0}).status_code == 400
    assert (
        okx.http.post(
            "/__emulator__/market", json={"symbol": "NOPE-USDT", "price": "1"}
        ).status_code
        == 400
    )
    assert okx.http.post("/__emulator__/clock", json={"advance_ms": "soon"}).status_code == 400
    moved = okx.http.post("/__emulator__/market", json={"symbol": "BTC-USDT", "price": "65000"})
    assert moved.json()["markets"][0]["mid"] == "65000.0"
