"""ccxt.pro through the gateway: the bot holds a token, and watches and trades over WebSockets.

``connect_ccxt(..., pro=True)`` points ccxt.pro's WebSocket URLs at the
gateway; the emulator's Binance WebSocket side answers. The same calls a bot
makes against Binance: watch_ticker, create_order_ws, watch_orders, watch_balance.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway_testkit import World, assert_no_secret

import keybroker

# Spot markets only: the emulator serves spot and USDⓈ-M, not the other products ccxt asks for.
SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}, "has": {"fetchCurrencies": False}}


def test_a_ccxt_pro_bot_watches_and_trades_through_the_gateway(world: World) -> None:
    async def bot() -> dict[str, Any]:
        exchange = keybroker.connect_ccxt(
            "bn",
            exchange="binance",
            gateway_url=world.gateway.url,
            token=world.gateway.token,
            pro=True,
            config=SPOT_ONLY,
        )
        try:
            ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT"), 15)
            watching = asyncio.ensure_future(exchange.watch_orders("BTC/USDT"))
            balance_watch = asyncio.ensure_future(exchange.watch_balance())
            await asyncio.sleep(0.5)  # the user data stream is open before the order
            placed = await asyncio.wait_for(
                exchange.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000), 15
            )
            orders = await asyncio.wait_for(watching, 15)
            balance = await asyncio.wait_for(balance_watch, 15)
            return {"ticker": ticker, "placed": placed, "orders": orders, "balance": balance}
        finally:
            await exchange.close()

    seen = asyncio.run(bot())
    assert seen["ticker"]["symbol"] == "BTC/USDT" and seen["ticker"]["last"] > 0
    assert seen["placed"]["status"] == "open"
    assert any(o["id"] == seen["placed"]["id"] for o in seen["orders"])
    assert "USDT" in seen["balance"]
    ws_orders = [
        e for e in world.exchange.journal() if e["transport"] == "ws" and e["kind"] == "order"
    ]
    assert len(ws_orders) == 1
    assert [r.row.request_kind for r in world.gateway.rows("intent")].count("order_place") == 1
    assert_no_secret(repr(seen))
