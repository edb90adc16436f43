"""ccxt.pro's Bybit through the gateway: auth frames, the order topic and order.create, no key.

ccxt.pro authenticates /v5/private and /v5/trade with the bridge's placeholder
keys; the gateway answers those itself, having authenticated both upstream
connections with the vault's key. The emulated Bybit answers the rest.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway_testkit import (
    BYBIT_API_KEY,
    TRADER,
    StartEmulator,
    StartGateway,
    assert_no_secret,
    make_vault,
    new_token,
)

import keybroker

# Spot only (the emulated Bybit trades spot), no private currency list, and a unified
# account said up front (ccxt would ask /v5/account/info, which the emulator lacks).
CONFIG = {
    "options": {
        "fetchMarkets": {"types": ["spot"]},
        "enableUnifiedMargin": False,
        "enableUnifiedAccount": True,
    },
    "has": {"fetchCurrencies": False},
}


def test_a_ccxt_pro_bybit_bot_watches_and_trades_through_the_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange_server = emulator("bybit")
    vault = make_vault(
        tmp_path / "home", {"bb": ("bybit", exchange_server.url)}, policies={"bb": TRADER}
    )
    running = gateway(vault, new_token(vault, "bot1", ["bb"]))

    async def bot() -> dict[str, Any]:
        exchange = keybroker.connect_ccxt(
            "bb",
            exchange="bybit",
            gateway_url=running.url,
            token=running.token,
            pro=True,
            config=CONFIG,
        )
        try:
            ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT"), 15)
            watching = asyncio.ensure_future(exchange.watch_orders("BTC/USDT"))
            await asyncio.sleep(0.5)  # the order topic is subscribed before the order
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
    assert "/v5/public/spot" in {e["path"] for e in journal if e["method"] == "SUBSCRIBE"}
    auths = [e for e in journal if e["method"] == "AUTH"]
    # One auth per connection, the gateway's with the vault's key; ccxt's were answered here.
    assert sorted(e["path"] for e in auths) == ["/v5/private", "/v5/trade"]
    assert all(e["api_key"] == BYBIT_API_KEY for e in auths)
    ws_orders = [e for e in journal if e["transport"] == "ws" and e["kind"] == "order"]
    assert len(ws_orders) == 1 and ws_orders[0]["accepted"]
    assert [r.row.request_kind for r in running.rows("intent")].count("order_place") == 1
    assert_no_secret(repr(seen), running.audit_path.read_bytes())
