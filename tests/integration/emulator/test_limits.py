"""Rate limits as the exchanges apply them: Binance weights, 429 then 418, order counts; OKX."""

from __future__ import annotations

import httpx
from emulator_testkit import Binance, Okx, Serve, journal

from keybroker.clock import FixedClock
from keybroker.emulator import EmulatorConfig

START_MS = 1_795_000_000_000  # 40 s into a minute: the weight window ends in 20 s


def _advance(http: httpx.Client, ms: int) -> None:
    assert http.post("/__emulator__/clock", json={"advance_ms": ms}).status_code == 200


def test_weights_add_up_then_429_then_a_418_ban(serve: Serve) -> None:
    http = serve(
        "binance", config=EmulatorConfig(weight_limit=50, ban_after=2), clock=FixedClock(START_MS)
    )
    used = []
    for path, params in [
        ("/api/v3/exchangeInfo", {}),  # 20
        ("/api/v3/depth", {"symbol": "BTCUSDT"}),  # 5 (limit 100)
        ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 500}),  # 25
        ("/api/v3/time", {}),
    ]:  # 1 -> 51
        response = http.get(path, params=params)
        used.append(int(response.headers["X-MBX-USED-WEIGHT-1M"]))
    assert used == [20, 25, 50, 51]
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "20"
    assert response.json() == {
        "code": -1003,
        "msg": "Too much request weight used; current limit is 50 request weight per 1 MINUTE. "
        "Please use WebSocket Streams for live updates to avoid polling the API.",
    }
    assert http.get("/api/v3/time").status_code == 429  # over the limit twice: still 429
    banned = http.get("/api/v3/time")  # a third time: banned
    assert banned.status_code == 418
    assert banned.headers["Retry-After"] == "120"
    ban_until = START_MS + 120_000
    assert banned.json()["msg"].startswith(
        f"Way too much request weight used; IP banned until {ban_until}."
    )
    _advance(http, 60_000)  # a new minute, but the ban holds
    still = http.get("/api/v3/time")
    assert (still.status_code, still.headers["Retry-After"]) == (418, "60")
    _advance(http, 60_000)
    free = http.get("/api/v3/time")
    assert (free.status_code, free.headers["X-MBX-USED-WEIGHT-1M"]) == (200, "1")
    statuses = [e["status"] for e in journal(http)]
    assert statuses == [200, 200, 200, 429, 429, 418, 418, 200]


def test_usdm_has_its_own_weight_counter(binance: Binance) -> None:
    spot = binance.http.get("/api/v3/exchangeInfo")
    futures = binance.http.get("/fapi/v1/exchangeInfo")
    assert spot.headers["X-MBX-USED-WEIGHT-1M"] == "20"
    assert futures.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    limits = spot.json()["rateLimits"]
    assert limits[0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 1200,
    }


def test_order_counts_are_reported_and_limited(serve: Serve) -> None:
    clock = FixedClock(START_MS)
    http = serve("binance", config=EmulatorConfig(spot_orders_per_10s=3), clock=clock)
    client = Binance(http, now_ms=clock.now_ms)
    order = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": "50000",
    }
    counts = [
        client.signed("POST", "/api/v3/order", order).headers["X-MBX-ORDER-COUNT-10S"]
        for _ in range(3)
    ]
    assert counts == ["1", "2", "3"]
    refused = client.signed("POST", "/api/v3/order", order)
    assert refused.status_code == 429
    assert refused.json() == {
        "code": -1015,
        "msg": "Too many new orders; current limit is 3 orders per 10 SECOND.",
    }
    clock.advance(10_000)
    again = client.signed("POST", "/api/v3/order", order)
    assert again.status_code == 200
    assert (again.headers["X-MBX-ORDER-COUNT-10S"], again.headers["X-MBX-ORDER-COUNT-1D"]) == (
        "1",
        "4",
    )


def test_okx_limits_each_endpoint_per_two_seconds_with_50011(serve: Serve) -> None:
    clock = FixedClock(START_MS)
    client = Okx(serve("okx", clock=clock), now_ms=clock.now_ms)
    codes = [client.request("GET", "/api/v5/account/config").json()["code"] for _ in range(6)]
    assert codes == ["0"] * 5 + ["50011"]
    limited = client.request("GET", "/api/v5/account/config")
    assert limited.status_code == 429
    assert limited.json()["msg"].startswith("Rate limit reached.")
    assert client.request("GET", "/api/v5/account/balance").json()["code"] == "0"  # its own
    clock.advance(2_000)
    assert client.request("GET", "/api/v5/account/config").json()["code"] == "0"
    public = [client.http.get("/api/v5/public/time").status_code for _ in range(11)]
    assert public == [200] * 10 + [429]
