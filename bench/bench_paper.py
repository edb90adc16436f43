"""Paper trading: the fill decision per order, and 45 bots at one order a second each.

    $ python bench/bench_paper.py                  # about 45 seconds, offline
    $ python bench/bench_paper.py --seconds 60     # a longer sustained run
    $ python bench/bench_paper.py --decision-only  # part 1 alone, a few seconds

Part 1 times the paper venue's fill decision in this process, market data
excluded: walking a 50-level book (``fills.take`` via ``desk.decide``), and
the same plus recording the order, its fills and balances in a real WAL ledger
file (``Ledger.place``, one committed transaction, ``synchronous=NORMAL``: no
fsync per commit, see ``paper/ledger.py``). Both are printed against the
target (median under 200 µs per order), beside the floor on this machine: the
smallest durable SQLite commit (one row, one transaction, same settings),
timed in the same run, so the ratio holds when the machine is busy.

Part 2 runs the Binance emulator and a gateway (``create_app`` on uvicorn),
each in a child process, with 45 keyless paper credentials; 45 bots each send
one order a second (market buy, resting limit buy, market sell in turn) for
``--seconds``. Printed: orders answered per second against the 45 offered,
round-trip median and p99, any non-200 answers, the trade poller's fills,
and whether every ledger is consistent at the end. The gateway's limiter gets
Binance's 2026 spot budget (6,000 weight a minute; keybroker's default is
seed 001's 1,200) and the emulator a matching one. No key is real; there is
none at all.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx

from keybroker.crypto.kdf import Argon2idParams
from keybroker.emulator.market import Market, default_spot_instruments
from keybroker.paper import Ledger, keyless_material
from keybroker.paper.desk import decide
from keybroker.paper.model import Book, Fees, Instrument, Level, NewOrder
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import Vault

PASSPHRASE = "bench vault passphrase, not real"
BOTS = 45
FEES = Fees(Decimal("0.001"), Decimal("0.001"))
TARGET_US = 200

# -- part 1: the fill decision ---------------------------------------------------------------


def _book() -> tuple[Book, Instrument]:
    spec = default_spot_instruments("binance")[0]
    market = Market(spec, seed=7)
    bids, asks = market.book(50)
    book = Book(
        tuple(Level(level.price, level.qty) for level in bids),
        tuple(Level(level.price, level.qty) for level in asks),
    )
    return book, Instrument(spec.symbol, spec.base, spec.quote, step_size=spec.step_size)


def bench_decision(orders: int = 6000) -> None:
    book, instrument = _book()
    shapes = (
        NewOrder("BTCUSDT", "buy", "market", Decimal("0.8")),  # walks about four levels
        NewOrder("BTCUSDT", "buy", "limit", Decimal("0.01"), price=Decimal(59000)),  # rests
        NewOrder("BTCUSDT", "sell", "market", Decimal("0.5")),
    )
    decide_us: list[float] = []
    record_us: list[float] = []
    floor_us: list[float] = []
    with tempfile.TemporaryDirectory() as home:
        ledger = Ledger.open(Path(home) / "paper.db")
        durability = ledger.durability()
        ledger.reset(
            "bench",
            "binance",
            "testnet",
            {"USDT": Decimal(10**12), "BTC": Decimal(10**6)},
            now_ms=0,
            fees=FEES,
        )
        floor = _floor_db(Path(home) / "floor.db")
        for n in range(orders):
            # Each with a client order id, as the gateway gives every order (its duplicate
            # check is one of the ledger's statements).
            order = dataclasses.replace(shapes[n % len(shapes)], client_order_id=f"kb{n:030d}")
            started = time.perf_counter()
            plan, rests = decide(order, book, instrument.step_size)
            decided = time.perf_counter()
            ledger.place(
                "bench",
                order,
                instrument,
                taken=plan,
                rests=rests,
                fees=FEES,
                mid=book.mid,
                now_ms=n,
                market_url="http://bench",
            )
            done = time.perf_counter()
            floor.execute("BEGIN IMMEDIATE")
            floor.execute("INSERT INTO t (a, b) VALUES (?, ?)", ("BTCUSDT", str(n)))
            floor.execute("COMMIT")
            floored = time.perf_counter()
            if n >= 300:  # warm-up
                decide_us.append((decided - started) * 1e6)
                record_us.append((done - started) * 1e6)
                floor_us.append((floored - done) * 1e6)
        problems = ledger.check("bench")
        ledger.close()
        floor.close()
    print(
        f"part 1: paper fill decision, {len(decide_us)} orders (market data excluded); "
        f"ledger journal_mode={durability['journal_mode']}, "
        f"synchronous={durability['synchronous']}"
    )
    print(f"  {'':<34} {'median':>9} {'p99':>10}   target: median < {TARGET_US} µs")
    _row("fill decision (walk the book)", decide_us)
    _row("decision + durable ledger commit", record_us)
    _row("floor: smallest SQLite commit", floor_us, verdict=False)
    ratio = statistics.median(record_us) / statistics.median(floor_us)
    print(
        f"  decision + commit = {ratio:.1f}x the smallest commit on this machine now; "
        f"ledger consistent: {not problems}"
    )


def _floor_db(path: Path) -> sqlite3.Connection:
    # The cheapest durable write SQLite offers with the ledger's own settings.
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT, b TEXT)")
    return db


def _row(label: str, samples: list[float], *, verdict: bool = True) -> None:
    ordered = sorted(samples)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    median = statistics.median(samples)
    met = ("met" if median < TARGET_US else "NOT met") if verdict else ""
    print(f"  {label:<34} {median:7.1f} µs {p99:8.1f} µs   {met}")


# -- part 2: 45 bots through a gateway -----------------------------------------------------

_EMULATOR = """
import sys
from keybroker.emulator import ApiKey, EmulatorConfig, create_app, serve_in_thread
from keybroker.secret import Secret
key = ApiKey("bench-binance-key-not-real", Secret("bench-binance-secret-not-real"))
url, stop = serve_in_thread(create_app("binance", [key], EmulatorConfig(weight_limit=10**9)))
print(url, flush=True)
sys.stdin.read()
stop()
"""

_GATEWAY = """
import json, os, sys
from pathlib import Path
from keybroker.gateway import GatewayConfig, create_app, serve_in_thread
from keybroker.ratelimit import MemoryLimiter
from keybroker.secret import Secret
from keybroker.vault import Vault
settings = json.loads(sys.argv[1])
vault = Vault.open(Path(settings["vault"]))
vault.unlock(Secret(os.environ["BENCH_PASSPHRASE"]))
config = GatewayConfig(audit_path=Path(settings["audit"]), paper_poll_s=1.0)
limiter = MemoryLimiter(limit_overrides={"binance:REQUEST_WEIGHT": 6000})
running = serve_in_thread(create_app(vault, config, limiter=limiter))
print(running.url, flush=True)
sys.stdin.read()
running.stop()
vault.close()
"""


@dataclass
class Child:
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> Child:
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit("a server did not start")
    return Child(url, process)


@dataclass
class Tally:
    latencies_ms: list[float]
    statuses: dict[int, int]
    sent: int = 0


async def _bot(
    client: httpx.AsyncClient, name: str, token: str, seconds: float, tally: Tally
) -> None:
    orders = (
        {"side": "BUY", "type": "MARKET", "quantity": "0.001"},
        {
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.001",
            "price": "59950",
        },
        {"side": "SELL", "type": "MARKET", "quantity": "0.0005"},
    )
    await asyncio.sleep(random.random())  # bots do not start in step
    start = time.monotonic()
    count = 0
    while time.monotonic() - start < seconds:
        fields = {"symbol": "BTCUSDT", **orders[count % len(orders)]}
        count += 1
        began = time.perf_counter()
        tally.sent += 1
        answer = await client.post(
            f"/{name}/api/v3/order", data=fields, headers={"X-Keybroker-Token": token}
        )
        tally.latencies_ms.append((time.perf_counter() - began) * 1000)
        tally.statuses[answer.status_code] = tally.statuses.get(answer.status_code, 0) + 1
        next_at = start + count  # one order a second, on schedule
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def _drive(url: str, tokens: dict[str, str], seconds: float, exchange_url: str) -> Tally:
    tally = Tally([], {})
    limits = httpx.Limits(max_connections=BOTS + 5)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        mover = asyncio.create_task(_move_market(exchange_url, seconds))
        await asyncio.gather(*(_bot(client, n, t, seconds, tally) for n, t in tokens.items()))
        await mover
    return tally


async def _move_market(exchange_url: str, seconds: float) -> None:
    # The emulator's market moves only when told: step it (new book, new trades) every second.
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(int(seconds)):
            await asyncio.sleep(1)
            await client.post(
                f"{exchange_url}/__emulator__/market", json={"symbol": "BTCUSDT", "steps": 1}
            )


def bench_bots(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        home = Path(directory)
        exchange = _child(_EMULATOR)
        vault = Vault.create(
            home / "vault.db",
            Secret(PASSPHRASE),
            kdf=Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1),
        )
        policy = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",), mode="paper")
        tokens: dict[str, str] = {}
        ledger = Ledger.open(home / "paper.db")
        for n in range(BOTS):
            name = f"paper{n:02d}"
            vault.add(
                name, "binance", keyless_material(needs_passphrase=False), base_url=exchange.url
            )
            vault.set_policy(name, policy.to_json())
            secret, _ = vault.create_token(
                f"bot{n:02d}", [name], expires_at=None, max_orders_per_minute=None
            )
            tokens[name] = secret.reveal_text()
            ledger.reset(
                name,
                "binance",
                "testnet",
                {"USDT": Decimal(100_000)},
                now_ms=time.time_ns() // 1_000_000,
                fees=FEES,
            )
        ledger.close()
        vault.close()
        settings = json.dumps({"vault": str(home / "vault.db"), "audit": str(home / "audit.db")})
        gateway = _child(_GATEWAY, settings, env={"BENCH_PASSPHRASE": PASSPHRASE})
        try:
            began = time.monotonic()
            tally = asyncio.run(_drive(gateway.url, tokens, seconds, exchange.url))
            elapsed = time.monotonic() - began
        finally:
            gateway.stop()
            exchange.stop()
        ledger = Ledger.open(home / "paper.db")
        consistent = all(not ledger.check(name) for name in tokens)
        maker = sum(1 for name in tokens for f in ledger.fills(name) if f.is_maker)
        fills = sum(len(ledger.fills(name)) for name in tokens)
        ledger.close()
    ok = tally.statuses.get(200, 0)
    ordered = sorted(tally.latencies_ms)
    print(
        f"part 2: {BOTS} paper bots, one order a second each, {seconds:.0f} s "
        "(emulator and gateway in child processes)"
    )
    print(
        f"  answered 200: {ok} of {tally.sent} sent -> {ok / elapsed:.1f} orders/s "
        f"(offered {BOTS}/s); other statuses: "
        f"{ {k: v for k, v in tally.statuses.items() if k != 200} or 'none' }"
    )
    print(
        f"  round trip through the gateway: median {statistics.median(ordered):.1f} ms, "
        f"p99 {ordered[int(len(ordered) * 0.99) - 1]:.1f} ms"
    )
    print(
        f"  fills recorded: {fills} ({maker} maker fills by the trade poller); "
        f"every ledger consistent: {consistent}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--decision-only", action="store_true", help="part 1 only (a few seconds), no bots"
    )
    arguments = parser.parse_args()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores "
        "(a shared machine: numbers vary between runs)"
    )
    bench_decision()
    if arguments.decision_only:
        return
    print()
    bench_bots(arguments.seconds)


if __name__ == "__main__":
    main()
