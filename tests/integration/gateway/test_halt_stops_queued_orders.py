"""A halt stops orders that the policy allowed but that still wait for rate-limit budget.

A runaway bot fills the queue; the user runs ``keybroker halt`` (here: another
connection to the vault file, as that command's process would be). The orders
already allowed and queued behind the budget must not leave once the halt is
committed: they are refused with the kill switch's answer, REST and WebSocket
alike, and the exchange (the emulator's journal) sees none of them.
"""

from __future__ import annotations

import json
import threading
import time
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
    wait_until,
)
from websockets.sync.client import connect

from keybroker.ratelimit import MemoryLimiter
from keybroker.vault import Vault

# One order per 10-second window: the second order waits for the next window.
ONE_ORDER = {"binance:ORDERS_10S": 1}


def _world(tmp_path: Path, emulator: StartEmulator, gateway: StartGateway) -> World:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    limiter = MemoryLimiter(limit_overrides=ONE_ORDER)
    token = new_token(vault, "bot1", ["bn"])
    return World(exchange, gateway(vault, token, limiter=limiter, rate_limit_deadline_s=15.0))


def _halt_elsewhere(world: World) -> None:
    """What ``keybroker halt bn`` does: a halt committed by another connection."""
    other = Vault.open(world.gateway.vault.path)
    try:
        other.halt("bn", reason="runaway bot")
    finally:
        other.close()


def test_a_rest_order_queued_for_budget_is_refused_once_halted(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway)
    client = world.gateway.client()
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    answers: list[httpx.Response] = []
    waiting = threading.Thread(
        target=lambda: answers.append(client.post("/bn/api/v3/order", data=LIMIT_BUY))
    )
    started = time.monotonic()
    waiting.start()
    time.sleep(0.5)  # the second order is allowed and waits for the next window
    _halt_elsewhere(world)
    waiting.join(20)
    assert answers, "the queued order was never answered"
    assert time.monotonic() - started > 0.5
    refused = answers[0]
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "policy_denied"
    assert len(world.exchange.requests_to("/api/v3/order", "POST")) == 1
    assert [row.row.rule for row in world.gateway.rows("denied")] == ["kill_switch"]


def test_a_websocket_order_queued_for_budget_is_refused_once_halted(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway)
    url = world.gateway.url.replace("http://", "ws://") + "/bn/ws-api/v3"
    params = dict(LIMIT_BUY)
    with connect(url, additional_headers={"X-Keybroker-Token": world.gateway.token}) as ws:
        ws.send(json.dumps({"id": "first", "method": "order.place", "params": params}))
        first = json.loads(ws.recv(timeout=10))
        assert first["status"] == 200, first
        ws.send(json.dumps({"id": "second", "method": "order.place", "params": params}))
        time.sleep(0.5)  # allowed, waiting for the next window
        _halt_elsewhere(world)
        second = json.loads(ws.recv(timeout=20))
    assert second["id"] == "second"
    assert second["status"] == 403, second
    assert "halted" in second["error"]["msg"]
    orders = [order for order in world.exchange.orders() if order]
    assert len(orders) == 1, orders
    assert wait_until(
        lambda: [row.row.rule for row in world.gateway.rows("denied")] == ["kill_switch"]
    )
