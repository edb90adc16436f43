"""The signing gateway under load: added latency, throughput, de-duplication, a shared budget.

    $ python bench/bench_gateway.py                 # about 2-3 minutes, offline
    $ python bench/bench_gateway.py --quick         # skips the one-minute budget run

Everything runs on this machine, each server in its own process so that no
two event loops share a GIL: the Binance emulator, the gateway (``create_app``
served by uvicorn, with a real vault, a real fsync'd audit log, real
signing), and, where installed, Debian's nginx as a plain reverse proxy in
front of the emulator for comparison. The load comes from this process on
raw asyncio sockets (HTTP/1.1 keep-alive), so the client costs the same
whichever target it talks to.

Printed, not asserted (the targets are beside the numbers):

0. What one durable commit costs on the disk the bench runs on: fdatasync
   of a 4 KiB append, and a one-row SQLite commit in WAL mode with
   ``synchronous=FULL`` (what the audit log does before an order leaves).
   The intent row of every order waits for one such commit, so its p50 and
   p99 are a floor under the gateway's added latency.
1. Latency added to an order at ~100 orders/s: the same resting-free order
   (LIMIT IOC below the market, so no open orders pile up) sent straight to
   the emulator (signed by the client), through nginx (signed by the client)
   and through the gateway (token only; the gateway classifies, checks the
   policy, takes rate-limit budget, makes the intent row durable, signs,
   forwards, writes the result row). Rounds alternate between targets.
   A fourth target is the least any Python hop costs on this machine: a
   minimal forwarder (uvicorn on uvloop and httptools, aiohttp's client, no
   token, policy, audit or signing); its CPU per request at full speed is
   printed under the throughput rows.
   Added = percentile(through) - percentile(direct). Targets: p50 <= 1 ms,
   p99 <= 3 ms.
2. Sustained signed and audited requests per second through the gateway
   (orders, many concurrent connections). Target >= 1,000/s on 2 cores. The
   emulator's own rate alone is printed beside it: it runs on the same cores,
   so the same run is repeated against nginx answering every order itself
   (an exchange that costs next to nothing), which shows what the gateway
   alone carries. The gateway process's CPU time per order is printed too:
   on a machine shared with other work it moves less than the rates do.
3. 45 bots polling one ticker once a second (each at its own phase) for 10 s:
   upstream requests per second from the emulator's journal, with the
   gateway's defaults (only concurrent identical GETs are merged) and with
   ``public_cache_ms=1000``. Target <= 1/s.
4. 45 bots at full speed on one credential against an emulator enforcing
   Binance's 1,200 weight per minute, the gateway with its default limits:
   429s the emulator answered, and the weight the emulator accepted in one
   whole calendar minute as a share of 1,200. Targets: 0 429s, >= 90 %.

Every key, passphrase and token here is fake or throwaway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from keybroker.crypto.kdf import Argon2idParams
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

API_KEY = "bench-binance-key-not-real"
SECRET = "bench-binance-secret-not-real"
PASSPHRASE = "bench vault passphrase, not real"
ORDER = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.001&price=50000"
BOTS = 45
HIGH = 10**9

# -- the servers, each in its own process ------------------------------------------------------

_EMULATOR = """
import json, sys
from decimal import Decimal
from keybroker.emulator import ApiKey, EmulatorConfig, create_app, serve_in_thread
from keybroker.secret import Secret

settings = json.loads(sys.argv[1])
balances = {"USDT": Decimal(10**9), "BTC": Decimal(10**4)}
key = ApiKey(settings["api_key"], Secret(settings["secret"]), balances=balances)
config = EmulatorConfig(**settings["config"])
url, stop = serve_in_thread(create_app("binance", [key], config))
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
config = GatewayConfig(audit_path=Path(settings["audit"]), **settings["config"])
limiter = MemoryLimiter(limit_overrides=settings["overrides"] or None)
running = serve_in_thread(create_app(vault, config, limiter=limiter))
print(running.url, flush=True)
sys.stdin.read()
running.stop()
vault.close()
"""

# The least any Python hop can cost here: uvicorn (uvloop, httptools) and aiohttp's client,
# forwarding the bytes with no token, policy, audit or signing. Printed beside nginx so the
# gateway's own share of the added latency can be told from the runtime's.
_FORWARDER = """
import json, socket, sys, threading
import aiohttp, uvicorn

settings = json.loads(sys.argv[1])
upstream = settings["upstream"]
session = None
DROP = {b"content-length", b"connection", b"transfer-encoding", b"host"}

