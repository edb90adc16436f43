"""A real ``keybroker serve`` killed with SIGKILL while paper orders are being filled.

Six bots send market buys, market sells and resting limit orders as fast as
the gateway answers; the process is killed twice in the middle of that, and
restarted once. After each kill the ledger must be exactly consistent
(balances equal starting balances plus fills, locked funds equal what open
orders reserve, each order's executed amounts equal its fills), SQLite must
find the file intact, and every order a bot was told about must be there.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_testkit import StartEmulator, make_vault, new_token, wait_until
from paper_testkit import PAPER, START, reset
from test_restart_and_crash import Serve

from keybroker.paper import Ledger

ORDERS = (
    {"side": "BUY", "type": "MARKET", "quantity": "0.05"},
    {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01", "price": "59000"},
    {"side": "SELL", "type": "MARKET", "quantity": "0.02"},
)


@pytest.fixture
def processes() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for one in started:
        if one.process.poll() is None:
            one.kill()


@pytest.mark.slow
def test_a_gateway_killed_mid_fill_leaves_the_ledger_consistent(
    tmp_path: Path, emulator: StartEmulator, processes: list[Serve]
) -> None:
    exchange = emulator("binance")
    home = tmp_path / "home"
    vault = make_vault(home, {"pp": ("binance", exchange.url)}, policies={"pp": PAPER})
    token = new_token(vault, "bot1", ["pp"])
    vault.close()
    reset(home, "pp", "binance", START)
    answered: list[int] = []

    for round_number in (1, 2):
        serve = Serve(home)
        processes.append(serve)
        stop = threading.Event()

        def bot(offset: int, url: str = serve.url, stop: threading.Event = stop) -> None:
            headers = {"X-Keybroker-Token": token}
            with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
                count = offset
                while not stop.is_set():
                    count += 1
                    fields = {"symbol": "BTCUSDT", **ORDERS[count % len(ORDERS)]}
                    try:
                        answer = client.post("/pp/api/v3/order", data=fields)
                    except httpx.TransportError:
                        return  # killed under us: the answer never came
                    if answer.status_code == 200:
                        answered.append(answer.json()["orderId"])

        bots = [threading.Thread(target=bot, args=(i,)) for i in range(6)]
        for thread in bots:
            thread.start()
        assert wait_until(lambda n=round_number: len(answered) >= 15 * n, timeout=30)
        serve.kill()  # SIGKILL, while the bots keep sending
        stop.set()
        for thread in bots:
            thread.join(timeout=15)

        with sqlite3.connect(home / "paper.db") as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ledger = Ledger.open(home / "paper.db")
        try:
            assert ledger.check("pp") == []
            recorded = {order.order_id for order in ledger.orders("pp", limit=100_000)}
            assert set(answered) <= recorded
            assert any(order.is_open for order in ledger.orders("pp", state="open"))
        finally:
            ledger.close()
    assert [e for e in exchange.journal() if e["kind"] in ("order", "cancel")] == []
