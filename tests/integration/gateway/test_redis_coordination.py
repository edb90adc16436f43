"""Two gateways (create_app, in threads) on copies of one vault share order counts through Redis.

The process-level tests (test_redis_gateways.py) show halts, revocations,
budgets, nonces and failure; these are the cheaper checks of the counters
behind per-minute and per-day policy rules, and of what /_/status and the
logs say (never the store's password).
"""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from gateway_testkit import (
    LIMIT_BUY,
    PASSPHRASE,
    StartEmulator,
    StartGateway,
    make_vault,
    new_token,
    serve_process,
)

from keybroker.gateway import GatewayConfig
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import Vault
from redis_server import PASSWORD, RedisServer

COUNTED = Policy(
    scopes=("read", "trade"),
    symbols=("BTCUSDT",),
    max_notional=Decimal(5000),
    max_orders_per_minute=4,
    daily_notional=Decimal(400),
)


def two_hosts(tmp_path: Path, exchange_url: str, **token: int | None) -> tuple[Vault, Vault, str]:
    """A vault with credential ``bn`` and bot1's token, and a copy of it (another host's)."""
    first = make_vault(tmp_path / "a", {"bn": ("binance", exchange_url)}, policies={"bn": COUNTED})
    secret = new_token(first, "bot1", ["bn"], **token)  # type: ignore[arg-type]
    first.close()  # folds the write-ahead log into the file before it is copied
    (tmp_path / "b").mkdir(mode=0o700)
    shutil.copyfile(tmp_path / "a" / "vault.db", tmp_path / "b" / "vault.db")
    (tmp_path / "b" / "vault.db").chmod(0o600)
    vaults = [Vault.open(tmp_path / host / "vault.db") for host in ("a", "b")]
    for vault in vaults:
        vault.unlock(Secret(PASSPHRASE))
    return vaults[0], vaults[1], secret


def small_order(price: str = "50000") -> dict[str, str]:
    return {**LIMIT_BUY, "quantity": "0.001", "price": price}  # 50 USDT each


