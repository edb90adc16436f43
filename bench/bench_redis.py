"""Gateways on one Redis: what sharing costs a request, and how many decisions one Redis makes.

    $ python bench/bench_redis.py                 # about a minute, offline; needs redis-server
    $ python bench/bench_redis.py --rounds 3 --per-round 100

Everything runs on this machine, each server in its own process: the Binance
emulator (limits off), a gateway with in-process state (the default) and a
gateway with ``--redis`` state on a local redis-server (Debian's package).
Both gateways have a real vault, a real fsync'd audit log and real signing;
rate-limit capacities are raised so that no request waits.

Printed, not asserted (targets beside the numbers):

1. Latency added to an order at ~100 orders/s: the in-process gateway and
   the Redis one get the same order in lock-step (one to each per tick,
   who goes first alternating), so both meet the same machine; per round,
   the difference of their p50s is what Redis adds, and the median over
   the rounds is printed beside each round's. Target: p50 <= 0.5 ms more.
   An order runs one script before it leaves (halts and order counts read
   and the order counted in them, and its budget taken, in one step) and,
   after, the exchange's usage reading (batched: a correction per budget
   every 50 ms at most); the scripts Redis ran per request are counted. A read (GET
   /api/v3/account: its budget, and the usage reading after) is measured
   the same way. CPU time per request of each gateway process and of
   redis-server is printed too: it moves less with the machine's load
   than latency does.

   Then order rounds alternate as-is with rounds where redis-server is
   pinned to one core and both gateways to the other (``--pin-rounds``):
   Redis on a host of its own, as several gateways on several hosts have
   it. As-is on a 2-core machine, redis-server's work on each order (about
   0.45 ms of CPU) runs on the cores the gateways use, and the difference
   between the two kinds of round is what that sharing costs.
2. Limiter decisions per second against one Redis (``RedisLimiter.acquire``
   with one charge, all granted, over the gateway's pipelined link), one
   caller and 32 concurrent callers in one process, beside ``MemoryLimiter``,
   and bare PING round trips over the link and over redis-py. The
   admission script alone and a PING are timed back to back and each after
   10 ms of idle time: the second is the floor under what Redis adds to an
   order in the gateway (a store that was idle is woken for each order).

Every key, passphrase and token here is fake or throwaway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from bench_gateway import (
    HIGH,
    PASSPHRASE,
    Connection,
    Server,
    _child,
    cpu_seconds,
    free_port,
    make_home,
    percentile,
    pin,
    start_emulator,
)
from keybroker.exchanges.base import RateLimit
from keybroker.gateway.coordination_redis import ADMIT_ORDER
from keybroker.ratelimit import Charge, MemoryLimiter
from keybroker.ratelimit.redis import RedisLimiter
from keybroker.ratelimit.redis_link import Link

NO_LIMITS = {"REQUEST_WEIGHT": HIGH, "RAW_REQUESTS": HIGH, "ORDERS_10S": HIGH, "ORDERS_1D": HIGH}

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
config = GatewayConfig(audit_path=Path(settings["audit"]))
if settings["redis"]:
    from keybroker.clock import SystemClock
    from keybroker.gateway.coordination_redis import RedisCoordination
    from keybroker.ratelimit.redis import RedisLimiter
    coordination = RedisCoordination.from_url(
        Secret(settings["redis"]), vault=vault, clock=SystemClock(), gateways=2
    )
    limiter = RedisLimiter(
        coordination.client,
        limit_overrides=settings["overrides"],
        health=coordination.health,
        link=coordination.link,
    )
    app = create_app(vault, config, limiter=limiter, coordination=coordination)
else:
    app = create_app(vault, config, limiter=MemoryLimiter(limit_overrides=settings["overrides"]))
running = serve_in_thread(app)
print(running.url, flush=True)
sys.stdin.read()
running.stop()
vault.close()
"""


