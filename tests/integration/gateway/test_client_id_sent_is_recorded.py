"""The client order id the gateway adds is the one its intent row records, byte for byte.

The gateway reads an order once: it adds its id to the request and to the
intents it already read (``OrderTools.with_client_order_id``), and the intent
row records the intents. So what the exchange (the real emulator) received
must carry exactly the id of the intent row, for orders in the body, in the
query, over the WebSocket API, and at OKX; and every order gets its own id.
"""

from __future__ import annotations

from pathlib import Path

from gateway_testkit import (
    LIMIT_BUY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
)
from test_websockets import connect, order, request, run


def _sent_ids(world: World, path: str, name: str) -> list[object]:
    return [entry["params"].get(name) for entry in world.exchange.requests_to(path, "POST")]


def test_rest_orders_carry_the_id_of_their_intent_row(world: World) -> None:
    client = world.gateway.client()
    in_body = client.post("/bn/api/v3/order", data=LIMIT_BUY)
    in_query = client.post("/bn/api/v3/order", params=LIMIT_BUY)
    assert in_body.status_code == 200 and in_query.status_code == 200, in_query.text
    recorded = [row.row.client_order_id for row in world.gateway.rows("intent")]
    sent = _sent_ids(world, "/api/v3/order", "newClientOrderId")
    assert recorded == sent == [in_body.json()["clientOrderId"], in_query.json()["clientOrderId"]]
    assert len(set(recorded)) == 2 and all(str(value).startswith("kb") for value in recorded)
    assert [placed["client_order_id"] for placed in world.exchange.orders()] == recorded


def test_a_websocket_order_carries_the_id_of_its_intent_row(world: World) -> None:
    async def bot() -> dict[str, object]:
        async with connect(world, "/ws-api/v3") as ws:
            return await request(ws, order(1))

    answer = run(bot())
    assert answer["status"] == 200, answer
    (intent,) = world.gateway.rows("intent")
    (sent,) = [e for e in world.exchange.journal() if e["transport"] == "ws" and e["orders"]]
    assert sent["params"]["newClientOrderId"] == intent.row.client_order_id
    assert str(intent.row.client_order_id).startswith("kb")


def test_an_okx_order_carries_the_id_of_its_intent_row(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("okx")
    vault = make_vault(tmp_path / "home", {"ox": ("okx", exchange.url)}, policies={"ox": TRADER})
    running = gateway(vault, new_token(vault, "bot1", ["ox"]))
    order_ = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit"}
    placed = running.client().post(
        "/ox/api/v5/trade/order", json={**order_, "sz": "0.001", "px": "50000"}
    )
    assert placed.status_code == 200 and placed.json()["code"] == "0", placed.text
    (intent,) = running.rows("intent")
    (entry,) = exchange.requests_to("/api/v5/trade/order", "POST")
    assert entry["params"]["clOrdId"] == intent.row.client_order_id
    assert placed.json()["data"][0]["clOrdId"] == intent.row.client_order_id
