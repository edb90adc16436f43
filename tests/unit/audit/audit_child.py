"""A process that appends to an audit log until it is killed (run as a script, never imported).

    python audit_child.py PATH LABEL

Prints ``ready``, then the id of every row the moment its append returns
(durable), one per line, flushed. 20 async appenders and one thread with
``append_sync`` run at once, so a SIGKILL lands in every phase: queueing,
inside a transaction, during the fsync, between groups.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from keybroker.audit import AuditLog, AuditRow

write_lock = threading.Lock()


def say(line: str) -> None:
    with write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


async def appender(log: AuditLog, label: str, worker: int) -> None:
    n = 0
    while True:
        row = AuditRow("intent", bot=label, detail=f"{label}-{worker}-{n}", latency_ms=n / 7)
        say(f"{await log.append(row)} {label}-{worker}-{n}")
        n += 1


def sync_appender(log: AuditLog, label: str) -> None:
    n = 0
    while True:
        row = AuditRow("event", bot=label, detail=f"{label}-sync-{n}")
        say(f"{log.append_sync(row)} {label}-sync-{n}")
        n += 1


async def main(path: Path, label: str) -> None:
    log = AuditLog.open(path)
    say("ready")  # before any appender runs: the sync thread's first row must not come first
    threading.Thread(target=sync_appender, args=(log, label), daemon=True).start()
    await asyncio.gather(*(appender(log, label, worker) for worker in range(20)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
