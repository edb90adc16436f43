"""``keybroker serve`` restarted, or killed with SIGKILL mid-run: nonces, halts and the audit hold.

Each gateway here is a real ``keybroker serve`` process. A Kraken-style
credential (nonce in the signed body) points at a recording server on
127.0.0.1, which keeps every nonce the gateway signed; Binance orders go to
the emulator, whose journal lists every order it accepted. After a SIGKILL,
``keybroker audit verify`` runs as its own process, as a user would run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_testkit import (
    LIMIT_BUY,
    PASSPHRASE,
    TRADER,
    Serve,
    StartEmulator,
    make_vault,
    new_token,
)
from recording_server import RecordingServer

from keybroker.audit import read_rows
from keybroker.gateway.nonces import BLOCK
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

KRAKEN_SECRET = "dGVzdC1rcmFrZW4tc2VjcmV0LW5vdC1yZWFsLUNBTkFSWQ=="  # base64 of an obvious fake
KRAKEN_POLICY = Policy(scopes=("read", "trade"), symbols=("XBTUSD",))
KRAKEN_ORDER = {
    "pair": "XBTUSD",
    "type": "buy",
    "ordertype": "limit",
    "price": "20000",
    "volume": "0.001",
}


@pytest.fixture
def processes() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for one in started:
        if one.process.poll() is None:
            one.kill()


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    yield server
    server.stop()


def keybroker(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m keybroker --home HOME ARGS`` with the passphrase in the environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYBROKER_")}
    environment["KEYBROKER_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "keybroker", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def _kraken_home(tmp_path: Path, url: str) -> tuple[Path, str]:
    home = tmp_path / "home"
    vault = make_vault(home, {})
    vault.add(
        "kr",
        "kraken",
        KeyMaterial("test-kraken-key-not-real", Secret(KRAKEN_SECRET)),
        base_url=url,
        scopes=("read", "trade"),
    )
    vault.set_policy("kr", KRAKEN_POLICY.to_json())
    token = new_token(vault, "bot1", ["kr"])
    vault.close()
    return home, token


def _balances(gateway: Serve, token: str, count: int) -> None:
    with httpx.Client(base_url=gateway.url, headers={"X-Keybroker-Token": token}) as client:
        for _ in range(count):
            response = client.post("/kr/0/private/Balance", data={"nonce": "1"})
            assert response.status_code == 200, response.text


def _nonces(recorder: RecordingServer, since: int) -> list[int]:
    return [int(r.form()["nonce"][0]) for r in recorder.received()[since:]]


def test_nonces_and_halts_survive_a_restart_and_a_sigkill(
    tmp_path: Path, recorder: RecordingServer, processes: list[Serve]
) -> None:
    home, token = _kraken_home(tmp_path, recorder.url)
    first = Serve(home)
    processes.append(first)
    _balances(first, token, 5)
    before = _nonces(recorder, 0)
    assert len(before) == 5 and before == sorted(set(before))
    assert all(n != 1 for n in before)  # the bot's own nonce was replaced

    # `keybroker halt` from another process, while the gateway runs.
    halted = keybroker(home, "halt", "kr", "--reason", "restart test")
    assert halted.returncode == 0, halted.stderr
    headers = {"X-Keybroker-Token": token}
    denied = httpx.post(f"{first.url}/kr/0/private/AddOrder", data=KRAKEN_ORDER, headers=headers)
    assert denied.status_code == 403 and denied.json()["rule"] == "kill_switch"
    first.stop()

    restarted_at = time.time()
    second = Serve(home)
    processes.append(second)
    _balances(second, token, 3)
    after = _nonces(recorder, len(before))
    assert after == sorted(set(after)) and after[0] > before[-1]
    # Faster than a block's worth of milliseconds, the clock alone cannot explain the
    # jump: the second gateway started above the first one's durable ceiling.
    if (time.time() - restarted_at) * 1000 < BLOCK:
        assert after[0] >= before[0] + BLOCK, (before, after)
    again = httpx.post(f"{second.url}/kr/0/private/AddOrder", data=KRAKEN_ORDER, headers=headers)
    assert again.status_code == 403 and again.json()["rule"] == "kill_switch"

    second.kill()  # no shutdown code runs
    third = Serve(home)
    processes.append(third)
    _balances(third, token, 3)
    last = _nonces(recorder, len(before) + len(after))
    assert last[0] > after[-1] and last == sorted(set(last))
    still = httpx.post(f"{third.url}/kr/0/private/AddOrder", data=KRAKEN_ORDER, headers=headers)
    assert still.status_code == 403 and still.json()["rule"] == "kill_switch"
    third.stop()

    # No order ever left; every nonce the exchange saw was new.
    sent = recorder.received()
    assert all(not r.path.endswith("/AddOrder") for r in sent)
    every = _nonces(recorder, 0)
    assert every == sorted(set(every))


def test_sigkill_mid_run_leaves_a_verifiable_audit_with_every_order_intended(
    tmp_path: Path, emulator: StartEmulator, processes: list[Serve]
) -> None:
    exchange = emulator("binance")
    home = tmp_path / "home"
    vault = make_vault(home, {"bn": ("binance", exchange.url)}, policies={"bn": TRADER})
    token = new_token(vault, "bot1", ["bn"])
    vault.close()
    gateway = Serve(home)
    processes.append(gateway)

    stop = threading.Event()
    answered: list[int] = []
    errors: list[str] = []

    def bot() -> None:
        with httpx.Client(
            base_url=gateway.url, headers={"X-Keybroker-Token": token}, timeout=10
        ) as client:
            while not stop.is_set():
                try:
                    answered.append(client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code)
                except httpx.HTTPError as error:  # the gateway died under us
                    errors.append(type(error).__name__)
                    return

    bots = [threading.Thread(target=bot) for _ in range(6)]
    for thread in bots:
        thread.start()
    deadline = time.monotonic() + 20
    while len(exchange.orders()) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    gateway.kill()  # in the middle of the run: requests are in flight
    stop.set()
    for thread in bots:
        thread.join(timeout=15)

    assert len(exchange.orders()) >= 40
    assert errors, "the kill interrupted no request"
    assert set(answered) == {200}

    verified = keybroker(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    intents = {
        row.row.client_order_id for row in read_rows(home / "audit.db") if row.row.kind == "intent"
    }
    placed = [str(order["client_order_id"]) for order in exchange.orders()]
    assert len(set(placed)) == len(placed)
    missing = [cid for cid in placed if cid not in intents]
    assert missing == [], f"{len(missing)} orders at the exchange have no intent row"

    # A new gateway on the same home starts, appends to the same chain, and verifies.
    again = Serve(home)
    processes.append(again)
    response = httpx.post(
        f"{again.url}/bn/api/v3/order", data=LIMIT_BUY, headers={"X-Keybroker-Token": token}
    )
    assert response.status_code == 200
    again.stop()
    assert keybroker(home, "audit", "verify").returncode == 0
