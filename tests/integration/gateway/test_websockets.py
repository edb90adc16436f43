"""WebSockets through the gateway (issue 11), against the emulator's Binance WebSocket side.

Real processes on loopback: the emulator and the gateway each serve on uvicorn
in a thread; the bots are ``websockets`` clients holding only a bot token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
import websockets
from gateway_testkit import (
    BINANCE_API_KEY,
    StartEmulator,
    StartGateway,
    World,
    assert_no_secret,
    make_vault,
    new_token,
    wait_until,
)
from websockets.asyncio.client import ClientConnection

from keybroker.emulator import EmulatorConfig
from keybroker.gateway import websocket as gateway_ws

TOKEN_HEADER = "X-Keybroker-Token"


def ws_url(world: World, path: str) -> str:
    return world.gateway.url.replace("http://", "ws://") + "/bn" + path


def connect(world: World, path: str, token: str | None = None) -> Any:
    return websockets.connect(
        ws_url(world, path),
        additional_headers={TOKEN_HEADER: token or world.gateway.token},
        open_timeout=10,
    )


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


async def request(bot: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a request frame; the answer with its id (events in between are skipped)."""
    await bot.send(json.dumps(frame))
    return await request_answer(bot, frame["id"])


async def request_answer(bot: ClientConnection, request_id: object) -> dict[str, Any]:
    """The next answer with ``request_id`` (events in between are skipped)."""
    while True:
        answer = json.loads(await asyncio.wait_for(bot.recv(), 15))
        if answer.get("id") == request_id:
            return answer


def order(id_: object, **params: object) -> dict[str, Any]:
    base: dict[str, object] = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.001",
        "price": "20000",
    }
    return {"id": id_, "method": "order.place", "params": {**base, **params}}


def ws_orders(world: World) -> list[dict[str, Any]]:
    return [e for e in world.exchange.journal() if e["transport"] == "ws" and e["kind"] == "order"]


def test_an_order_over_the_websocket_api_is_signed_by_the_gateway_and_accepted(
    world: World,
) -> None:
    async def bot() -> dict[str, Any]:
        async with connect(world, "/ws-api/v3") as ws:
            return await request(ws, order(1))

    answer = run(bot())
    assert answer["status"] == 200, answer
    assert answer["result"]["symbol"] == "BTCUSDT"
    # The gateway added a client order id, inside the signed params.
    assert answer["result"]["clientOrderId"].startswith("kb")
    placed = ws_orders(world)
    assert len(placed) == 1 and placed[0]["accepted"]
    assert placed[0]["api_key"] == BINANCE_API_KEY
    intents = world.gateway.rows("intent")
    results = world.gateway.rows("result")
    assert [r.row.request_kind for r in intents] == ["order_place"]
    assert results[-1].row.status == 200
    assert intents[0].row.order is not None and intents[0].row.order["symbol"] == "BTCUSDT"


def test_a_refused_frame_gets_an_exchange_shaped_error_and_never_leaves(world: World) -> None:
    async def bot() -> list[dict[str, Any]]:
        async with connect(world, "/ws-api/v3") as ws:
            return [
                await request(ws, order("big", quantity="1")),  # 20,000 > max_notional 5,000
                await request(ws, order("eth", symbol="ETHUSDT")),  # not on the allowlist
                await request(ws, {"id": "w", "method": "withdraw", "params": {"coin": "BTC"}}),
            ]

    big, eth, withdraw = run(bot())
    assert big["status"] == 403 and big["error"]["code"] == -2010
    assert "max_notional" in big["error"]["msg"]
    assert eth["status"] == 403 and "symbol" in eth["error"]["msg"]
    assert withdraw["status"] == 400 and "not catalogued" in withdraw["error"]["msg"]
    assert ws_orders(world) == []
    denied = world.gateway.rows("denied")
    assert len(denied) == 3
    assert {r.row.rule for r in denied} >= {"max_notional", "invalid_frame"}


def test_halt_stops_websocket_orders_and_cancels_still_pass(world: World) -> None:
    async def bot() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with connect(world, "/ws-api/v3") as ws:
            placed = await request(ws, order(1))
            world.gateway.vault.halt("bn", reason="test")
            refused = await request(ws, order(2))
            cancel = {
                "id": 3,
                "method": "order.cancel",
                "params": {"symbol": "BTCUSDT", "orderId": placed["result"]["orderId"]},
            }
            return placed, refused, await request(ws, cancel)

    placed, refused, cancelled = run(bot())
    assert placed["status"] == 200
    assert refused["status"] == 403 and "halt" in refused["error"]["msg"]
    assert cancelled["status"] == 200 and cancelled["result"]["status"] == "CANCELED"
    assert len(ws_orders(world)) == 1


