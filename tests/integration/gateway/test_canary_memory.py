"""The canary: after a bot traded through the gateway, the secret is nowhere it should not be.

A ``keybroker serve`` process signs with a credential whose secret carries
the marker CANARY. A bot, in its own process, trades through the gateway
with nothing but its token (the adapter with ``gateway_config``, plus raw
HTTP for a withdrawal and the answers' bytes). Afterwards the secret and the
vault passphrase must be in no log (gateway and bot output), no audit row
(nor the audit database's bytes), no HTTP answer, and not in the bot's
memory, read through ``/proc/<pid>/mem`` while the bot is still alive.

A scan that finds nothing proves nothing unless it can find something, so
the same scan must find (a) a canary handed at run time to a control
process, and (b) the bot's own token in the bot's memory.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_testkit import (
    BINANCE_SECRET,
    PASSPHRASE,
    TRADER,
    StartEmulator,
    make_vault,
    new_token,
    serve_process,
)

from keybroker.audit import read_rows, verify_chain

CANARIES = (BINANCE_SECRET.encode(), PASSPHRASE.encode())

_MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4})")
_CHUNK = 1 << 20


def scan_memory(pid: int, needles: tuple[bytes, ...]) -> tuple[set[bytes], int]:
    """(needles found, bytes read) over every readable mapping of process ``pid``.

    Regions are read in 1 MiB chunks that overlap by the longest needle, so a
    needle split across a chunk edge is still found. Regions the kernel will
    not hand out (``[vvar]``, guard pages) are skipped; PermissionError on
    opening ``mem`` is left to the caller, which then knows ptrace is refused.
    """
    found: set[bytes] = set()
    overlap = max(len(n) for n in needles) - 1
    total = 0
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        match = _MAPS_LINE.match(line)
        if match and match.group(3).startswith("r"):
            regions.append((int(match.group(1), 16), int(match.group(2), 16)))
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for start, end in regions:
            tail = b""
            position = start
            while position < end:
                try:
                    memory.seek(position)
                    chunk = memory.read(min(_CHUNK, end - position))
                except (OSError, OverflowError):
                    break
                if not chunk:
                    break
                total += len(chunk)
                window = tail + chunk
                found.update(needle for needle in needles if needle in window)
                tail = window[-overlap:] if overlap else b""
                position += len(chunk)
    return found, total


# The bot: only the gateway's URL and its token (KEYBROKER_GATEWAY_URL, KEYBROKER_TOKEN).
# It trades with the adapter, sends a withdrawal and reads raw answers, prints every
# answer's bytes, then waits on stdin so that its memory can be read while it lives.
_BOT = r"""
import json, os, sys
import httpx
from keybroker import BinanceAdapter, ExchangeError, gateway_config

url, token = os.environ["KEYBROKER_GATEWAY_URL"], os.environ["KEYBROKER_TOKEN"]
answers = []
with BinanceAdapter(gateway_config("bn", exchange="binance")) as bot:
    balances = bot.balances()
    orders = [bot.place_order("BTCUSDT", "buy", "limit", "0.001", str(50000 + i)) for i in range(5)]
    open_ids = [o.order_id for o in bot.open_orders("BTCUSDT")]
    for order in orders[:3]:
        bot.cancel_order("BTCUSDT", order_id=order.order_id)
    try:
        bot.place_order("BTCUSDT", "buy", "limit", "1", "50000")
        denied = None
    except ExchangeError as error:
        denied = error.code
