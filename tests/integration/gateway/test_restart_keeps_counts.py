"""A restarted gateway counts again: per-minute order limits and the daily notional cap hold.

Real ``keybroker serve`` processes, stopped with SIGTERM or killed with
SIGKILL, and a Binance emulator. The counts come back from the audit log's
intent rows (their ``order.notional``); rows of another UTC day do not count.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from gateway_testkit import LIMIT_BUY, Serve, StartEmulator, make_vault, new_token

from keybroker.audit import AuditLog, AuditRow
from keybroker.clock import FixedClock
from keybroker.gateway.activity import Activity
from keybroker.policy import Policy

# 0.001 BTC at 50,000: 50 USDT of notional per order.
DAILY = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",), daily_notional=Decimal(120))
PER_MINUTE = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",), max_orders_per_minute=2)


@pytest.fixture
def processes() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for one in started:
        if one.process.poll() is None:
            one.kill()


def _home(tmp_path: Path, url: str) -> tuple[Path, str]:
    home = tmp_path / "home"
    vault = make_vault(
        home,
        {"day": ("binance", url), "minute": ("binance", url)},
        policies={"day": DAILY, "minute": PER_MINUTE},
    )
    token = new_token(vault, "bot1", ["day", "minute"])
    vault.close()
    return home, token


def _order(gateway: Serve, token: str, credential: str, quantity: str = "0.001") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/{credential}/api/v3/order",
        data={**LIMIT_BUY, "quantity": quantity},
        headers={"X-Keybroker-Token": token},
        timeout=10,
    )


@pytest.mark.slow
def test_a_restart_resets_neither_the_daily_cap_nor_the_per_minute_limit(
    tmp_path: Path, emulator: StartEmulator, processes: list[Serve]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    first = Serve(home)
    processes.append(first)
    for credential in ("day", "day", "minute", "minute"):
        assert _order(first, token, credential).status_code == 200
    assert _order(first, token, "day").json()["rule"] == "daily_notional"
    assert _order(first, token, "minute").json()["rule"] == "max_orders_per_minute"
    first.stop()

    second = Serve(home)
    processes.append(second)
    refused = _order(second, token, "day")
    assert refused.status_code == 403 and refused.json()["rule"] == "daily_notional"
    assert "would be 150" in refused.json()["detail"]  # 100 used today, counted again
    # 100 of 120 used: a 10-USDT order still fits, then a 15-USDT one does not.
    assert _order(second, token, "day", quantity="0.0002").status_code == 200
    assert _order(second, token, "minute").json()["rule"] == "max_orders_per_minute"
    second.kill()  # no shutdown code: the intent rows are all there is

    third = Serve(home)
    processes.append(third)
    assert _order(third, token, "day", quantity="0.0003").json()["rule"] == "daily_notional"
    assert _order(third, token, "minute").json()["rule"] == "max_orders_per_minute"
    third.stop()
    assert len(exchange.orders()) == 5  # 2 + 2 + the small one


def test_rebuild_counts_today_and_the_last_minute_only(tmp_path: Path) -> None:
    day_ms = 86_400_000
    clock = FixedClock(20_000 * day_ms + 30_000)  # 30 s after a UTC midnight
    path = tmp_path / "audit.db"

    def intent(credential: str, order: dict[str, str], bot: str = "bot1") -> AuditRow:
        return AuditRow(
            "intent", bot=bot, credential=credential, request_kind="order_place", order=order
        )

    with AuditLog.open(path, clock=clock) as log:
        clock.advance(-50_000)  # yesterday, 20 s before midnight: in the last minute, not today
        log.append_sync(intent("c1", {"symbol": "BTCUSDT", "notional": "1000"}))
        clock.advance(35_000)  # today, 15 s ago
        log.append_sync(intent("c1", {"symbol": "BTCUSDT", "notional": "25.5"}))
        log.append_sync(intent("c1", {"symbol": "BTCUSDT", "batch_size": "3", "notional": "9"}))
        log.append_sync(AuditRow("intent", bot="bot1", credential="c1", request_kind="public"))
        log.append_sync(AuditRow("denied", credential="c1", request_kind="order_place"))
        # A row from before notional was recorded: priced from its own fields.
        log.append_sync(intent("c2", {"quantity": "2", "price": "10"}, bot="bot2"))
        clock.advance(15_000)

    activity = Activity(clock)
    assert activity.rebuild(path) == 4
    assert activity.daily_notional("c1") == Decimal("34.5")
    assert activity.daily_notional("c2") == Decimal(20)
    assert activity.orders_last_minute("c1") == 5  # 1 from yesterday's last minute + 1 + 3
    assert activity.bot_orders_last_minute("bot2") == 1
    assert Activity(clock).rebuild(tmp_path / "missing.db") == 0