def test_an_order_frame_is_signed_early_but_leaves_only_once_its_intent_row_is_durable(
    world: World,
) -> None:
    """The gateway signs a frame before its intent row's commit (its key is local), and
    still sends nothing until the row is durable: while another connection holds the
    audit log's write lock, the emulator sees no order and the bot no answer."""
    held = sqlite3.connect(world.gateway.audit_path, isolation_level=None)

    async def bot() -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
        async with connect(world, "/ws-api/v3") as ws:
            held.execute("BEGIN IMMEDIATE")  # the intent row cannot be committed now
            early: str | None = None
            try:
                await ws.send(json.dumps(order("held")))
                with contextlib.suppress(TimeoutError):
                    early = str(await asyncio.wait_for(ws.recv(), 1.0))
                seen_while_held = ws_orders(world)
            finally:
                held.execute("ROLLBACK")
            answer = json.loads(early) if early else await request_answer(ws, "held")
            return seen_while_held, early, answer

    try:
        seen_while_held, early, answer = run(bot())
    finally:
        held.close()
    assert seen_while_held == [], "the order reached the exchange before its intent row"
    assert early is None, early
    assert answer["status"] == 200, answer
    assert len(ws_orders(world)) == 1
    intents = world.gateway.rows("intent")
    assert [r.row.request_kind for r in intents] == ["order_place"]


def test_answers_are_matched_after_the_bot_has_them_and_before_anything_else(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer's result row is written after the answer went out (here: long after, the
    timer pushed out of the way). The bot's next frame, reusing the id it was answered
    on, is judged only once the answer was matched (not refused as a duplicate); the
    session's end matches what is left; and the row's latency is the answer's arrival,
    not the moment it was matched."""
    monkeypatch.setattr(gateway_ws, "MATCH_AFTER_S", 60.0)

    async def bot() -> tuple[dict[str, Any], dict[str, Any], float]:
        async with connect(world, "/ws-api/v3") as ws:
            first = await request(ws, order(7))
            started = time.perf_counter()
            again = await request(ws, order(7))  # the same id, once its answer came
            round_trip_ms = (time.perf_counter() - started) * 1000
            await asyncio.sleep(1.5)  # matched only when the session ends, after this
            return first, again, round_trip_ms

    first, again, round_trip_ms = run(bot())
    assert first["status"] == 200 and again["status"] == 200, again
    assert len(ws_orders(world)) == 2
    assert wait_until(lambda: len(world.gateway.rows("result")) >= 2)
    results = world.gateway.rows("result")
    assert [r.row.status for r in results] == [200, 200]
    assert not any("before an answer" in (r.row.detail or "") for r in results)
    last = results[-1].row.latency_ms
    assert last is not None and last <= round_trip_ms + 2  # within the bot's own wait


def test_a_bot_with_only_a_token_receives_its_own_order_updates(world: World) -> None:
    """Both ways Binance offers: a listen key made over REST through the gateway, and the
    WebSocket API's userDataStream.subscribe.signature, which the gateway signs."""
    client = world.gateway.client()
    listen_key = client.post("/bn/api/v3/userDataStream").json()["listenKey"]

    async def bot() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with (
            connect(world, f"/ws/{listen_key}") as stream,
            connect(world, "/ws-api/v3") as api,
        ):
            subscribed = await request(
                api, {"id": "s", "method": "userDataStream.subscribe.signature"}
            )
            assert subscribed["status"] == 200, subscribed
            placed = await request(api, order("o1"))
            client_id = placed["result"]["clientOrderId"]
            from_stream = [json.loads(await asyncio.wait_for(stream.recv(), 5))]
            from_api: list[dict[str, Any]] = []
            while not any(e.get("c") == client_id for e in from_api):
                frame = json.loads(await asyncio.wait_for(api.recv(), 5))
                if "event" in frame:
                    from_api.append(frame["event"])
            return from_stream, from_api

    from_stream, from_api = run(bot())
    assert from_stream[0]["e"] == "executionReport" and from_stream[0]["X"] == "NEW"
    assert any(e["e"] == "executionReport" for e in from_api)


def test_45_bots_on_one_ticker_stream_make_one_upstream_subscription(world: World) -> None:
    async def bots() -> list[dict[str, Any]]:
        connections = [await connect(world, "/ws/btcusdt@ticker").__aenter__() for _ in range(45)]
        try:
            return [json.loads(await asyncio.wait_for(c.recv(), 10)) for c in connections]
        finally:
            for c in connections:
                await c.close()

    events = run(bots())
    assert len(events) == 45 and all(e["e"] == "24hrTicker" for e in events)
    subscriptions = [e for e in world.exchange.journal() if e["method"] == "SUBSCRIBE"]
    assert [e["path"] for e in subscriptions] == ["/ws/btcusdt@ticker"]


