"""Audit log numbers: run ``python bench/bench_audit.py [DIR]`` (about 30 s).

Prints one table of *durable* appends per second (each append returns only
after its row is fsynced), measured in the same run on the same filesystem:

* keybroker's AuditLog (SQLite WAL, ``synchronous=FULL``), one appender, and
  50 concurrent async appenders (group commit: rows per fsync is printed);
  the latency one append adds to a request (p50 / p99), idle and under load;
* the alternative considered: a flat JSON-lines file with an explicit
  ``fdatasync``, one appender, and 50 appenders with the same group commit;
  also SQLite ``synchronous=NORMAL`` (not durable across a power cut) to show
  what the fsync costs.

DIR (default: the system temp directory) should be on the disk the home
directory will live on: a tmpfs makes every fsync free and every number a lie,
so the filesystem type is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from keybroker.audit import AuditLog, AuditRow, verify_chain

ROUNDS = 3
SINGLE_ROWS = 500
CONCURRENT_ROWS = 5000
APPENDERS = 50


def row(n: int) -> AuditRow:
    return AuditRow(
        "intent",
        bot=f"bot-{n % 45}",
        credential="binance-main",
        exchange="binance",
        environment="testnet",
        method="POST",
        path="/api/v3/order",
        request_kind="order_place",
        order={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001"},
        decision="allow",
        client_order_id=f"kb-{n:010d}",
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


# -- keybroker's AuditLog ----------------------------------------------------------------


def audit_single(directory: Path) -> tuple[float, list[float]]:
    path = directory / "single" / "audit.db"
    latencies = []
    with AuditLog.open(path) as log:
        log.append_sync(row(0))  # creates the WAL
        started = time.perf_counter()
        for n in range(SINGLE_ROWS):
            start = time.perf_counter()
            log.append_sync(row(n))
            latencies.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - started
    assert verify_chain(path).ok
    return SINGLE_ROWS / elapsed, latencies


def audit_concurrent(directory: Path) -> tuple[float, float, list[float]]:
    path = directory / "concurrent" / "audit.db"
    latencies: list[float] = []
    with AuditLog.open(path) as log:
        log.append_sync(row(0))
        commits_before = log.commit_count
        per_appender = CONCURRENT_ROWS // APPENDERS

        async def appender(worker: int) -> None:
            for n in range(per_appender):
                start = time.perf_counter()
                await log.append(row(worker * per_appender + n))
                latencies.append(time.perf_counter() - start)

        async def run() -> None:
            await asyncio.gather(*(appender(worker) for worker in range(APPENDERS)))

        started = time.perf_counter()
        asyncio.run(run())
        elapsed = time.perf_counter() - started
        commits = log.commit_count - commits_before
    assert verify_chain(path).ok
    return CONCURRENT_ROWS / elapsed, CONCURRENT_ROWS / commits, latencies


# -- the alternatives ----------------------------------------------------------------------


def sqlite_normal_single(directory: Path) -> float:
    """One transaction per row with synchronous=NORMAL: survives a crash, not a power cut."""
    conn = sqlite3.connect(directory / "normal.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, hash TEXT)")
    body = json.dumps({"n": 0, "detail": "x" * 200})
    started = time.perf_counter()
    for _ in range(SINGLE_ROWS):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body, hash) VALUES (?, ?)", (body, "0" * 64))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return SINGLE_ROWS / elapsed


def flat_single(directory: Path) -> float:
    """Append a JSON line and fdatasync: the floor of one fsync per row."""
    fd = os.open(directory / "flat-single.jsonl", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    line = (json.dumps({"n": 0, "detail": "x" * 200}) + "\n").encode()
    started = time.perf_counter()
    for _ in range(SINGLE_ROWS):
        os.write(fd, line)
        os.fdatasync(fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return SINGLE_ROWS / elapsed


class FlatGroupCommit:
    """AuditLog's group commit over a flat file: write all queued lines, one fdatasync."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self._cond = threading.Condition()
        self._pending: list[tuple[bytes, Future[None]]] = []
        self._closed = False
        self.commits = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    async def append(self, line: bytes) -> None:
        future: Future[None] = Future()
        with self._cond:
            self._pending.append((line, future))
            self._cond.notify()
        await asyncio.wrap_future(future)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                group, self._pending = self._pending, []
            os.write(self._fd, b"".join(line for line, _ in group))
            os.fdatasync(self._fd)
            self.commits += 1
            for _, future in group:
                future.set_result(None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        os.close(self._fd)


def flat_concurrent(directory: Path) -> tuple[float, float]:
    writer = FlatGroupCommit(directory / "flat-group.jsonl")
    line = (json.dumps({"n": 0, "detail": "x" * 200}) + "\n").encode()
    per_appender = CONCURRENT_ROWS // APPENDERS

    async def appender() -> None:
        for _ in range(per_appender):
            await writer.append(line)

    async def run() -> None:
        await asyncio.gather(*(appender() for _ in range(APPENDERS)))

    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    writer.close()
    return CONCURRENT_ROWS / elapsed, CONCURRENT_ROWS / writer.commits


# -- output --------------------------------------------------------------------------------


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts; Linux only)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3 and resolved.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], f"{fields[2]} ({fields[0]} on {fields[1]})"
    return kind


