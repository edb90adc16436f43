"""De-duplication of public GETs, and orders after an ambiguous failure: looked up, never resent."""

from __future__ import annotations

import concurrent.futures
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

from keybroker.emulator import EmulatorConfig, FaultSpec


def _slow_world(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, faults: str, **config: object
) -> World:
    exchange = emulator("binance", EmulatorConfig(faults=FaultSpec.parse(faults)))
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    return World(exchange, gateway(vault, new_token(vault, "bot1", ["bn"]), **config))


def test_identical_concurrent_public_gets_go_upstream_once(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _slow_world(tmp_path, emulator, gateway, "latency=300ms")
    client = world.gateway.client()
    path = "/bn/api/v3/ticker/price?symbol=BTCUSDT"
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: client.get(path), range(20)))
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    assert len(world.exchange.requests_to("/api/v3/ticker/price")) == 1
    assert client.get("/_/status").json()["deduplicated"] == 19


def test_different_public_gets_are_not_merged(world: World) -> None:
    client = world.gateway.client()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda symbol: client.get(f"/bn/api/v3/ticker/price?symbol={symbol}"),
                ["BTCUSDT", "ETHUSDT", "BTCUSDT&x=1", "ETHUSDT&x=1"],
            )
        )
    assert len(world.exchange.requests_to("/api/v3/ticker/price")) == 4


def test_private_gets_are_never_shared(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _slow_world(tmp_path, emulator, gateway, "latency=200ms")
    client = world.gateway.client()
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: client.get("/bn/api/v3/account"), range(3)))
    assert len(world.exchange.requests_to("/api/v3/account")) == 3


def test_an_order_whose_answer_was_lost_is_found_by_its_client_order_id(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    # The emulator places the order, then closes the connection without answering.
    world = _slow_world(
        tmp_path, emulator, gateway, "drop_after_process=1,scope=orders", lookup_pause_s=0.05
    )
    response = world.gateway.client().post("/bn/api/v3/order", data=LIMIT_BUY)
    assert response.status_code == 200, response.text
    assert response.headers["x-keybroker-order-lookup"] == "found"
    found = response.json()
    assert found["clientOrderId"].startswith("kb") and found["status"] == "NEW"
    # One order sent, never resent; one lookup by client order id.
    assert len(world.exchange.requests_to("/api/v3/order", "POST")) == 1
    (lookup,) = world.exchange.requests_to("/api/v3/order", "GET")
    assert lookup["params"]["origClientOrderId"] == found["clientOrderId"]
    (result,) = world.gateway.rows("result")
    assert result.row.detail == "order lookup: found"


def test_an_order_without_an_answer_that_is_not_found_is_reported_unknown(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    # The emulator holds the order unprocessed past the gateway's timeout.
    world = _slow_world(
        tmp_path,
        emulator,
        gateway,
        "timeout=1,hang=2s,scope=orders",
        upstream_timeout_s=0.5,
        lookup_pause_s=0.05,
    )
    response = world.gateway.client().post("/bn/api/v3/order", data=LIMIT_BUY)
    assert response.status_code == 504
    body = response.json()
    assert body["error"] == "order_outcome_unknown"
    (client_id,) = body["client_order_ids"]
    assert client_id.startswith("kb")
    posts = world.exchange.requests_to("/api/v3/order", "POST")
    assert len(posts) == 1  # never resent by the gateway
    lookups = world.exchange.requests_to("/api/v3/order", "GET")
    assert lookups and all(e["params"]["origClientOrderId"] == client_id for e in lookups)
    assert world.exchange.orders() == []
    (result,) = world.gateway.rows("result")
    assert result.row.detail is not None and "order lookup: absent" in result.row.detail


def test_reads_are_retried_after_a_5xx_orders_are_not(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = _slow_world(
        tmp_path,
        emulator,
        gateway,
        "error5xx=1,scope=private",
        retry_backoff_s=0.01,
        lookup_pause_s=0.01,
    )
    client = world.gateway.client()
    read = client.get("/bn/api/v3/account")
    assert read.status_code >= 500  # the exchange's own 5xx, after the retries
    assert len(world.exchange.requests_to("/api/v3/account")) == 3  # 1 + 2 retries
    order = client.post("/bn/api/v3/order", data=LIMIT_BUY)
    assert order.status_code >= 500
    assert order.headers["x-keybroker-order-lookup"] == "unknown"  # the lookup got 5xx too
    assert len(world.exchange.requests_to("/api/v3/order", "POST")) == 1
