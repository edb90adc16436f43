"""OKX WebSockets through the gateway: the gateway logs the connection in, judges each op.

The bot's own login (ccxt sends one with placeholder keys) is answered by the
gateway; the emulator sees one login, made with the vault's key.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import websockets
from gateway_testkit import (
    OKX_API_KEY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    assert_no_secret,
    make_vault,
    new_token,
)


def okx_world(tmp_path: Path, emulator: StartEmulator, gateway: StartGateway) -> World:
    exchange = emulator("okx")
    vault = make_vault(tmp_path / "home", {"ok": ("okx", exchange.url)}, policies={"ok": TRADER})
    return World(exchange, gateway(vault, new_token(vault, "bot1", ["ok"])))


def connect(world: World, path: str) -> Any:
    url = world.gateway.url.replace("http://", "ws://") + "/ok" + path
    return websockets.connect(
        url, additional_headers={"X-Keybroker-Token": world.gateway.token}, open_timeout=10
    )


async def until(ws: Any, check: Any) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if check(frame):
            return frame


ORDER = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001"}


def test_the_gateway_logs_in_and_an_order_op_reaches_the_exchange_with_updates(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = okx_world(tmp_path, emulator, gateway)
    placeholder = {"apiKey": "placeholder", "passphrase": "x", "timestamp": "1", "sign": "x"}

    async def bot() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[str]]:
        frames: list[str] = []
        async with connect(world, "/ws/v5/private") as ws:
            await ws.send(json.dumps({"op": "login", "args": [placeholder]}))
            login = await until(ws, lambda f: f.get("event") == "login")
            await ws.send(
                json.dumps({"op": "subscribe", "args": [{"channel": "orders", "instType": "SPOT"}]})
            )
            await until(ws, lambda f: f.get("event") == "subscribe")
            await ws.send(
                json.dumps({"id": "o1", "op": "order", "args": [{**ORDER, "px": "20000"}]})
            )
            placed = await until(ws, lambda f: f.get("id") == "o1")
            update = await until(ws, lambda f: f.get("arg", {}).get("channel") == "orders")
            frames.append(json.dumps([login, placed, update]))
            return login, placed, update, frames

    login, placed, update, frames = asyncio.run(bot())
    assert login["code"] == "0"
    assert placed["code"] == "0" and placed["data"][0]["sCode"] == "0", placed
    client_id = placed["data"][0]["clOrdId"]
    assert client_id.startswith("kb")  # added by the gateway, inside what was sent
    assert update["data"][0]["clOrdId"] == client_id
    journal = world.exchange.journal()
    logins = [e for e in journal if e["method"] == "LOGIN"]
    assert len(logins) == 1 and logins[0]["api_key"] == OKX_API_KEY
    orders = [e for e in journal if e["transport"] == "ws" and e["kind"] == "order"]
    assert len(orders) == 1 and orders[0]["accepted"]
    assert_no_secret(*frames, world.gateway.audit_path.read_bytes())


def test_an_oversized_order_op_is_refused_and_never_sent(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = okx_world(tmp_path, emulator, gateway)

    async def bot() -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(world, "/ws/v5/private") as ws:
            await ws.send(
                json.dumps(
                    {"id": "big", "op": "order", "args": [{**ORDER, "sz": "1", "px": "20000"}]}
                )
            )
            big = await until(ws, lambda f: f.get("id") == "big")
            await ws.send(json.dumps({"id": "w", "op": "withdraw", "args": [{"ccy": "BTC"}]}))
            withdraw = await until(ws, lambda f: f.get("id") == "w")
            return big, withdraw

    big, withdraw = asyncio.run(bot())
    assert big["code"] == "1" and "max_notional" in big["msg"]
    assert withdraw["code"] == "1" and "not catalogued" in withdraw["msg"]
    assert [e for e in world.exchange.journal() if e["kind"] == "order"] == []
    assert {r.row.rule for r in world.gateway.rows("denied")} == {"max_notional", "invalid_frame"}


def test_45_bots_on_one_okx_ticker_make_one_upstream_subscription(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = okx_world(tmp_path, emulator, gateway)
    subscribe = {"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]}

    async def bots() -> list[dict[str, Any]]:
        connections = [await connect(world, "/ws/v5/public").__aenter__() for _ in range(45)]
        try:
            for c in connections:
                await c.send(json.dumps(subscribe))
            return [await until(c, lambda f: "data" in f) for c in connections]
        finally:
            for c in connections:
                await c.close()

    ticks = asyncio.run(bots())
    assert len(ticks) == 45 and all(t["data"][0]["instId"] == "BTC-USDT" for t in ticks)
    subscriptions = [e for e in world.exchange.journal() if e["method"] == "SUBSCRIBE"]
    assert len(subscriptions) == 1