def main() -> None:
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    rounds: dict[str, list[float]] = {}
    single_latencies: list[float] = []
    group_latencies: list[float] = []

    def keep(name: str, value: float) -> None:
        rounds.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(dir=base) as tmp:
        # Interleaved rounds, medians reported: a shared disk or CPU is noisy, and
        # measuring each contender in turn would hand one of them the quiet minute.
        for number in range(ROUNDS):
            directory = Path(tmp) / f"round{number}"
            directory.mkdir()
            print(f"  … round {number + 1} of {ROUNDS}", file=sys.stderr, flush=True)
            rate, latencies = audit_single(directory)
            keep("audit single", rate)
            single_latencies += latencies
            rate, per_commit, latencies = audit_concurrent(directory)
            keep("audit group", rate)
            keep("audit per commit", per_commit)
            group_latencies += latencies
            keep("flat single", flat_single(directory))
            rate, per_commit = flat_concurrent(directory)
            keep("flat group", rate)
            keep("flat per commit", per_commit)
            keep("normal single", sqlite_normal_single(directory))
        filesystem = filesystem_of(Path(tmp))

    def median(name: str) -> float:
        return statistics.median(rounds[name])

    def spread(name: str) -> str:
        return f"{min(rounds[name]):,.0f}–{max(rounds[name]):,.0f}"

    single_p50, single_p99 = percentiles(single_latencies)
    group_p50, group_p99 = percentiles(group_latencies)
    rows = [
        ("AuditLog, 1 appender (durable)", f"{median('audit single'):,.0f} rows/s",
         f"rounds {spread('audit single')}; append p50 {single_p50 * 1e3:.2f} ms, "
         f"p99 {single_p99 * 1e3:.2f} ms"),
        (f"AuditLog, {APPENDERS} concurrent appenders (durable)",
         f"{median('audit group'):,.0f} rows/s",
         f"rounds {spread('audit group')}; {median('audit per commit'):.1f} rows per fsync; "
         f"append p50 {group_p50 * 1e3:.2f} ms, p99 {group_p99 * 1e3:.2f} ms"),
        ("flat JSONL + fdatasync, 1 appender (durable)", f"{median('flat single'):,.0f} rows/s",
         f"rounds {spread('flat single')}; one fsync per row, no chain or index"),
        (f"flat JSONL + fdatasync, {APPENDERS} appenders, group commit",
         f"{median('flat group'):,.0f} rows/s",
         f"rounds {spread('flat group')}; {median('flat per commit'):.1f} rows per fsync; "
         "no chain, no index, one process only"),
        ("SQLite WAL synchronous=NORMAL, 1 writer", f"{median('normal single'):,.0f} rows/s",
         "NOT durable across a power cut: what skipping the fsync would buy"),
    ]  # fmt: skip
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"keybroker audit benchmark — Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs (load {load:.1f}), "
        f"filesystem {filesystem}; medians of {ROUNDS} interleaved rounds"
    )
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    for label, value, comment in rows:
        print(f"  {label:<{width}}  {value:>{value_width}}  {comment}")


if __name__ == "__main__":
    main()
