"""SIGKILL a process that is appending, at many moments: the chain holds, no durable row is lost.

Runs real child processes (``audit_child.py``) against one real file, each
killed while 21 appenders are writing, then the next child carries on the
same chain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from keybroker.audit import read_rows, verify_chain

CHILD = Path(__file__).with_name("audit_child.py")


def run_and_kill(path: Path, label: str, delay: float) -> dict[int, str]:
    """Start a child, SIGKILL it ``delay`` seconds after it is ready; the rows it acknowledged."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), label],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    acknowledged: dict[int, str] = {}

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            row_id, detail = line.split()
            acknowledged[int(row_id)] = detail

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    reader.join(timeout=30)
    child.stdout.close()
    return acknowledged


@pytest.mark.slow
def test_killing_an_appending_process_at_many_moments_keeps_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "home" / "audit.db"
    acknowledged: dict[int, str] = {}
    # From right after start (mostly the first groups) to well into a steady stream.
    delays = [0.0, 0.001, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3]
    for round_number, delay in enumerate(delays):
        got = run_and_kill(path, f"child{round_number}", delay)
        acknowledged.update(got)
        report = verify_chain(path)
        assert report.ok, (delay, report)
        # Every row whose append returned is there, as acknowledged: durable means durable.
        stored = {row.id: row.row.detail for row in read_rows(path)}
        missing = {i: d for i, d in acknowledged.items() if stored.get(i) != d}
        assert not missing, (delay, sorted(missing)[:5])
    assert verify_chain(path).rows >= len(acknowledged) > 100