def test_frames_to_a_bot_are_not_deflated_even_when_the_bot_offers_it(world: World) -> None:
    # websockets clients offer permessage-deflate by default; the gateway declines, so a
    # frame shared by 45 bots is not compressed 45 times (latency, CPU) on a local hop.
    async def bot() -> tuple[str | None, dict[str, Any]]:
        async with connect(world, "/ws/btcusdt@ticker") as ws:
            assert ws.response is not None
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
            return extensions, json.loads(await asyncio.wait_for(ws.recv(), 5))

    extensions, event = run(bot())
    assert extensions is None
    assert event["s"] == "BTCUSDT"


def test_subscribe_frames_and_combined_streams_share_the_same_upstreams(world: World) -> None:
    async def bots() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with (
            connect(world, "/ws") as by_frame,
            connect(world, "/stream?streams=btcusdt@ticker/ethusdt@bookTicker") as combined,
        ):
            reply = await request(
                by_frame, {"method": "SUBSCRIBE", "params": ["btcusdt@ticker"], "id": 7}
            )
            event = json.loads(await asyncio.wait_for(by_frame.recv(), 5))
            wrapped = json.loads(await asyncio.wait_for(combined.recv(), 5))
            return reply, event, wrapped

    reply, event, wrapped = run(bots())
    assert reply == {"result": None, "id": 7}
    assert event["e"] == "24hrTicker" and event["s"] == "BTCUSDT"
    assert wrapped["stream"] in ("btcusdt@ticker", "ethusdt@bookTicker") and "data" in wrapped
    paths = sorted(e["path"] for e in world.exchange.journal() if e["method"] == "SUBSCRIBE")
    assert paths == ["/ws/btcusdt@ticker", "/ws/ethusdt@bookTicker"]


def test_an_upstream_drop_closes_with_a_reason_and_nothing_is_replayed(world: World) -> None:
    async def bot() -> tuple[int | None, str | None, dict[str, Any]]:
        async with connect(world, "/ws-api/v3") as ws:
            placed = await request(ws, order(1))
            httpx.post(f"{world.exchange.url}/__emulator__/ws/drop", timeout=5)
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            code, reason = ws.close_code, ws.close_reason
        async with connect(world, "/ws-api/v3") as again:  # a new connection works at once
            await request(again, {"id": "t", "method": "time"})
        return code, reason, placed

    code, reason, placed = run(bot())
    assert placed["status"] == 200
    assert code == 1012 and reason is not None and "exchange connection" in reason
    assert len(ws_orders(world)) == 1  # never replayed


def test_tokens_are_required_and_a_canary_secret_never_reaches_a_bot(world: World) -> None:
    async def anonymous() -> None:
        async with websockets.connect(ws_url(world, "/ws-api/v3"), open_timeout=10) as ws:
            await ws.recv()

    with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed)):
        run(anonymous())
    frames: list[str] = []

    async def bot() -> None:
        async with connect(world, "/ws-api/v3") as ws:
            await ws.send(json.dumps(order(1)))
            await ws.send(json.dumps(order(2, quantity="9")))
            await ws.send(json.dumps({"id": 3, "method": "account.status"}))
            for _ in range(3):
                frames.append(await asyncio.wait_for(ws.recv(), 10))

    run(bot())
    assert len(frames) == 3
    assert_no_secret(*frames)
    assert_no_secret(world.gateway.audit_path.read_bytes())


def test_an_unknown_websocket_path_is_refused_and_audited(world: World) -> None:
    async def bot() -> tuple[int | None, str | None]:
        async with connect(world, "/sapi/v1/capital/withdraw/apply") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code, ws.close_reason

    code, reason = run(bot())
    assert code == 1008 and reason is not None and "WebSocket path" in reason
    assert [r.row.rule for r in world.gateway.rows("denied")] == ["websocket_refused"]


def test_the_gateway_keeps_a_listen_key_alive_through_the_pipeline(
    tmp_path: Any, emulator: StartEmulator, gateway: StartGateway
) -> None:
    from gateway_testkit import TRADER

    exchange = emulator("binance", EmulatorConfig(seed=3))
    vault = make_vault(tmp_path / "h", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER})
    running = gateway(vault, new_token(vault, "bot1", ["bn"]), ws_keepalive_s=0.2)
    world = World(exchange, running)
    listen_key = running.client().post("/bn/api/v3/userDataStream").json()["listenKey"]

    async def bot() -> None:
        async with connect(world, f"/ws/{listen_key}"):
            await asyncio.sleep(0.7)

    run(bot())
    keep_alives = exchange.requests_to("/api/v3/userDataStream", "PUT")
    assert len(keep_alives) >= 2 and all(e["accepted"] for e in keep_alives)
    assert wait_until(lambda: len(running.rows("intent")) >= 3)