def test_the_credentials_order_count_and_daily_notional_hold_across_gateways(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    first, second, token = two_hosts(tmp_path, exchange.url)
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    a = gateway(first, token, **shared).client()
    b = gateway(second, token, **shared).client()
    answers = [(a if i % 2 else b).post("/bn/api/v3/order", data=small_order()) for i in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200, 403]
    assert answers[4].json()["rule"] == "max_orders_per_minute"
    assert "placed 4 orders" in answers[4].json()["detail"]
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 4


def test_the_daily_notional_holds_across_gateways(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    first, second, token = two_hosts(tmp_path, exchange.url)
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    a = gateway(first, token, **shared).client()
    b = gateway(second, token, **shared).client()
    # 3 x 100 USDT on one gateway, then 150 more on the other: over the day's 400
    for _ in range(3):
        assert a.post("/bn/api/v3/order", data=small_order("100000")).status_code == 200
    over = b.post("/bn/api/v3/order", data={**small_order("100000"), "quantity": "0.0015"})
    assert over.status_code == 403 and over.json()["rule"] == "daily_notional", over.text


def test_a_bots_own_order_limit_holds_across_gateways(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    first, second, token = two_hosts(tmp_path, exchange.url, max_orders_per_minute=2)
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    a = gateway(first, token, **shared).client()
    b = gateway(second, token, **shared).client()
    assert a.post("/bn/api/v3/order", data=small_order()).status_code == 200
    assert b.post("/bn/api/v3/order", data=small_order()).status_code == 200
    third = a.post("/bn/api/v3/order", data=small_order())
    assert third.status_code == 403 and "this bot token placed 2" in third.json()["detail"]


def test_status_shows_the_store_without_its_password(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    first, _, token = two_hosts(tmp_path, exchange.url)
    config = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    served = gateway(first, token, **config)
    status = served.client().get("/_/status")
    assert status.json()["coordination"] == {
        "backend": "redis",
        "store": f"redis://***@127.0.0.1:{redis_clean.port}/0",
        "available": True,
        "since": status.json()["coordination"]["since"],
        "gateways": 2,
        "last_error": None,
    }
    metrics = served.client().get("/_/metrics").text
    for text in (status.text, metrics, repr(GatewayConfig(tmp_path / "x.db", **config))):  # type: ignore[arg-type]
        assert PASSWORD not in text


def test_without_redis_nothing_is_shared(world: object) -> None:
    status = world.gateway.client().get("/_/status").json()  # type: ignore[attr-defined]
    assert status["coordination"] == {"backend": "memory"}


def test_gateways_without_redis_is_a_usage_error(tmp_path: Path) -> None:
    process = serve_process(tmp_path, "--port", "0", "--gateways", "3")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "--redis" in err


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "redis://127.0.0.1:notaport"])
def test_a_bad_redis_url_is_refused_before_serving(tmp_path: Path, url: str) -> None:
    make_vault(tmp_path, {}).close()
    process = serve_process(tmp_path, "--port", "0", "--redis", url)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "redis" in err.lower() and "Traceback" not in err
    assert out == ""


def fire(clients: list[httpx.Client], count: int, order: dict[str, str]) -> list[httpx.Response]:
    """``count`` orders at once, spread over ``clients`` in turn (threads released together)."""
    start = threading.Barrier(count)

    def one(i: int) -> httpx.Response:
        start.wait(timeout=30)
        return clients[i % len(clients)].post("/bn/api/v3/order", data=order)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_two_gateways_taking_orders_at_once_never_pass_the_per_minute_limit_together(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    # Each order is counted in Redis in the same step that reads the count: without that,
    # both gateways read "none yet" and each lets its own 4 through.
    exchange = emulator("binance")
    first, second, token = two_hosts(tmp_path, exchange.url)
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    gateways = [gateway(first, token, **shared), gateway(second, token, **shared)]
    clients = [g.client() for g in gateways for _ in range(8)]  # 16 connections
    answers = fire(clients, 16, small_order())
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * 4 + [403] * 12, [r.text for r in answers if r.status_code != 403]
    # The refused ones' counts were taken back, but other gateways' orders may have seen
    # them first (a refusal under the day's notional too, never an order too many).
    rules = {r.json()["rule"] for r in answers if r.status_code == 403}
    assert "max_orders_per_minute" in rules and rules <= {"max_orders_per_minute", "daily_notional"}
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 4


def test_two_gateways_taking_orders_at_once_never_pass_the_daily_notional_together(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    first, second, token = two_hosts(tmp_path, exchange.url)
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    gateways = [gateway(first, token, **shared), gateway(second, token, **shared)]
    clients = [g.client() for g in gateways for _ in range(3)]
    answers = fire(clients, 6, small_order("150000"))  # 150 USDT each; 400 a day: two fit
    assert sorted(r.status_code for r in answers) == [200] * 2 + [403] * 4
    assert {r.json()["rule"] for r in answers if r.status_code == 403} == {"daily_notional"}


def test_an_order_its_policy_refused_gives_its_count_back_on_every_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    first, second, token = two_hosts(tmp_path, exchange.url)
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    a = gateway(first, token, **shared).client()
    b = gateway(second, token, **shared).client()

    def counted() -> list[int]:
        with redis_clean.client() as store:
            return [
                int(store.zcard(f"keybroker:orders:{kind}:{name}"))
                for kind, name in (("credential", "bn"), ("bot", "bot1"))
            ]

    assert a.post("/bn/api/v3/order", data=small_order()).status_code == 200
    assert counted() == [1, 1]
    too_big = b.post("/bn/api/v3/order", data={**small_order(), "quantity": "1"})  # 50,000
    assert too_big.status_code == 403 and too_big.json()["rule"] == "max_notional"
    deadline = time.monotonic() + 5  # the refund reaches Redis from a task
    while counted() != [1, 1] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted() == [1, 1]
    # Three more fit under the four a minute on either gateway, then no more.
    codes = [(a if i % 2 else b).post("/bn/api/v3/order", data=small_order()) for i in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 403]
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 4
