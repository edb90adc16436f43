"""Step 5 (rate limits: a 429 of the gateway's own, the exchange's 429 and 418) and the alerts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from gateway_testkit import (
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    assert_no_secret,
    make_vault,
    new_token,
    wait_until,
)

from keybroker.emulator import EmulatorConfig
from keybroker.ratelimit import MemoryLimiter


def _world(
    tmp_path: Path,
    emulator: StartEmulator,
    gateway: StartGateway,
    config: EmulatorConfig | None = None,
    **options: object,
) -> World:
    exchange = emulator("binance", config)
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    return World(exchange, gateway(vault, new_token(vault, "bot1", ["bn"]), **options))


def _clear_of_a_minute_boundary() -> None:
    # The emulator's weight window is the wall-clock minute: a test that spends it
    # must not straddle two windows.
    second = time.time() % 60
    if second > 50:
        time.sleep(60.5 - second)


def test_a_spent_budget_is_answered_429_by_the_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    # Room for one account read (weight 20) a minute; the second waits, then gives up.
    limiter = MemoryLimiter(limit_overrides={"binance:REQUEST_WEIGHT": 30})
    world = _world(tmp_path, emulator, gateway, limiter=limiter, rate_limit_deadline_s=0.2)
    client = world.gateway.client()
    assert client.get("/bn/api/v3/account").status_code == 200
    refused = client.get("/bn/api/v3/account")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert len(world.exchange.requests_to("/api/v3/account")) == 1  # never reached it
    assert [row.row.rule for row in world.gateway.rows("denied")] == ["rate_limited"]


def test_the_exchanges_429_passes_through_and_pauses_the_host(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    # The emulator allows 45 weight a minute; the gateway believes in 1,200.
    _clear_of_a_minute_boundary()
    world = _world(tmp_path, emulator, gateway, EmulatorConfig(weight_limit=45))
    client = world.gateway.client()
    statuses = [client.get("/bn/api/v3/account").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # the exchange's own 429, unchanged
    seen = len(world.exchange.journal())
    paused = client.get("/bn/api/v3/time")
    assert paused.status_code == 429
    assert paused.json()["error"] == "rate_limited"  # the gateway's: the host is paused
    assert len(world.exchange.journal()) == seen


def test_a_418_opens_the_breaker_for_the_host(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    _clear_of_a_minute_boundary()
    world = _world(tmp_path, emulator, gateway, EmulatorConfig(weight_limit=20, ban_after=0))
    client = world.gateway.client()
    # Bypass the gateway's pause to get banned: straight to the emulator.
    for _ in range(3):
        httpx.get(f"{world.exchange.url}/api/v3/account")
    banned = client.get("/bn/api/v3/time")
    assert banned.status_code == 418  # the exchange's answer, unchanged
    seen = len(world.exchange.journal())
    again = client.get("/bn/api/v3/time")
    assert again.status_code == 429 and "banned" in again.json()["detail"]
    assert len(world.exchange.journal()) == seen


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_denials_and_rejections_are_alerted_to_the_webhook(
    tmp_path: Path,
    emulator: StartEmulator,
    gateway: StartGateway,
    webhook: tuple[str, list[dict[str, str]]],
) -> None:
    url, received = webhook
    world = _world(tmp_path, emulator, gateway, alert_webhook=url)
    client = world.gateway.client()
    client.post("/bn/sapi/v1/capital/withdraw/apply", data={"coin": "BTC", "amount": "1"})
    rejected = client.post(
        "/bn/api/v3/order",
        data={
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.00000001",  # below the lot size
            "price": "50000",
        },
    )
    assert rejected.status_code == 400  # the exchange's refusal, passed on
    assert wait_until(lambda: len(received) >= 2, timeout=5)
    alerts = {event["alert"]: event for event in received}
    assert alerts["PolicyDenied"]["rule"] == "never_withdraw"
    assert alerts["PolicyDenied"]["bot"] == "bot1"
    assert alerts["OrderRejected"]["credential"] == "bn"
    assert_no_secret(json.dumps(received))
    assert world.gateway.token not in json.dumps(received)