def test_a_dropped_market_stream_tells_every_bot_and_a_reconnect_gets_a_fresh_upstream(
    world: World,
) -> None:
    async def bots() -> tuple[list[tuple[int | None, str | None]], dict[str, Any]]:
        connections = [
            await connect(world, "/ws/btcusdt@bookTicker").__aenter__() for _ in range(3)
        ]
        for c in connections:
            await asyncio.wait_for(c.recv(), 5)
        httpx.post(f"{world.exchange.url}/__emulator__/ws/drop", timeout=5)
        closes = []
        for c in connections:
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(c.recv(), 5)
            closes.append((c.close_code, c.close_reason))
        async with connect(world, "/ws/btcusdt@bookTicker") as again:
            return closes, json.loads(await asyncio.wait_for(again.recv(), 5))

    closes, event = run(bots())
    assert all(code == 1012 and "exchange closed the stream" in (r or "") for code, r in closes)
    assert event["s"] == "BTCUSDT"
    subscriptions = [e for e in world.exchange.journal() if e["method"] == "SUBSCRIBE"]
    assert len(subscriptions) == 2  # one before the drop, one after: still shared


def test_a_paper_credential_cannot_send_orders_over_a_websocket(world: World) -> None:
    """The paper venue answers over REST; a WebSocket order would reach the exchange."""
    import dataclasses

    from gateway_testkit import TRADER

    world.gateway.vault.set_policy("bn", dataclasses.replace(TRADER, mode="paper").to_json())

    async def bot() -> dict[str, Any]:
        async with connect(world, "/ws-api/v3") as ws:
            return await request(ws, order(1))

    refused = run(bot())
    assert refused["status"] == 400 and "trades on paper" in refused["error"]["msg"]
    assert ws_orders(world) == []


def test_a_paper_refusal_is_not_counted_and_each_frame_reads_the_policy_afresh(
    world: World,
) -> None:
    """The paper check and the pipeline share one vault read per frame: a policy set
    while the bot is connected holds from its next frame, and the frames refused as
    paper never count against an orders-per-minute limit."""
    import dataclasses

    from gateway_testkit import TRADER

    vault = world.gateway.vault
    vault.set_policy("bn", dataclasses.replace(TRADER, mode="paper").to_json())

    async def bot() -> list[dict[str, Any]]:
        async with connect(world, "/ws-api/v3") as ws:
            answers = [await request(ws, order(1)), await request(ws, order(2))]
            live = dataclasses.replace(TRADER, max_orders_per_minute=1)
            vault.set_policy("bn", live.to_json())
            return [*answers, await request(ws, order(3)), await request(ws, order(4))]

    paper_one, paper_two, placed, over = run(bot())
    assert all("trades on paper" in a["error"]["msg"] for a in (paper_one, paper_two))
    assert placed["status"] == 200, placed  # the two paper refusals were not counted
    assert over["status"] == 403 and "max_orders_per_minute" in over["error"]["msg"]
    assert len(ws_orders(world)) == 1


def test_a_bots_own_client_order_id_reaches_the_exchange_as_it_wrote_it(world: World) -> None:
    """The frame sent is rebuilt from the judged REST twin, whose query escapes every
    reserved character: the id comes back unescaped, inside the signed params."""
    awkward = "my.bot:1/a_b-c"

    async def bot() -> dict[str, Any]:
        async with connect(world, "/ws-api/v3") as ws:
            return await request(ws, order(1, newClientOrderId=awkward))

    answer = run(bot())
    assert answer["status"] == 200, answer  # the emulator checked the signature
    assert answer["result"]["clientOrderId"] == awkward
    assert world.gateway.rows("intent")[0].row.client_order_id == awkward


def test_the_gateways_own_endpoints_and_the_dashboard_take_no_websocket(world: World) -> None:
    async def attempt(path: str, token: str | None) -> int | None:
        url = world.gateway.url.replace("http://", "ws://") + path
        headers = {TOKEN_HEADER: token} if token else {}
        try:
            async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return ws.close_code
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    for path, token in (("/_/dashboard/", None), ("/_/health", None), ("/_/status", "bot")):
        code = run(attempt(path, world.gateway.token if token else None))
        assert code in (403, 1008), (path, code)