async def app(scope, receive, send):
    global session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                session = aiohttp.ClientSession(auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            else:
                await session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in DROP]
    query = scope["query_string"].decode()
    url = upstream + scope["path"] + ("?" + query if query else "")
    async with session.request(scope["method"], url, headers=headers, data=body) as answer:
        data = await answer.read()
        out = [(k.lower(), v) for k, v in answer.raw_headers if k.lower() not in DROP]
    out.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": out})
    await send({"type": "http.response.body", "body": data})

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
server = uvicorn.Server(config)
threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
while not server.started:
    threading.Event().wait(0.01)
print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
sys.stdin.read()
server.should_exit = True
"""


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _child(code: str, settings: dict[str, Any], env: dict[str, str] | None = None) -> Server:
    process = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(settings)],
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
        raise RuntimeError("a server did not start")
    return Server(url, process)


def start_emulator(**config: Any) -> Server:
    return _child(_EMULATOR, {"api_key": API_KEY, "secret": SECRET, "config": config})


def start_gateway(vault: Path, audit: Path, overrides: dict[str, float], **config: Any) -> Server:
    settings = {"vault": str(vault), "audit": str(audit), "overrides": overrides, "config": config}
    return _child(_GATEWAY, settings, {"BENCH_PASSPHRASE": PASSPHRASE})


def start_forwarder(upstream: str) -> Server:
    return _child(_FORWARDER, {"upstream": upstream})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# What the static upstream answers every order with (an order that expired unfilled).
STATIC_ORDER = (
    '{"symbol":"BTCUSDT","orderId":1,"clientOrderId":"kb0","transactTime":1700000000000,'
    '"price":"50000.00","origQty":"0.001","executedQty":"0.000","status":"EXPIRED",'
    '"timeInForce":"IOC","type":"LIMIT","side":"BUY"}'
)


def start_nginx(directory: Path, upstream: str | None) -> tuple[Server | None, str]:
    """nginx proxying to ``upstream`` on loopback, or (None, why not).

    With ``upstream`` None, nginx answers every request itself with
    STATIC_ORDER: an exchange that costs next to nothing, to measure what the
    gateway alone can carry.
    """
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        return None, "nginx is not installed (apt-get install -y nginx)"
    port = free_port()
    if upstream is None:
        upstream_block = ""
        location = f"default_type application/json; return 200 '{STATIC_ORDER}';"
    else:
        target = urlsplit(upstream)
        upstream_block = (
            f"upstream emulator {{ server {target.hostname}:{target.port}; keepalive 64; }}"
        )
        location = (
            "proxy_pass http://emulator; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; proxy_set_header Host $http_host;'
        )
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    {upstream_block}
    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 1000000;
        location / {{ {location} }}
    }}
}}
"""
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None, f"nginx did not start: {process.stderr.read() if process.stderr else ''}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    server = Server(f"http://127.0.0.1:{port}", process)
    server.stop = lambda: (process.terminate(), process.wait(timeout=10))  # type: ignore[method-assign]
    return server, ""


# -- a small HTTP/1.1 keep-alive client on asyncio streams -------------------------------------