def start_gateway(vault: Path, audit: Path, redis_url: str | None) -> Server:
    settings = {
        "vault": str(vault),
        "audit": str(audit),
        "overrides": NO_LIMITS,
        "redis": redis_url,
    }
    return _child(_GATEWAY, settings, {"BENCH_PASSPHRASE": PASSPHRASE})


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    program = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(program).exists():
        raise SystemExit("redis-server is missing: apt-get install -y redis-server")
    port = free_port()
    process = subprocess.Popen(
        [
            program,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    async def ready() -> bool:
        async with Redis.from_url(url) as client:
            return bool(await client.ping())

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if asyncio.run(ready()):
                return process, url
        except OSError:
            time.sleep(0.05)
        except Exception:  # redis' ConnectionError while it starts
            time.sleep(0.05)
    process.kill()
    raise SystemExit("redis-server did not start")


# -- 1. latency ---------------------------------------------------------------------------------


BODY = b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.001&price=50000"


async def interleaved(
    targets: dict[str, str], method: str, path: str, token: str, count: int, rate: float
) -> dict[str, list[float]]:
    """``count`` requests to each target at ``rate`` per second each, in lock-step.

    Each tick sends one request to every target in turn (who goes first
    alternates), so both gateways meet the same machine: on a shared,
    noisy machine this is what makes their difference mean something.
    """
    connections = {name: Connection(url) for name, url in targets.items()}
    headers = {"X-Keybroker-Token": token, "Content-Type": "application/x-www-form-urlencoded"}
    body = BODY if method == "POST" else b""
    times: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    start = time.perf_counter()
    for i in range(count):
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        for name in names if i % 2 == 0 else reversed(names):
            began = time.perf_counter()
            status, _, data = await connections[name].request(method, path, headers, body)
            times[name].append((time.perf_counter() - began) * 1000)
            if status != 200:
                raise RuntimeError(f"{method} {path} answered {status}: {data[:200]!r}")
    for connection in connections.values():
        await connection.close()
    return times


def latency(
    targets: dict[str, str], method: str, path: str, token: str, rounds: int, per_round: int
) -> list[dict[str, list[float]]]:
    """One dict of times per round (gateways interleaved request by request)."""
    asyncio.run(interleaved(targets, method, path, token, 30, 100))  # warm up
    return [
        asyncio.run(interleaved(targets, method, path, token, per_round, 100))
        for _ in range(rounds)
    ]


def pinned_rounds(
    targets: dict[str, str],
    token: str,
    pids: dict[str, int],
    rounds: int,
    per_round: int,
) -> list[tuple[bool, float]]:
    """Order rounds alternating as-is / pinned: (pinned, what Redis adds at p50 in ms).

    Pinned: redis-server on one core, both gateways (every thread) on the
    other, as when Redis runs on a host of its own, which is what several
    gateways on several hosts have. As-is, redis-server's work on each
    order runs on the cores the gateways use. The emulator and this client
    still run on both cores; both gateways share one, so neither is favoured.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if rounds < 2 or len(cpus) < 2:
        return []
    everywhere = set(cpus)
    result: list[tuple[bool, float]] = []
    try:
        for number in range(rounds):
            pinned = number % 2 == 1
            pin(pids["redis-server"], {cpus[1]} if pinned else everywhere)
            for name in ("in-process", "redis"):
                pin(pids[name], {cpus[0]} if pinned else everywhere)
            times = asyncio.run(
                interleaved(targets, "POST", "/bn/api/v3/order", token, per_round, 100)
            )
            result.append(
                (pinned, percentile(times["redis"], 50) - percentile(times["in-process"], 50))
            )
    finally:
        for pid in pids.values():
            pin(pid, everywhere)
    return result


def script_calls(url: str) -> int:
    """Scripts Redis has run so far (INFO commandstats), to count them per request."""

    async def read() -> int:
        async with Redis.from_url(url) as client:
            stats = await client.info("commandstats")
            return sum(
                int(stats.get(name, {}).get("calls", 0))
                for name in ("cmdstat_evalsha", "cmdstat_eval")
            )

    return asyncio.run(read())


# -- 2. decisions per second ---------------------------------------------------------------------


LIMIT = RateLimit("BENCH", 10**12, 60, "weight", "ip")


def charges(i: int) -> list[Charge]:
    return [Charge("bench:production:h:BENCH", 1.0, LIMIT, "h")]


async def decisions(make: object, seconds: float, callers: int) -> float:
    limiter = make()  # type: ignore[operator]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await limiter.acquire(charges(done), fairness_key="bench")
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return done / (time.perf_counter() - began)


async def redis_decisions(url: str, seconds: float, callers: int) -> float:
    async with Redis.from_url(url, max_connections=64) as client:
        await client.flushall()
        link = Link.of(client)  # as the gateway does
        try:
            return await decisions(lambda: RedisLimiter(client, link=link), seconds, callers)
        finally:
            if link is not None:
                await link.close()


ORDER_LIMITS = (
    RateLimit("REQUEST_WEIGHT", HIGH, 60, "weight", "ip", fixed_window=True),
    RateLimit("RAW_REQUESTS", HIGH, 300, "requests", "ip", fixed_window=True),
    RateLimit("ORDERS_10S", HIGH, 10, "orders", "account", fixed_window=True),
    RateLimit("ORDERS_1D", HIGH, 86400, "orders", "account", fixed_window=True),
)


async def admission_calls(url: str, count: int, gap_s: float = 0.0) -> tuple[float, float]:
    """p50 (µs) of an order's admission script (halts, counts, four Binance-like budgets)
    called alone over the link, and of a PING over it: the floor under what Redis adds.

    With ``gap_s``, each call follows that much idle time, as an order's does in a
    gateway at 100 orders/s: a redis-server that was asleep answers more slowly.
    """
    async with Redis.from_url(url) as client:
        link = Link.of(client)
        assert link is not None
        limiter = RedisLimiter(client, link=link)
        host = "127.0.0.1:1"
        charges = [
            Charge(
                f"binance:testnet:{host}:{'' if lim.scope == 'ip' else 'bn:'}{lim.name}",
                1.0,
                lim,
                host,
            )
            for lim in ORDER_LIMITS
        ]
        admit = link.script(ADMIT_ORDER)
        keys = ["keybroker:halts", "bench:o:c", "bench:o:b", "bench:n"]
        admitted: list[float] = []
        pinged: list[float] = []
        for i in range(count):
            if gap_s:
                await asyncio.sleep(gap_s)
            began = time.perf_counter()
            offer = limiter.offer(charges)
            assert offer is not None
            args = [offer.now, "bn", 1, "50", f"o{i}", 1, *offer.args]
            await admit(keys=[*keys, *offer.keys], args=args)
            admitted.append((time.perf_counter() - began) * 1e6)
            if gap_s:
                await asyncio.sleep(gap_s)
            began = time.perf_counter()
            await link.call("PING")
            pinged.append((time.perf_counter() - began) * 1e6)
        await link.close()
        return percentile(admitted, 50), percentile(pinged, 50)


async def pings(url: str, seconds: float, *, link: bool) -> float:
    async with Redis.from_url(url) as client:
        over = Link.of(client) if link else None
        ping = over.call if over is not None else client.ping
        count = 0
        stop_at = time.perf_counter() + seconds
        began = time.perf_counter()
        while time.perf_counter() < stop_at:
            await (ping("PING") if over is not None else ping())
            count += 1
        rate = count / (time.perf_counter() - began)
        if over is not None:
            await over.close()
        return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0, help="per decisions/s measure")
    parser.add_argument(
        "--pin-rounds",
        type=int,
        default=6,
        help="order rounds alternating as-is / redis-server on a core of its own (0: none)",
    )
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kb-bench-redis-") as scratch:
        root = Path(scratch)
        redis_process, redis_url = start_redis(root)
        servers: list[Server] = []
        try:
            unlimited = {
                "weight_limit": HIGH,
                "spot_orders_per_10s": HIGH,
                "spot_orders_per_day": HIGH,
            }
            exchange = start_emulator(**unlimited)
            servers.append(exchange)
            token = make_home(root / "home", {"bn": exchange.url}, 1)[0]
            memory = start_gateway(root / "home" / "vault.db", root / "a1.db", None)
            servers.append(memory)
            shared = start_gateway(root / "home" / "vault.db", root / "a2.db", redis_url)
            servers.append(shared)
            targets = {"in-process": memory.url, "redis": shared.url}
            pids = {"in-process": memory.process.pid, "redis": shared.process.pid}
            pids["redis-server"] = redis_process.pid

            for label, method, path in (
                ("order", "POST", "/bn/api/v3/order"),
                ("read", "GET", "/bn/api/v3/account"),
            ):
                before = script_calls(redis_url)
                cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
                per_round = latency(targets, method, path, token, args.rounds, args.per_round)
                sent = (args.rounds * args.per_round) + 30
                scripts = (script_calls(redis_url) - before) / sent
                cpu = {name: (cpu_seconds(pids[name]) - cpu[name]) * 1000 / sent for name in pids}
                pooled = {name: [t for r in per_round for t in r[name]] for name in targets}
                for name in targets:
                    p50, p99 = percentile(pooled[name], 50), percentile(pooled[name], 99)
                    rows.append(
                        (
                            f"{label} through {name} gateway p50 / p99 (ms)",
                            f"{p50:.2f} / {p99:.2f}",
                            "",
                        )
                    )
                added = sorted(
                    percentile(r["redis"], 50) - percentile(r["in-process"], 50) for r in per_round
                )
                each = " ".join(f"{a:+.2f}" for a in added)
                rows.append(
                    (
                        f"{label}: Redis adds at p50, median of {args.rounds} rounds (ms)",
                        f"{statistics.median(added):+.2f}",
                        "<= +0.5" if label == "order" else "",
                    )
                )
                rows.append((f"{label}: ... each round, sorted (ms)", each, ""))
                added99 = percentile(pooled["redis"], 99) - percentile(pooled["in-process"], 99)
                rows.append((f"{label}: Redis adds at p99, all rounds (ms)", f"{added99:+.2f}", ""))
                rows.append((f"{label}: Redis scripts run per request", f"{scripts:.2f}", ""))
                rows.append(
                    (
                        f"{label}: CPU ms per request, gateway in-process / Redis / redis-server",
                        f"{cpu['in-process']:.2f} / {cpu['redis']:.2f} / {cpu['redis-server']:.2f}",
                        "",
                    )
                )
            rounds = pinned_rounds(targets, token, pids, args.pin_rounds, args.per_round)
            for pinned in (False, True):
                added = sorted(a for kind, a in rounds if kind == pinned)
                if not added:
                    continue
                where = "redis-server on its own core" if pinned else "as-is, alternating"
                rows.append(
                    (
                        f"order, {where}: Redis adds at p50, median of {len(added)} rounds (ms)",
                        f"{statistics.median(added):+.2f}",
                        "<= +0.5",
                    )
                )
                rows.append(
                    ("order: ... each round, sorted (ms)", " ".join(f"{a:+.2f}" for a in added), "")
                )
        finally:
            for server in reversed(servers):
                server.stop()

        try:
            for callers in (1, 32):
                memory_rate = asyncio.run(decisions(lambda: MemoryLimiter(), args.seconds, callers))
                redis_rate = asyncio.run(redis_decisions(redis_url, args.seconds, callers))
                rows.append(
                    (
                        f"limiter decisions/s, {callers} caller(s): Redis / in-process",
                        f"{redis_rate:,.0f} / {memory_rate:,.0f}",
                        "",
                    )
                )
            admitted, pinged = asyncio.run(admission_calls(redis_url, 2000))
            rows.append(
                (
                    "an order's admission script alone / a PING, over the link, p50 (µs)",
                    f"{admitted:.0f} / {pinged:.0f}",
                    "(back to back)",
                )
            )
            admitted, pinged = asyncio.run(admission_calls(redis_url, 300, gap_s=0.01))
            rows.append(
                (
                    "... each after 10 ms idle, as in a gateway at 100 orders/s (µs)",
                    f"{admitted:.0f} / {pinged:.0f}",
                    "(the floor)",
                )
            )
            rows.append(
                (
                    "Redis PING round trips/s, 1 caller: keybroker's link / redis-py",
                    f"{asyncio.run(pings(redis_url, args.seconds, link=True)):,.0f} / "
                    f"{asyncio.run(pings(redis_url, args.seconds, link=False)):,.0f}",
                    "(reference)",
                )
            )
        finally:
            redis_process.terminate()
            redis_process.wait(timeout=10)

    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()[0]
    print(
        f"keybroker Redis bench - Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load average {load_before:.1f} at the start, {load:.1f} at the end"
    )
    print(f"{'measure'.ljust(width)}  {'result':>20}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:>20}  {target}")
    print(
        f"latency: {args.rounds} rounds x {args.per_round} requests per gateway at 100/s each, "
        "the two gateways interleaved request by request; decisions: one process, one asyncio loop"
    )


if __name__ == "__main__":
    main()
