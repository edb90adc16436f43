"""``max_open_orders`` and ``max_position_notional`` through the gateway, counted by the exchange.

The gateway asks the emulator (signed, budgeted, audited) how many orders are
open and how large a USDⓈ-M position is. Credentials ``bn`` and ``side`` hold
the same emulator key, so orders placed through ``side`` are orders the
exchange knows of and ``bn``'s policy must count, though ``bn`` never placed them.
"""

from __future__ import annotations

import concurrent.futures
from decimal import Decimal
from pathlib import Path

import httpx
from gateway_testkit import (
    LIMIT_BUY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
)

from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

OPEN_LIMIT = Policy(scopes=("read", "trade"), symbols=("BTCUSDT", "BTC-USDT"), max_open_orders=2)
POSITION_LIMIT = Policy(
    scopes=("read", "trade"), symbols=("BTCUSDT",), max_position_notional=Decimal(1000)
)


def _world(tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, policy: Policy) -> World:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home",
        {"bn": ("binance", exchange.url), "side": ("binance", exchange.url)},
        policies={"bn": policy, "side": TRADER},
    )
    return World(exchange, gateway(vault, new_token(vault, "bot1", ["bn", "side"])))


def _place(client: httpx.Client, credential: str = "bn", **fields: str) -> httpx.Response:
    return client.post(f"/{credential}/api/v3/order", data={**LIMIT_BUY, **fields})


def test_open_orders_are_counted_at_the_exchange(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, OPEN_LIMIT)
    client = world.gateway.client()
    # One order the exchange knows of, placed through the other credential of the key.
    elsewhere = _place(client, "side").json()["orderId"]
    first = _place(client)
    assert first.status_code == 200, first.text
    refused = _place(client)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "max_open_orders"
    assert refused.json()["detail"] == "2 orders are open; the policy allows 2"
    asked = world.exchange.requests_to("/api/v3/openOrders", "GET")
    assert asked and all(entry["code"] is None for entry in asked)  # signed, accepted
    # A cancel through another credential of the same key drops the kept count: asked again.
    cancel = {"symbol": "BTCUSDT", "orderId": str(elsewhere)}
    assert client.delete("/side/api/v3/order", params=cancel).status_code == 200
    before = len(world.exchange.requests_to("/api/v3/openOrders", "GET"))
    again = _place(client)
    assert again.status_code == 200, again.text
    assert len(world.exchange.requests_to("/api/v3/openOrders", "GET")) == before + 1
    # The gateway's reads are in the audit log like a bot's, with their results.
    reads = [
        row
        for row in world.gateway.audit()
        if row.row.path == "/api/v3/openOrders" and row.row.kind in ("intent", "result")
    ]
    assert {row.row.kind for row in reads} == {"intent", "result"}
    assert all(row.row.request_kind == "order_read" for row in reads)
    assert all(row.row.status == 200 for row in reads if row.row.kind == "result")


def test_orders_arriving_together_cannot_pass_the_open_order_limit(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, OPEN_LIMIT)
    client = world.gateway.client()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _place(client), range(6)))
    assert sorted(answer.status_code for answer in answers) == [200, 200, 403, 403, 403, 403]
    assert len(world.exchange.orders()) == 2
    # The concurrent orders shared one question to the exchange.
    assert len(world.exchange.requests_to("/api/v3/openOrders", "GET")) == 1


def test_the_usdm_position_is_read_from_the_exchange(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, POSITION_LIMIT)
    client = world.gateway.client()
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
    # The other credential opens a position of 0.01 BTC (about 600 USDT) at the exchange.
    opened = client.post("/side/fapi/v1/order", data=market)
    assert opened.status_code == 200, opened.text
    refused = client.post("/bn/fapi/v1/order", data=market)
    assert refused.status_code == 403 and refused.json()["rule"] == "max_position_notional"
    assert "would be 12" in refused.json()["detail"]  # ~600 held + ~600 more > 1000
    assert world.exchange.requests_to("/fapi/v2/positionRisk", "GET")
    small = client.post("/bn/fapi/v1/order", data={**market, "quantity": "0.005"})
    assert small.status_code == 200, small.text  # ~900 in all
    closing = {**market, "side": "SELL", "quantity": "0.015", "reduceOnly": "true"}
    assert client.post("/bn/fapi/v1/order", data=closing).status_code == 200


def test_a_spot_order_has_no_position_and_is_refused_with_the_reason(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, POSITION_LIMIT)
    refused = _place(world.gateway.client())
    assert refused.status_code == 403 and refused.json()["rule"] == "max_position_notional"
    assert "USDⓈ-M futures" in refused.json()["detail"]
    assert "spot orders have no position" in refused.json()["detail"]
    assert world.exchange.orders() == []


def test_okx_open_orders_are_counted_at_the_exchange(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("okx")
    home = tmp_path / "home"
    vault = make_vault(home, {"ox": ("okx", exchange.url)}, policies={"ox": OPEN_LIMIT})
    world = World(exchange, gateway(vault, new_token(vault, "bot1", ["ox"])))
    client = world.gateway.client()
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
             "sz": "0.001", "px": "50000"}  # fmt: skip
    for _ in range(2):
        placed = client.post("/ox/api/v5/trade/order", json=order)
        assert placed.status_code == 200 and placed.json()["code"] == "0", placed.text
    refused = client.post("/ox/api/v5/trade/order", json=order)
    assert refused.status_code == 403 and refused.json()["rule"] == "max_open_orders"
    assert world.exchange.requests_to("/api/v5/trade/orders-pending", "GET")
    assert len(world.exchange.orders()) == 2


def test_an_exchange_without_an_open_orders_query_is_refused_with_the_reason(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    vault = make_vault(tmp_path / "home", {})
    # Nothing listens on port 1: the order is refused before anything could be sent.
    vault.add(
        "kr",
        "kraken",
        KeyMaterial("test-kraken-key-not-real", Secret("dGVzdC1rcmFrZW4tbm90LXJlYWw=")),
        base_url="http://127.0.0.1:1",
        scopes=("read", "trade"),
    )
    policy = Policy(scopes=("read", "trade"), symbols=("XBTUSD",), max_open_orders=5)
    vault.set_policy("kr", policy.to_json())
    running = gateway(vault, new_token(vault, "bot1", ["kr"]))
    order = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "20000",
             "volume": "0.001", "nonce": "1"}  # fmt: skip
    refused = running.client().post("/kr/0/private/AddOrder", data=order)
    assert refused.status_code == 403 and refused.json()["rule"] == "max_open_orders"
    assert refused.json()["detail"] == (
        "the number of open orders is unknown: the gateway has no open-orders query for kraken"
    )
