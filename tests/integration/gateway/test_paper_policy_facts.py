"""``max_open_orders`` and ``max_position_notional`` for a paper credential count the paper ledger.

Credential ``pp`` is in paper mode and holds the same emulator key as the
live credential ``side``: orders ``side`` rests at the emulator are the real
account's, which a paper bot does not trade. The gateway must count ``pp``'s
own paper orders and positions (``<home>/paper.db``), and must never ask the
exchange for them: the emulator's journal shows no open-orders or position
query, and no order, cancel or account request, for ``pp``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
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
from paper_testkit import PAPER, START, reset

from keybroker.paper import Ledger
from keybroker.policy import Policy
from keybroker.ratelimit import MemoryLimiter

OPEN_LIMIT = dataclasses.replace(PAPER, max_open_orders=2)
POSITION_LIMIT = dataclasses.replace(PAPER, max_position_notional=Decimal(1000))
OKX_LIMIT_BUY = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
                 "sz": "0.001", "px": "50000"}  # fmt: skip
# What the gateway would ask a real exchange for these rules (it must not, for ``pp``).
FACT_QUERIES = ("/api/v3/openOrders", "/fapi/v1/openOrders", "/fapi/v2/positionRisk",
                "/api/v5/trade/orders-pending", "/api/v5/account/positions")  # fmt: skip


def _world(
    tmp_path: Path,
    emulator: StartEmulator,
    gateway: StartGateway,
    policy: Policy,
    exchange_name: str = "binance",
) -> World:
    exchange = emulator(exchange_name)
    home = tmp_path / "home"
    vault = make_vault(
        home,
        {"pp": (exchange_name, exchange.url), "side": (exchange_name, exchange.url)},
        policies={"pp": policy, "side": TRADER},
    )
    reset(home, "pp", exchange_name, START)
    running = gateway(
        vault, new_token(vault, "bot1", ["pp", "side"]), paper_poll_s=0.05, paper_book_max_age_ms=0
    )
    return World(exchange, running)


def _asked_for_facts(world: World) -> list[str]:
    return [e["path"] for e in world.exchange.journal() if e["path"] in FACT_QUERIES]


def _pp_requests_at_the_exchange(world: World, before: int) -> list[dict[str, object]]:
    # Everything after ``before`` that reached order, cancel or account endpoints.
    return [
        e for e in world.exchange.journal()[before:] if e["kind"] in ("order", "cancel", "private")
    ]


def _place(client: httpx.Client, credential: str = "pp", **fields: str) -> httpx.Response:
    return client.post(f"/{credential}/api/v3/order", data={**LIMIT_BUY, **fields})


def _open_in_ledger(world: World) -> int:
    ledger = Ledger.open(world.gateway.home / "paper.db")
    try:
        return ledger.open_count("pp")
    finally:
        ledger.close()


def test_the_third_resting_paper_order_is_refused_and_allowed_again_after_a_cancel(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, OPEN_LIMIT)
    client = world.gateway.client()
    # The real account already has three open orders (placed live through ``side``):
    # counted as the exchange counts them, ``pp`` could place nothing.
    for _ in range(3):
        assert _place(client, "side").status_code == 200
    assert len(world.exchange.orders()) == 3
    seen = len(world.exchange.journal())

    first, second = _place(client), _place(client)
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert first.headers["x-keybroker-venue"] == "paper"
    assert {first.json()["status"], second.json()["status"]} == {"NEW"}  # resting
    refused = _place(client)
    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "max_open_orders"
    assert refused.json()["detail"] == "2 orders are open; the policy allows 2"
    assert _open_in_ledger(world) == 2

    cancel = {"symbol": "BTCUSDT", "orderId": str(first.json()["orderId"])}
    cancelled = client.delete("/pp/api/v3/order", params=cancel)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELED"
    again = _place(client)
    assert again.status_code == 200, again.text
    assert _place(client).status_code == 403  # two open again

    assert _asked_for_facts(world) == []
    assert _pp_requests_at_the_exchange(world, seen) == []
    assert len(world.exchange.orders()) == 3  # the real account's, untouched
    denied = world.gateway.rows("denied")
    assert [row.row.rule for row in denied] == ["max_open_orders", "max_open_orders"]
    assert all(row.row.paper for row in denied)


def test_paper_orders_arriving_together_cannot_pass_the_open_order_limit(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, OPEN_LIMIT)
    client = world.gateway.client()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _place(client), range(6)))
    assert sorted(answer.status_code for answer in answers) == [200, 200, 403, 403, 403, 403]
    assert _open_in_ledger(world) == 2
    # Once answered, the allowed orders count from the ledger alone: a cancel frees one.
    placed = [answer.json()["orderId"] for answer in answers if answer.status_code == 200]
    cancel = {"symbol": "BTCUSDT", "orderId": str(placed[0])}
    assert client.delete("/pp/api/v3/order", params=cancel).status_code == 200
    assert _place(client).status_code == 200
    assert _asked_for_facts(world) == []
    assert world.exchange.orders() == []


def test_a_paper_order_refused_by_the_limiter_stops_counting_as_open(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("okx")
    home = tmp_path / "home"
    vault = make_vault(home, {"pp": ("okx", exchange.url)}, policies={"pp": OPEN_LIMIT})
    reset(home, "pp", "okx", START)
    # One order per two seconds: the second is refused by the limiter after the policy
    # allowed it, so it never reaches the desk and must not stay counted as on its way.
    limiter = MemoryLimiter(limit_overrides={"okx:SUB_ACCOUNT_ORDERS": 1})
    running = gateway(
        vault, new_token(vault, "bot1", ["pp"]), limiter=limiter, rate_limit_deadline_s=0.2
    )
    client = running.client()

    def place() -> httpx.Response:
        return client.post("/pp/api/v5/trade/order", json=OKX_LIMIT_BUY)

    assert place().status_code == 200
    limited = place()
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    # Once the budget is back, the policy sees one open order (1 + 1 <= 2), not two.
    deadline = time.monotonic() + 20
    allowed = place()
    while allowed.status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.25)
        allowed = place()
    assert allowed.status_code == 200 and allowed.json()["code"] == "0", allowed.text
    ledger = Ledger.open(home / "paper.db")
    assert ledger.open_count("pp") == 2
    ledger.close()
    assert {row.row.rule for row in running.rows("denied")} == {"rate_limited"}
    assert exchange.orders() == []


def test_okx_paper_open_orders_are_counted_in_the_ledger(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, OPEN_LIMIT, "okx")
    client = world.gateway.client()
    live = client.post("/side/api/v5/trade/order", json=OKX_LIMIT_BUY)
    assert live.status_code == 200 and live.json()["code"] == "0", live.text
    seen = len(world.exchange.journal())
    for _ in range(2):
        placed = client.post("/pp/api/v5/trade/order", json=OKX_LIMIT_BUY)
        assert placed.status_code == 200 and placed.json()["code"] == "0", placed.text
    refused = client.post("/pp/api/v5/trade/order", json=OKX_LIMIT_BUY)
    assert refused.status_code == 403 and refused.json()["rule"] == "max_open_orders"
    assert _asked_for_facts(world) == []
    assert _pp_requests_at_the_exchange(world, seen) == []


def test_the_paper_position_is_read_from_the_ledger(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _world(tmp_path, emulator, gateway, POSITION_LIMIT)
    client = world.gateway.client()
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
    # A live spot order has no position the exchange could report: refused with the reason.
    live = client.post("/side/api/v3/order", data=market)
    assert live.status_code == 200  # ``side`` has no position rule
    bought = client.post("/pp/api/v3/order", data=market)  # about 600 USDT
    assert bought.status_code == 200, bought.text
    assert bought.json()["status"] == "FILLED"
    refused = client.post("/pp/api/v3/order", data=market)  # about 600 more: over 1,000
    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "max_position_notional"
    assert "would be 1" in refused.json()["detail"]
    small = client.post("/pp/api/v3/order", data={**market, "quantity": "0.005"})
    assert small.status_code == 200, small.text  # about 900 in all
    assert _asked_for_facts(world) == []
