"""Bybit WebSockets through the gateway: it authenticates /v5/private and /v5/trade itself.

The bot sends the frames it would send with a key, minus the key: its own auth frame
(placeholder arguments) is answered by the gateway, and the emulator sees exactly one
auth per connection, made with the vault's key and checked by the emulator's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from gateway_testkit import (
    BYBIT_API_KEY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    assert_no_secret,
    make_vault,
    new_token,
)

from keybroker.exchanges import bybit as bybit_profile
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

PLACEHOLDER_AUTH = {"op": "auth", "args": ["placeholder", 1, "placeholder"]}
ORDER = {
    "category": "spot",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "orderType": "Limit",
    "qty": "0.001",
    "price": "50000",  # far below the emulator's ~60,000: rests, never fills
    "timeInForce": "GTC",
}


def bybit_world(tmp_path: Path, emulator: StartEmulator, gateway: StartGateway) -> World:
    exchange = emulator("bybit")
    vault = make_vault(tmp_path / "home", {"bb": ("bybit", exchange.url)}, policies={"bb": TRADER})
    return World(exchange, gateway(vault, new_token(vault, "bot1", ["bb"])))


def connect(world: World, path: str) -> Any:
    url = world.gateway.url.replace("http://", "ws://") + "/bb" + path
    return websockets.connect(
        url, additional_headers={"X-Keybroker-Token": world.gateway.token}, open_timeout=10
    )


async def until(ws: Any, check: Any, seen: list[str] | None = None) -> dict[str, Any]:
    while True:
        text = await asyncio.wait_for(ws.recv(), 10)
        if seen is not None:
            seen.append(text)
        frame = json.loads(text)
        if check(frame):
            return frame


def trade_frame(req_id: str, op: str, order: dict[str, str]) -> str:
    header = {"X-BAPI-TIMESTAMP": str(int(time.time() * 1000)), "X-BAPI-RECV-WINDOW": "8000"}
    return json.dumps({"reqId": req_id, "header": header, "op": op, "args": [order]})


def ws_orders(world: World) -> list[dict[str, Any]]:
    return [e for e in world.exchange.journal() if e["transport"] == "ws" and e["kind"] == "order"]


def test_a_bot_with_only_a_token_trades_on_v5_trade_and_gets_its_order_updates(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = bybit_world(tmp_path, emulator, gateway)
    seen: list[str] = []

    async def bot() -> dict[str, Any]:
        async with connect(world, "/v5/private") as private, connect(world, "/v5/trade") as trade:
            await private.send(json.dumps(PLACEHOLDER_AUTH))
            private_auth = await until(private, lambda f: f.get("op") == "auth", seen)
            await private.send(json.dumps({"req_id": "s1", "op": "subscribe", "args": ["order"]}))
            subscribed = await until(private, lambda f: f.get("req_id") == "s1", seen)
            await trade.send(json.dumps(PLACEHOLDER_AUTH))
            trade_auth = await until(trade, lambda f: f.get("op") == "auth", seen)
            await trade.send(trade_frame("o1", "order.create", ORDER))
            placed = await until(trade, lambda f: f.get("reqId") == "o1", seen)
            link_id = placed["data"]["orderLinkId"]
            new = await until(private, lambda f: f.get("topic") == "order", seen)
            cancel = {"category": "spot", "symbol": "BTCUSDT", "orderLinkId": link_id}
            await trade.send(trade_frame("c1", "order.cancel", cancel))
            cancelled = await until(trade, lambda f: f.get("reqId") == "c1", seen)
            gone = await until(
                private,
                lambda f: f.get("topic") == "order" and f["data"][0]["orderStatus"] == "Cancelled",
                seen,
            )
            return {
                "private_auth": private_auth,
                "subscribed": subscribed,
                "trade_auth": trade_auth,
                "placed": placed,
                "new": new,
                "cancelled": cancelled,
                "gone": gone,
            }

    got = asyncio.run(bot())
    assert got["private_auth"]["success"] is True and got["trade_auth"]["retCode"] == 0
    assert got["subscribed"]["success"] is True, got["subscribed"]
    placed = got["placed"]
    assert placed["retCode"] == 0 and placed["op"] == "order.create", placed
    link_id = placed["data"]["orderLinkId"]
    assert link_id.startswith("kb")  # added by the gateway, inside the frame it sent
    assert got["new"]["data"][0]["orderLinkId"] == link_id
    assert got["new"]["data"][0]["orderStatus"] == "New"
    assert got["cancelled"]["retCode"] == 0 and got["gone"]["data"][0]["orderLinkId"] == link_id
    journal = world.exchange.journal()
    auths = [e for e in journal if e["method"] == "AUTH"]
    assert sorted(e["path"] for e in auths) == ["/v5/private", "/v5/trade"]
    assert all(e["api_key"] == BYBIT_API_KEY for e in auths)
    orders = ws_orders(world)
    assert len(orders) == 1 and orders[0]["accepted"] and orders[0]["api_key"] == BYBIT_API_KEY
    assert orders[0]["params"]["orderLinkId"] == link_id
    results = [r.row for r in world.gateway.rows("result") if r.row.path == "/v5/order/create"]
    assert [r.venue_code for r in results] == ["0"]
    assert_no_secret(*seen, world.gateway.audit_path.read_bytes())


def test_oversized_off_list_and_uncatalogued_frames_are_refused_in_bybit_shape(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = bybit_world(tmp_path, emulator, gateway)

    async def bot() -> list[dict[str, Any]]:
        async with connect(world, "/v5/trade") as trade, connect(world, "/v5/private") as private:
            await trade.send(trade_frame("big", "order.create", {**ORDER, "qty": "1"}))
            big = await until(trade, lambda f: f.get("reqId") == "big")
            eth = {**ORDER, "symbol": "ETHUSDT", "price": "2000"}
            await trade.send(trade_frame("eth", "order.create", eth))
            off_list = await until(trade, lambda f: f.get("reqId") == "eth")
            await trade.send(trade_frame("w", "withdraw", {"coin": "BTC"}))
            withdraw = await until(trade, lambda f: f.get("reqId") == "w")
            await private.send(json.dumps({"req_id": "x", "op": "subscribe", "args": ["greeks"]}))
            topic = await until(private, lambda f: f.get("req_id") == "x")
            return [big, off_list, withdraw, topic]

    big, off_list, withdraw, topic = asyncio.run(bot())
    assert set(big) == {"reqId", "retCode", "retMsg", "op"}, big
    assert big["op"] == "order.create" and big["retCode"] != 0 and "max_notional" in big["retMsg"]
    assert off_list["retCode"] != 0 and "symbol" in off_list["retMsg"]
    assert withdraw == {
        "reqId": "w",
        "retCode": 10001,
        "retMsg": "the WebSocket op 'withdraw' is not catalogued",
        "op": "withdraw",
    }
    assert topic["success"] is False and "not catalogued" in topic["ret_msg"]
    assert ws_orders(world) == []
    assert [e for e in world.exchange.journal() if e["method"] not in ("AUTH",)] == []
    rules = {r.row.rule for r in world.gateway.rows("denied")}
    assert rules >= {"max_notional", "invalid_frame"}


def test_halt_stops_bybit_websocket_orders_and_cancels_still_pass(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = bybit_world(tmp_path, emulator, gateway)

    async def bot() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with connect(world, "/v5/trade") as trade:
            await trade.send(trade_frame("o1", "order.create", ORDER))
            placed = await until(trade, lambda f: f.get("reqId") == "o1")
            world.gateway.vault.halt("bb", reason="test")
            await trade.send(trade_frame("o2", "order.create", ORDER))
            refused = await until(trade, lambda f: f.get("reqId") == "o2")
            cancel = {"category": "spot", "symbol": "BTCUSDT", "orderId": placed["data"]["orderId"]}
            await trade.send(trade_frame("c", "order.cancel", cancel))
            return placed, refused, await until(trade, lambda f: f.get("reqId") == "c")

    placed, refused, cancelled = asyncio.run(bot())
    assert placed["retCode"] == 0
    assert refused["retCode"] == 10005 and "halt" in refused["retMsg"], refused
    assert cancelled["retCode"] == 0 and cancelled["data"]["orderId"] == placed["data"]["orderId"]
    assert len(ws_orders(world)) == 1


def test_45_bots_on_one_bybit_ticker_make_one_upstream_subscription(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = bybit_world(tmp_path, emulator, gateway)
    subscribe = {"req_id": "t", "op": "subscribe", "args": ["tickers.BTCUSDT"]}

    async def bots() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
        connections = [await connect(world, "/v5/public/spot").__aenter__() for _ in range(45)]
        try:
            for c in connections:
                await c.send(json.dumps(subscribe))
            acks = [await until(c, lambda f: f.get("op") == "subscribe") for c in connections]
            ticks = [await until(c, lambda f: "topic" in f) for c in connections]
            await connections[0].send(json.dumps({"req_id": "p", "op": "ping"}))
            pong = await until(connections[0], lambda f: f.get("op") == "ping")
            return acks, ticks, pong
        finally:
            for c in connections:
                await c.close()

    acks, ticks, pong = asyncio.run(bots())
    assert all(a["success"] is True and a["req_id"] == "t" for a in acks)
    assert len(ticks) == 45
    assert all(t["topic"] == "tickers.BTCUSDT" and t["data"]["symbol"] == "BTCUSDT" for t in ticks)
    assert pong["ret_msg"] == "pong"
    subscriptions = [e for e in world.exchange.journal() if e["method"] == "SUBSCRIBE"]
    assert len(subscriptions) == 1 and subscriptions[0]["path"] == "/v5/public/spot"


def test_an_upstream_drop_closes_the_trade_stream_and_nothing_is_resent(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = bybit_world(tmp_path, emulator, gateway)

    async def bot() -> tuple[int | None, dict[str, Any]]:
        async with connect(world, "/v5/trade") as trade:
            await trade.send(trade_frame("o1", "order.create", ORDER))
            await until(trade, lambda f: f.get("reqId") == "o1")
            drop = f"{world.exchange.url}/__emulator__/ws/drop"
            (await asyncio.to_thread(httpx.post, drop, timeout=10)).raise_for_status()
            try:
                while True:
                    await asyncio.wait_for(trade.recv(), 10)
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
        async with connect(world, "/v5/trade") as again:
            await again.send(trade_frame("o2", "order.create", ORDER))
            return code, await until(again, lambda f: f.get("reqId") == "o2")

    code, second = asyncio.run(bot())
    assert code == 1012
    assert second["retCode"] == 0
    assert len(ws_orders(world)) == 2  # one per frame sent: nothing replayed


def test_an_auth_the_exchange_refuses_closes_the_bot_with_a_reason(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("bybit")
    vault = make_vault(tmp_path / "home", {})
    wrong = KeyMaterial(BYBIT_API_KEY, Secret("test-bybit-wrong-secret-not-real"))
    vault.add("bad", "bybit", wrong, base_url=exchange.url, scopes=("read", "trade"))
    running = gateway(vault, new_token(vault, "bot1", ["bad"]))

    async def bot() -> tuple[int | None, str]:
        url = running.url.replace("http://", "ws://") + "/bad/v5/trade"
        headers = {"X-Keybroker-Token": running.token}
        async with websockets.connect(url, additional_headers=headers) as trade:
            await trade.send(trade_frame("o1", "order.create", ORDER))
            try:
                await asyncio.wait_for(trade.recv(), 15)
            except websockets.ConnectionClosed as closed:
                return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")
        return None, "not closed"

    code, reason = asyncio.run(bot())
    assert code == 1011 and "refused the WebSocket login" in reason
    assert [e for e in exchange.journal() if e["method"] == "AUTH"] == []
    assert ws_orders(World(exchange, running)) == []
    events = [r.row.detail for r in running.rows("event")]
    assert "the exchange refused the gateway's WebSocket login" in events


def test_the_gateway_pings_its_upstream_connections_and_keeps_the_pongs_to_itself(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, monkeypatch: Any
) -> None:
    """Bybit cuts a connection quiet for 10 minutes; the gateway sends the profile's ping
    (every 20 s, here every 0.1 s) on the connections it holds, and no bot sees a pong."""
    monkeypatch.setattr(bybit_profile, "WS_HEARTBEAT_S", 0.1)
    world = bybit_world(tmp_path, emulator, gateway)

    async def bot() -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        async with (
            connect(world, "/v5/private") as private,
            connect(world, "/v5/public/spot") as pub,
        ):
            await private.send(json.dumps({"req_id": "s", "op": "subscribe", "args": ["order"]}))
            await pub.send(json.dumps({"op": "subscribe", "args": ["tickers.ETHUSDT"]}))
            deadline = asyncio.get_running_loop().time() + 1.0
            while asyncio.get_running_loop().time() < deadline:
                for ws in (private, pub):
                    with contextlib.suppress(TimeoutError):
                        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 0.1)))
        return frames

    frames = asyncio.run(bot())
    assert any(f.get("req_id") == "s" for f in frames)  # the subscription was answered
    assert not [f for f in frames if f.get("op") == "pong" or f.get("ret_msg") == "pong"]
    pings = [e["path"] for e in world.exchange.journal() if e["method"] == "PING"]
    assert pings.count("/v5/private") >= 3 and pings.count("/v5/public/spot") >= 3