class Connection:
    """One keep-alive connection; ``request`` returns (status, headers, body)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        answer: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                answer[name.strip().lower()] = value.strip()
        if answer.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await self.reader.readexactly(int(answer.get("content-length", "0")))
        if answer.get("connection", "").lower() == "close":
            await self.close()
        return status, answer, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def signed_order() -> tuple[dict[str, str], bytes]:
    """Headers and body of a Binance order signed by the client itself (direct and nginx)."""
    body = f"{ORDER}&timestamp={int(time.time() * 1000)}"
    signature = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": API_KEY, "Content-Type": "application/x-www-form-urlencoded"}
    return headers, f"{body}&signature={signature}".encode()


def gateway_order(token: str) -> tuple[dict[str, str], bytes]:
    headers = {"X-Keybroker-Token": token, "Content-Type": "application/x-www-form-urlencoded"}
    return headers, ORDER.encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- 1. latency at ~100 orders/s ----------------------------------------------------------------


async def paced_orders(url: str, path: str, make: Any, count: int, rate: float) -> list[float]:
    """``count`` orders at ``rate`` per second on one connection: each round trip in ms."""
    connection = Connection(url)
    times: list[float] = []
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(count):
        wait = start + i * interval - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        headers, body = make()
        began = time.perf_counter()
        status, _, data = await connection.request("POST", path, headers, body)
        times.append((time.perf_counter() - began) * 1000)
        if status != 200:
            raise RuntimeError(f"order answered {status}: {data[:200]!r}")
    await connection.close()
    return times


def latency(
    emulator: str,
    gateway: str,
    nginx: str | None,
    forwarder: str,
    token: str,
    rounds: int,
    per_round: int,
) -> dict[str, list[float]]:
    targets: dict[str, tuple[str, str, Any]] = {
        "direct": (emulator, "/api/v3/order", signed_order),
        "gateway": (gateway, "/bn/api/v3/order", lambda: gateway_order(token)),
        "python forwarder": (forwarder, "/api/v3/order", signed_order),
    }
    if nginx is not None:
        targets["nginx"] = (nginx, "/api/v3/order", signed_order)
    results: dict[str, list[float]] = {name: [] for name in targets}
    for url, path, make in targets.values():  # warm up: connections, caches
        asyncio.run(paced_orders(url, path, make, 30, 200))
    for _ in range(rounds):
        for name, (url, path, make) in targets.items():
            results[name] += asyncio.run(paced_orders(url, path, make, per_round, 100))
    return results


# -- 2. sustained throughput --------------------------------------------------------------------


async def saturate(
    url: str, path: str, make: Any, connections: int, seconds: float
) -> tuple[int, int]:
    """(answered 200, other) over ``seconds`` with ``connections`` concurrent keep-alive clients."""
    done = [0, 0]
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        connection = Connection(url)
        while time.perf_counter() < stop_at:
            headers, body = make()
            status, _, _ = await connection.request("POST", path, headers, body)
            done[0 if status == 200 else 1] += 1
        await connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return done[0], done[1]


# -- 3. and 4. 45 bots ----------------------------------------------------------------------------


def journal(emulator: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{emulator}/__emulator__/journal", timeout=60)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def reset(emulator: str) -> None:
    httpx.post(f"{emulator}/__emulator__/reset", timeout=30).raise_for_status()


async def pollers(gateway: str, tokens: list[str], seconds: float) -> tuple[int, int]:
    """Each bot GETs the BTCUSDT ticker once a second at its own phase; (ok, other)."""
    counts = [0, 0]

    async def bot(token: str) -> None:
        connection = Connection(gateway)
        await asyncio.sleep(random.random())
        start = time.perf_counter()
        tick = 0
        while time.perf_counter() - start < seconds:
            status, _, _ = await connection.request(
                "GET", "/bn/api/v3/ticker/price?symbol=BTCUSDT", {"X-Keybroker-Token": token}
            )
            counts[0 if status == 200 else 1] += 1
            tick += 1
            await asyncio.sleep(max(0.0, start + tick - time.perf_counter()))
        await connection.close()

    await asyncio.gather(*(bot(t) for t in tokens))
    return counts[0], counts[1]


def upstream_rate(emulator: str, gateway: str, tokens: list[str], seconds: float) -> float:
    reset(emulator)
    began = int(time.time() * 1000)
    asyncio.run(pollers(gateway, tokens, seconds))
    ended = int(time.time() * 1000)
    hits = [e for e in journal(emulator) if e["path"] == "/api/v3/ticker/price"]
    return len(hits) / ((ended - began) / 1000)


async def full_speed(gateway: str, tokens: list[str], until: float) -> dict[str, int]:
    """Each bot reads its account as fast as answers come, until ``until`` (time.time())."""
    seen = {"200": 0, "gateway 429": 0, "exchange 429": 0, "other": 0}

    async def bot(token: str) -> None:
        connection = Connection(gateway)
        while time.time() < until:
            status, headers, _ = await connection.request(
                "GET", "/bn/api/v3/account", {"X-Keybroker-Token": token}
            )
            if status == 200:
                seen["200"] += 1
            elif status == 429 and "x-keybroker-error" in headers:
                seen["gateway 429"] += 1
                retry = float(headers.get("retry-after", "0") or 0)
                await asyncio.sleep(min(retry, 0.05))
            elif status == 429:
                seen["exchange 429"] += 1
            else:
                seen["other"] += 1
        await connection.close()

    await asyncio.gather(*(bot(t) for t in tokens))
    return seen


# -- the disk and the processes -------------------------------------------------------------------


def disk_sync_ms(directory: Path, count: int = 300) -> list[float]:
    """Milliseconds of each fdatasync after a 4 KiB append, in ``directory``."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"\0" * 4096)
            began = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return times


def sqlite_commit_ms(directory: Path, count: int = 300) -> list[float]:
    """Milliseconds of each one-row commit in WAL mode with synchronous=FULL (the audit log's)."""
    path = directory / "commit-probe.db"
    conn = sqlite3.connect(path, isolation_level=None)
    times = []
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        for _ in range(count):
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 400,))
            conn.execute("COMMIT")
            times.append((time.perf_counter() - began) * 1000)
    finally:
        conn.close()
    return times