with httpx.Client(base_url=f"{url}/bn", headers={"X-Keybroker-Token": token}) as raw:
    for method, path, data in (
        ("GET", "/api/v3/account", None),
        ("GET", "/api/v3/openOrders?symbol=BTCUSDT", None),
        ("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                   "timeInForce": "GTC", "quantity": "0.001", "price": "49000"}),
        ("POST", "/sapi/v1/capital/withdraw/apply", {"coin": "BTC", "amount": "1",
                                                     "address": "test-address-not-real"}),
    ):
        response = raw.request(method, path, data=data)
        answers.append({"status": response.status_code, "headers": dict(response.headers),
                        "body": response.text})
print(json.dumps({"orders": len(orders), "open": len(open_ids), "denied": denied,
                  "answers": answers}))
print("ready", flush=True)
sys.stdin.readline()
"""

# The control: holds a canary it read from stdin (never in its argv or environment).
_CONTROL = r"""
import sys
held = sys.stdin.readline().strip().encode()
kept = [bytes(held), held.decode()]
print("ready", flush=True)
sys.stdin.readline()
"""


def _clean_env(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYBROKER_")}
    return {**environment, **extra}


def _start(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)


def _readable_or_skip(pid: int) -> None:
    """Skip (with the reason) only when even the control's memory cannot be read."""
    try:
        with open(f"/proc/{pid}/mem", "rb") as memory:
            memory.read(0)
    except PermissionError as error:
        pytest.skip(f"the kernel refuses /proc/<pid>/mem of a child process here: {error}")


def test_the_scan_finds_a_canary_a_process_holds(children: list[subprocess.Popen[str]]) -> None:
    control = _start(_CONTROL, _clean_env())
    children.append(control)
    assert control.stdin is not None and control.stdout is not None
    control.stdin.write(BINANCE_SECRET + "\n")
    control.stdin.flush()
    assert control.stdout.readline().strip() == "ready"
    _readable_or_skip(control.pid)
    found, read = scan_memory(control.pid, CANARIES)
    assert BINANCE_SECRET.encode() in found, f"scan read {read} bytes and missed the canary"
    assert PASSPHRASE.encode() not in found  # and it does not find what is not there


@pytest.mark.slow
def test_the_bot_never_holds_the_secret(
    tmp_path: Path, emulator: StartEmulator, children: list[subprocess.Popen[str]]
) -> None:
    exchange = emulator("binance")
    home = tmp_path / "home"
    vault = make_vault(home, {"bn": ("binance", exchange.url)}, policies={"bn": TRADER})
    token = new_token(vault, "canary-bot", ["bn"])
    vault.close()

    gateway = serve_process(home, "--port", "0")
    children.append(gateway)
    assert gateway.stdout is not None
    url = gateway.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), gateway.stderr.read() if gateway.stderr else ""

    bot = _start(_BOT, _clean_env(KEYBROKER_GATEWAY_URL=url, KEYBROKER_TOKEN=token))
    children.append(bot)
    assert bot.stdout is not None and bot.stdin is not None
    report_line = bot.stdout.readline()
    ready = bot.stdout.readline().strip()
    if ready != "ready":
        bot.kill()
        _, err = bot.communicate(timeout=10)
        raise AssertionError(f"the bot failed: {err}")
    report = json.loads(report_line)
    assert report["orders"] == 5 and report["open"] == 5
    assert report["denied"] == "PolicyDenied"
    statuses = [answer["status"] for answer in report["answers"]]
    assert statuses == [200, 200, 200, 403]
    assert len(exchange.orders()) == 6  # the adapter's five and the raw one; no withdrawal
    assert exchange.requests_to("/sapi/v1/capital/withdraw/apply") == []

    # The bot's memory, read while it lives: its token is there (the scan works on it),
    # the exchange secret and the vault passphrase are not (it never held them).
    _readable_or_skip(bot.pid)
    found, read = scan_memory(bot.pid, (*CANARIES, token.encode()))
    assert read > 1_000_000
    assert token.encode() in found, "the scan could not even find the bot's own token"
    assert [c for c in CANARIES if c in found] == [], "the bot's memory holds the secret"

    bot.stdin.write("\n")
    bot.stdin.flush()
    bot_out, bot_err = bot.communicate(timeout=15)
    os.killpg(gateway.pid, signal.SIGTERM)
    gateway_out, gateway_err = gateway.communicate(timeout=15)

    texts = {
        "bot output": (report_line + bot_out + bot_err).encode(),
        "gateway output": (url + gateway_out + gateway_err).encode(),
        "answers": json.dumps(report["answers"]).encode(),
    }
    rows = read_rows(home / "audit.db")
    assert [r.row.kind for r in rows].count("intent") >= 6
    texts["audit rows"] = json.dumps([r.to_dict() for r in rows], default=str).encode()
    for path in sorted(home.iterdir()):
        if path.name.startswith("audit.db"):
            texts[path.name] = path.read_bytes()
    for where, data in texts.items():
        for canary in CANARIES:
            assert canary not in data, f"a canary is in the {where}"
        if where != "bot output":  # the bot may print its own token; nothing else may
            assert token.encode() not in data, f"the bot token is in the {where}"
    assert verify_chain(home / "audit.db").ok
