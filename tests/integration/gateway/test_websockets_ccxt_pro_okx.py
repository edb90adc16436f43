"""ccxt.pro's OKX through the gateway: login, orders channel and the order op, with no key.

ccxt.pro logs in with the bridge's placeholder keys; the gateway answers that
login itself and has already logged the upstream connection in with the vault's
key. The emulator's OKX WebSocket side answers the rest.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway_testkit import (
    OKX_API_KEY,
    TRADER,
    StartEmulator,
    StartGateway,
    assert_no_secret,
    make_vault,
    new_token,
)

import keybroker

# Spot markets only (the emulator serves OKX spot), and no private currency list.
SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}, "has": {"fetchCurrencies": False}}


def test_a_ccxt_pro_okx_bot_watches_and_trades_through_the_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange_server = emulator("okx")
    vault = make_vault(
        tmp_path / "home", {"ok": ("okx", exchange_server.url)}, policies={"ok": TRADER}
    )
    running = gateway(vault, new_token(vault, "bot1", ["ok"]))

    async def bot() -> dict[str, Any]:
        exchange = keybroker.connect_ccxt(
            "ok",
            exchange="okx",
            gateway_url=running.url,
            token=running.token,
            pro=True,
            config=SPOT_ONLY,
        )
        try:
            ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT"), 15)
            watching = asyncio.ensure_future(exchange.watch_orders("BTC/USDT"))
            await asyncio.sleep(0.5)  # the orders channel is subscribed before the order
            placed = await asyncio.wait_for(
                exchange.create_order_ws("BTC/USDT", "limit", "buy", 0.001, 20000), 15
            )
            orders = await asyncio.wait_for(watching, 15)
            return {"ticker": ticker, "placed": placed, "orders": orders}
        finally:
            await exchange.close()

    seen = asyncio.run(bot())
    assert seen["ticker"]["symbol"] == "BTC/USDT" and seen["ticker"]["last"] > 0
    assert seen["placed"]["id"]
    assert any(o["id"] == seen["placed"]["id"] for o in seen["orders"])
    journal = exchange_server.journal()
    # The ticker came over the shared public stream, not REST.
    assert "/ws/v5/public" in {e["path"] for e in journal if e["method"] == "SUBSCRIBE"}
    assert not [e for e in journal if e["path"] == "/api/v5/market/ticker"]
    logins = [e for e in journal if e["method"] == "LOGIN"]
    # One login, the gateway's with the vault's key; ccxt's own was answered locally.
    assert len(logins) == 1 and logins[0]["api_key"] == OKX_API_KEY
    ws_orders = [e for e in journal if e["transport"] == "ws" and e["kind"] == "order"]
    assert len(ws_orders) == 1 and ws_orders[0]["accepted"]
    assert ws_orders[0]["path"] == "/api/v5/trade/batch-orders"  # ccxt's op: batch-orders
    assert [r.row.request_kind for r in running.rows("intent")].count("order_place") == 1
    assert_no_secret(repr(seen), running.audit_path.read_bytes())
