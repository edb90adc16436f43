"""Reading the audit log from the process that writes it (the gateway's dashboard).

POSIX drops a process's locks on a file when it closes any descriptor of it;
then another process's reader, closing as what it believes is the last
connection, checkpoints the WAL away under the writer (``read_rows(path)``
called in the writing process does exactly that: its header check opens and
closes the file). ``AuditLog.read_rows`` never opens the file outside SQLite.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keybroker.audit import AuditLog, AuditRow, read_rows
from keybroker.errors import InvalidInput


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    opened = AuditLog.open(tmp_path / "home" / "audit.db")
    yield opened
    opened.close()


def read_in_another_process(path: Path) -> int:
    code = (
        "import sys, pathlib\n"
        "from keybroker.audit import read_rows\n"
        "print(len(read_rows(pathlib.Path(sys.argv[1]))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_the_writer_reads_its_own_log_while_other_processes_read_it(log: AuditLog) -> None:
    for number in range(3):
        log.append_sync(AuditRow("event", detail=f"first {number}"))
    assert [row.row.detail for row in log.read_rows(last=2)] == ["first 1", "first 2"]
    assert read_in_another_process(log.path) == 3
    for number in range(3):
        log.append_sync(AuditRow("event", detail=f"then {number}"))
    assert len(log.read_rows()) == 6
    assert read_in_another_process(log.path) == 6


def test_filters_and_windows(log: AuditLog) -> None:
    for bot in ("a", "b", "a", "b", "a"):
        log.append_sync(AuditRow("denied", bot=bot, credential="bn", decision="deny", rule="r"))
    log.append_sync(AuditRow("event", detail="other"))
    assert [r.id for r in log.read_rows(match={"bot": "a"})] == [1, 3, 5]
    assert [r.id for r in log.read_rows(match={"bot": "a"}, last=2)] == [3, 5]
    assert [r.id for r in log.read_rows(match={"kind": "denied"}, after_id=3)] == [4, 5]
    assert [r.id for r in log.read_rows(after_id=1, limit=2)] == [2, 3]
    assert log.read_rows(match={"bot": "a", "kind": "event"}) == []
    with pytest.raises(InvalidInput, match="cannot be filtered by 'detail'"):
        log.read_rows(match={"detail": "x"})
    with pytest.raises(InvalidInput):
        read_rows(log.path, match={"hash": "x"})