def pin(pid: int | str, cpus: set[int]) -> None:
    """Every thread of ``pid`` (or "self") on ``cpus``; threads made later inherit their maker's
    set, so pinning a process that already runs must reach each thread that exists."""
    with contextlib.suppress(OSError):  # the process has ended
        threads = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        for tid in threads:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, cpus)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the run --------------------------------------------------------------------------------------


def make_home(home: Path, emulators: dict[str, str], bots: int) -> list[str]:
    """A vault with a credential per emulator, a trading policy and ``bots`` tokens."""
    home.mkdir(mode=0o700, parents=True)
    vault = Vault.create(
        home / "vault.db",
        Secret(PASSPHRASE),
        kdf=Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1),
    )
    policy = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",))
    for name, url in emulators.items():
        vault.add(
            name,
            "binance",
            KeyMaterial(API_KEY, Secret(SECRET)),
            base_url=url,
            scopes=("read", "trade"),
        )
        vault.set_policy(name, policy.to_json())
    tokens = [
        vault.create_token(
            f"bot{i:02d}", list(emulators), expires_at=None, max_orders_per_minute=None
        )[0].reveal_text()
        for i in range(bots)
    ]
    vault.close()
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the one-minute budget run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0, help="throughput run length")
    args = parser.parse_args()

    unlimited = {
        "weight_limit": HIGH,
        "spot_orders_per_10s": HIGH,
        "spot_orders_per_day": HIGH,
    }
    no_limits = {
        "REQUEST_WEIGHT": HIGH,
        "RAW_REQUESTS": HIGH,
        "ORDERS_10S": HIGH,
        "ORDERS_1D": HIGH,
    }
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kb-bench-") as scratch:
        root = Path(scratch)
        fast = start_emulator(**unlimited)
        strict = start_emulator()  # Binance's 1,200 weight per minute
        servers = [fast, strict]
        try:
            nginx, why = start_nginx(root / "nginx", fast.url)
            static, _ = start_nginx(root / "nginx-static", None)
            for server in (nginx, static):
                if server is not None:
                    servers.append(server)
            if nginx is None:
                notes.append(f"nginx column skipped: {why}")
            upstreams = {"bn": fast.url} | ({"st": static.url} if static else {})
            tokens = make_home(root / "home", upstreams, BOTS)
            gateway = start_gateway(root / "home" / "vault.db", root / "a1.db", no_limits)
            servers.append(gateway)
            forwarder = start_forwarder(fast.url)
            servers.append(forwarder)

            # 0. what one durable commit costs on this disk (the intent row waits for one)
            fsync = disk_sync_ms(root)
            sqlite = sqlite_commit_ms(root)
            rows.append(
                (
                    "fsync of a 4 KiB write p50 / p99 (ms)",
                    f"{percentile(fsync, 50):.2f} / {percentile(fsync, 99):.2f}",
                    "(this disk)",
                )
            )
            rows.append(
                (
                    "SQLite WAL FULL commit p50 / p99 (ms)",
                    f"{percentile(sqlite, 50):.2f} / {percentile(sqlite, 99):.2f}",
                    "(one per intent)",
                )
            )

            # 1. latency
            times = latency(
                fast.url,
                gateway.url,
                nginx.url if nginx else None,
                forwarder.url,
                tokens[0],
                args.rounds,
                args.per_round,
            )
            direct = times["direct"]
            for name in ("gateway", "nginx", "python forwarder"):
                if name not in times:
                    rows.append((f"{name} added p50 / p99 (ms)", "skipped", ""))
                    continue
                through = times[name]
                p50 = percentile(through, 50) - percentile(direct, 50)
                p99 = percentile(through, 99) - percentile(direct, 99)
                target = "<= 1 / <= 3" if name == "gateway" else "(reference)"
                rows.append((f"{name} added p50 / p99 (ms)", f"{p50:.2f} / {p99:.2f}", target))
            rows.append(
                (
                    "direct order p50 / p99 (ms)",
                    f"{percentile(direct, 50):.2f} / {percentile(direct, 99):.2f}",
                    "",
                )
            )
            rows.append(
                (
                    "through gateway p50 / p99 (ms)",
                    f"{percentile(times['gateway'], 50):.2f} / "
                    f"{percentile(times['gateway'], 99):.2f}",
                    "",
                )
            )

            # 2. throughput
            reset(fast.url)
            spent = cpu_seconds(gateway.process.pid)
            ok, other = asyncio.run(
                saturate(
                    gateway.url,
                    "/bn/api/v3/order",
                    lambda: gateway_order(tokens[1]),
                    32,
                    args.seconds,
                )
            )
            spent = cpu_seconds(gateway.process.pid) - spent
            rows.append(
                (
                    f"signed+audited orders/s ({os.cpu_count()} cores)",
                    f"{ok / args.seconds:,.0f}" + (f" ({other} not 200)" if other else ""),
                    ">= 1,000 on 2 cores",
                )
            )
            rows.append(("  gateway CPU per order (ms)", f"{1000 * spent / max(ok, 1):.2f}", ""))
            if static is not None:
                spent = cpu_seconds(gateway.process.pid)
                ok, other = asyncio.run(
                    saturate(
                        gateway.url,
                        "/st/api/v3/order",
                        lambda: gateway_order(tokens[1]),
                        32,
                        args.seconds,
                    )
                )
                spent = cpu_seconds(gateway.process.pid) - spent
                rows.append(
                    (
                        "  same, exchange = nginx static answer",
                        f"{ok / args.seconds:,.0f}" + (f" ({other} not 200)" if other else ""),
                        ">= 1,000 on 2 cores",
                    )
                )
                rows.append(
                    ("  gateway CPU per order (ms)", f"{1000 * spent / max(ok, 1):.2f}", "")
                )
            if static is not None:
                floor = start_forwarder(static.url)
                servers.append(floor)
                spent = cpu_seconds(floor.process.pid)
                ok, _ = asyncio.run(
                    saturate(floor.url, "/api/v3/order", signed_order, 32, args.seconds / 2)
                )
                spent = cpu_seconds(floor.process.pid) - spent
                rows.append(
                    (
                        "  python forwarder alone, nginx static answer",
                        f"{ok / (args.seconds / 2):,.0f}",
                        "(reference)",
                    )
                )
                rows.append(
                    ("  forwarder CPU per request (ms)", f"{1000 * spent / max(ok, 1):.2f}", "")
                )
            reset(fast.url)
            ok_direct, _ = asyncio.run(
                saturate(fast.url, "/api/v3/order", signed_order, 32, args.seconds / 2)
            )
            rows.append(("emulator alone, orders/s", f"{ok_direct / (args.seconds / 2):,.0f}", ""))

            # 3. 45 pollers
            rate = upstream_rate(fast.url, gateway.url, tokens, 10)
            rows.append(("45 pollers: upstream req/s (defaults)", f"{rate:.1f}", "<= 1"))
            cached = start_gateway(
                root / "home" / "vault.db", root / "a2.db", no_limits, public_cache_ms=1000
            )
            servers.append(cached)
            rate = upstream_rate(fast.url, cached.url, tokens, 10)
            rows.append(
                ("45 pollers: upstream req/s (public_cache_ms=1000)", f"{rate:.1f}", "<= 1")
            )

            # 4. 45 bots at full speed against 1,200 weight per minute
            if args.quick:
                notes.append("full-speed budget run skipped (--quick)")
            else:
                strict_home = root / "strict"
                strict_tokens = make_home(strict_home, {"bn": strict.url}, BOTS)
                limited = start_gateway(strict_home / "vault.db", root / "a3.db", {})
                servers.append(limited)
                now = time.time()
                window_end = (int(now // 60) + 2) * 60  # a whole calendar minute inside the run
                seen = asyncio.run(full_speed(limited.url, strict_tokens, window_end + 0.5))
                entries = journal(strict.url)
                start_ms, end_ms = (window_end - 60) * 1000, window_end * 1000
                used = sum(
                    20
                    for e in entries
                    if start_ms <= e["time_ms"] < end_ms
                    and e["status"] == 200
                    and e["path"] == "/api/v3/account"
                )
                refused = sum(1 for e in entries if e["status"] == 429)
                rows.append(("45 bots full speed: emulator 429s", str(refused), "0"))
                rows.append(
                    (
                        "45 bots full speed: weight budget used",
                        f"{used / 1200:.0%} ({used}/1200)",
                        ">= 90%",
                    )
                )
                notes.append(f"45 bots full speed, answers seen by the bots: {seen}")
        finally:
            for server in reversed(servers):
                server.stop()

    width = max(len(r[0]) for r in rows)
    print(f"keybroker gateway bench - Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"{'measure'.ljust(width)}  {'result':>22}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:>22}  {target}")
    for note in notes:
        print(f"note: {note}")
    print(
        f"latency: {args.rounds} rounds x {args.per_round} orders per target at 100 orders/s, "
        "targets alternating"
    )


if __name__ == "__main__":
    main()
