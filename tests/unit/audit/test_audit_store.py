"""The audit log on a real SQLite file: durable appends, group commit, reading, tampering."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_testkit import START_MS, intent, result, stored_values, write_log
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keybroker.audit import AuditLog, AuditRow, read_rows, verify_chain
from keybroker.audit.row import COLUMNS, check_row
from keybroker.clock import FixedClock
from keybroker.errors import AuditError, InvalidInput


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "audit.db"


@pytest.fixture
def log(log_path: Path) -> Iterator[AuditLog]:
    opened = AuditLog.open(log_path, clock=FixedClock(START_MS))
    yield opened
    opened.close()


# -- the file ---------------------------------------------------------------------------


def test_open_creates_a_private_file_in_a_private_directory(log: AuditLog, log_path: Path) -> None:
    assert log_path.stat().st_mode & 0o777 == 0o600
    assert log_path.parent.stat().st_mode & 0o777 == 0o700
    assert log.warnings == []
    assert verify_chain(log_path).ok  # an empty log is a valid log


def test_the_connection_commits_through_wal_with_full_sync(log: AuditLog) -> None:
    # synchronous=FULL in WAL mode: every COMMIT fsyncs the WAL (2 = FULL).
    conn = log._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_an_appended_row_is_committed_when_append_returns(log: AuditLog, log_path: Path) -> None:
    row_id = log.append_sync(intent(1))
    other = sqlite3.connect(log_path)  # another connection sees only committed rows
    try:
        assert other.execute("SELECT id, kind, bot FROM audit").fetchall() == [
            (row_id, "intent", "bot-1")
        ]
    finally:
        other.close()


def test_reopening_continues_the_chain(log_path: Path) -> None:
    write_log(log_path, 3)
    write_log(log_path, 2)
    report = verify_chain(log_path)
    assert (report.ok, report.rows) == (True, 10)
    assert [row.id for row in read_rows(log_path)] == list(range(1, 11))


def test_a_foreign_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(AuditError, match="not a keybroker audit log"):
        AuditLog.open(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 10)
    with pytest.raises(AuditError, match="not a keybroker audit log"):
        AuditLog.open(garbage)
    assert other.read_bytes() == before
    assert not Path(f"{other}-wal").exists()
    assert not verify_chain(garbage).ok


def test_a_log_others_can_write_is_refused(log_path: Path) -> None:
    write_log(log_path, 1)
    log_path.chmod(0o620)
    with pytest.raises(AuditError, match="chmod 600"):
        AuditLog.open(log_path)
    log_path.chmod(0o640)
    with AuditLog.open(log_path) as opened:
        assert "readable by group or others" in opened.warnings[0]


def test_a_log_from_a_newer_keybroker_is_refused(log_path: Path) -> None:
    write_log(log_path, 1)
    conn = sqlite3.connect(log_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(AuditError, match="newer keybroker"):
        AuditLog.open(log_path)


def test_a_missing_log_does_not_verify(tmp_path: Path) -> None:
    report = verify_chain(tmp_path / "audit.db")
    assert not report.ok and "no audit log" in report.reason
    with pytest.raises(AuditError, match="no audit log"):
        read_rows(tmp_path / "audit.db")
    assert not (tmp_path / "audit.db").exists()  # reading never creates it


# -- appending ---------------------------------------------------------------------------


def test_a_malformed_row_fails_alone(log: AuditLog) -> None:
    with pytest.raises(InvalidInput):
        log.append_sync(AuditRow("nonsense"))
    assert log.append_sync(AuditRow("event", detail="fine")) == 1


def test_after_close_appends_are_refused_and_queued_rows_were_written(log_path: Path) -> None:
    opened = AuditLog.open(log_path)

    async def many() -> list[int]:
        tasks = [asyncio.ensure_future(opened.append(intent(n))) for n in range(20)]
        await asyncio.sleep(0)
        return await asyncio.gather(*tasks)

    ids = asyncio.run(many())
    opened.close()
    opened.close()  # idempotent
    with pytest.raises(AuditError, match="closed"):
        opened.append_sync(intent(1))
    assert sorted(ids) == list(range(1, 21))
    assert verify_chain(log_path).rows == 20


def test_concurrent_appends_share_one_commit(log: AuditLog, log_path: Path) -> None:
    """50 appends queued while another process holds the write lock: two commits, not 50."""
    blocker = sqlite3.connect(log_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def run() -> list[int]:
        tasks = [asyncio.ensure_future(log.append(intent(n))) for n in range(50)]
        await asyncio.sleep(0.3)  # the writer is waiting for the lock; the rest queue up
        assert not any(task.done() for task in tasks)  # nothing returns before it is durable
        blocker.execute("COMMIT")
        return await asyncio.gather(*tasks)

    try:
        ids = asyncio.run(run())
    finally:
        blocker.close()
    assert sorted(ids) == list(range(1, 51))
    assert log.commit_count <= 2
    assert log.row_count == 50
    assert verify_chain(log_path).ok


def test_a_row_appended_later_rides_with_the_next_row_that_cannot_wait(
    log: AuditLog, log_path: Path
) -> None:
    """A result row queued with ``append_later`` shares the next intent's commit."""
    log.later_s = 60.0  # only the next urgent row can bring it out in this test
    queued = log.append_later(result(1, 1))
    assert not queued.done()  # nothing was written for it alone
    assert log.append_sync(intent(2)) == 2
    assert queued.result(timeout=5) == 1  # written before the intent that came after it
    assert log.commit_count == 1
    assert [row.row.kind for row in read_rows(log_path)] == ["result", "intent"]
    assert verify_chain(log_path).ok


def test_a_row_appended_later_is_written_alone_after_its_wait(log: AuditLog) -> None:
    log.later_s = 0.05
    assert log.append_later(intent(1)).result(timeout=10) == 1
    assert log.commit_count == 1


def test_close_writes_the_rows_still_waiting(log_path: Path) -> None:
    opened = AuditLog.open(log_path)
    opened.later_s = 60.0
    queued = [opened.append_later(intent(n)) for n in range(3)]
    opened.close()
    assert [future.result(timeout=0) for future in queued] == [1, 2, 3]
    assert verify_chain(log_path).rows == 3


def test_a_malformed_row_appended_later_is_refused_at_once(log: AuditLog) -> None:
    with pytest.raises(InvalidInput):
        log.append_later(AuditRow("nonsense"))


def test_free_running_concurrent_appends_are_grouped(log: AuditLog) -> None:
    async def run() -> list[int]:
        return await asyncio.gather(*(log.append(intent(n)) for n in range(200)))

    ids = asyncio.run(run())
    assert sorted(ids) == list(range(1, 201))
    assert log.commit_count < 50


def test_sync_and_async_appenders_in_threads_form_one_chain(log: AuditLog, log_path: Path) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        sync_calls = [loop.run_in_executor(None, log.append_sync, intent(n)) for n in range(30)]
        async_calls = [log.append(result(n, n + 1)) for n in range(30)]
        await asyncio.gather(*sync_calls, *async_calls)

    asyncio.run(run())
    report = verify_chain(log_path)
    assert (report.ok, report.rows) == (True, 60)


def test_a_cancelled_append_that_was_not_yet_taken_is_not_written(
    log: AuditLog, log_path: Path
) -> None:
    blocker = sqlite3.connect(log_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    async def run() -> list[int]:
        first = asyncio.ensure_future(log.append(intent(0)))
        await asyncio.sleep(0.2)  # the writer took `first` and waits for the lock
        cancelled = asyncio.ensure_future(log.append(intent(1)))
        kept = asyncio.ensure_future(log.append(intent(2)))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        blocker.execute("COMMIT")
        return [await first, await kept]

    try:
        ids = asyncio.run(run())
    finally:
        blocker.close()
    assert ids == [1, 2]
    assert [row.row.bot for row in read_rows(log_path)] == ["bot-0", "bot-2"]


def test_an_inline_append_commits_at_once_with_the_rows_waiting_for_company(
    log: AuditLog, log_path: Path
) -> None:
    log.later_s = 60.0  # only a commit of the next row can bring it out
    queued = log.append_later(result(1, 1))
    assert asyncio.run(log.append(intent(2), inline=True)) == 2
    # Written by the same commit, before append returned: no waiting on the writer thread.
    assert queued.result(timeout=0) == 1
    assert (log.commit_count, log.inline_commit_count) == (1, 1)
    assert [row.row.kind for row in read_rows(log_path)] == ["result", "intent"]
    assert verify_chain(log_path).ok


def test_an_inline_append_never_holds_the_loop_while_another_process_writes(
    log: AuditLog, log_path: Path
) -> None:
    """A busy log sends the row to the writer thread; the event loop runs on meanwhile."""
    blocker = sqlite3.connect(log_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    waited: list[float] = []

    async def run() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(log.append(intent(1), inline=True))
        before = loop.time()
        await asyncio.sleep(0.2)
        # Blocked inside the commit, the loop would have come back only after the
        # writer's busy timeout (10 s), with the row written.
        waited.append(loop.time() - before)
        assert not task.done()  # nothing returns before it is durable
        blocker.execute("COMMIT")
        return await task

    try:
        assert asyncio.run(run()) == 1
    finally:
        blocker.close()
    assert waited[0] < log.busy_timeout / 2
    assert (log.commit_count, log.inline_commit_count) == (1, 0)
    assert verify_chain(log_path).ok


def test_a_cancelled_row_waiting_for_company_is_left_out_of_an_inline_commit(
    log: AuditLog, log_path: Path
) -> None:
    log.later_s = 60.0
    dropped = log.append_later(result(1, 1))
    kept = log.append_later(result(2, 2))
    assert dropped.cancel()
    assert asyncio.run(log.append(intent(3), inline=True)) == 2
    assert kept.result(timeout=0) == 1
    assert [row.row.bot for row in read_rows(log_path)] == ["bot-2", "bot-3"]


def test_inline_and_handed_off_appends_from_many_threads_form_one_chain(
    log: AuditLog, log_path: Path
) -> None:
    log.later_s = 0.01

    def appender(first: int) -> list[int]:
        async def run() -> list[int]:
            ids = []
            for n in range(first, first + 25):
                ids.append(await log.append(intent(n), inline=n % 2 == 0))
                log.append_later(result(n, n))
            ids.append(log.append_sync(intent(first + 25)))
            return ids

        return asyncio.run(run())

    async def all_threads() -> list[list[int]]:
        loop = asyncio.get_running_loop()
        return await asyncio.gather(
            *(loop.run_in_executor(None, appender, 100 * k) for k in range(4))
        )

    ids = [row_id for ids in asyncio.run(all_threads()) for row_id in ids]
    log.close()  # writes the result rows still waiting
    assert len(set(ids)) == len(ids) == 104
    report = verify_chain(log_path)
    assert (report.ok, report.rows) == (True, 204)
    assert 0 < log.inline_commit_count < log.commit_count


def test_an_inline_append_to_a_closed_log_is_refused(log_path: Path) -> None:
    closed = AuditLog.open(log_path)
    closed.close()
    with pytest.raises(AuditError, match="closed"):
        asyncio.run(closed.append(intent(1), inline=True))


def test_a_failed_write_fails_every_waiter_and_the_log_recovers(
    log: AuditLog, log_path: Path
) -> None:
    log_busy = 0.3
    blocker = sqlite3.connect(log_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    log._conn.execute(f"PRAGMA busy_timeout = {int(log_busy * 1000)}")
    try:
        with pytest.raises(AuditError, match="could not write the audit log"):
            log.append_sync(intent(1))
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    assert log.append_sync(intent(2)) == 1
    assert verify_chain(log_path).ok


def test_two_processes_appending_at_once_form_one_chain(log_path: Path) -> None:
    write_log(log_path, 1)
    script = (
        "import sys; from pathlib import Path; from keybroker.audit import AuditLog, AuditRow\n"
        "log = AuditLog.open(Path(sys.argv[1]))\n"
        "for n in range(100): log.append_sync(AuditRow('event', bot=sys.argv[2], detail=str(n)))\n"
        "log.close()\n"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(log_path), name])
        for name in ("left", "right")
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0]
    report = verify_chain(log_path)
    assert (report.ok, report.rows) == (True, 202)
    rows = read_rows(log_path)
    for name in ("left", "right"):
        assert [r.row.detail for r in rows if r.row.bot == name] == [str(n) for n in range(100)]


# -- reading -----------------------------------------------------------------------------


def test_read_rows_by_id_time_and_tail(log_path: Path) -> None:
    write_log(log_path, 5)  # ten rows, 1 ms apart from START_MS
    assert [r.id for r in read_rows(log_path, last=3)] == [8, 9, 10]
    assert [r.id for r in read_rows(log_path, after_id=7)] == [8, 9, 10]
    assert [r.id for r in read_rows(log_path, since_ms=START_MS + 6)] == [7, 8, 9, 10]
    assert [r.id for r in read_rows(log_path, after_id=2, limit=2)] == [3, 4]
    stored = read_rows(log_path, last=1)[0]
    assert stored.row == check_row(result(4, 9))
    assert stored.hash == verify_chain(log_path).head


def test_no_token_reaches_the_file(log: AuditLog, log_path: Path) -> None:
    token = "kb_FAKEtokenNotReal0000000000000000000000000001"
    log.append_sync(
        AuditRow("denied", path=f"/api/v3/order?signature=FAKESIG123&x={token}", detail=token)
    )
    log.close()
    data = b"".join(p.read_bytes() for p in log_path.parent.iterdir())
    assert token.encode() not in data and b"FAKESIG123" not in data


# -- tampering ---------------------------------------------------------------------------

PAIRS = 4  # eight rows


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audit-template") / "audit.db"
    write_log(path, PAIRS)
    assert verify_chain(path).ok and not Path(f"{path}-wal").exists()
    return path


def _copy(template: Path, directory: str) -> Path:
    path = Path(directory) / "audit.db"
    shutil.copyfile(template, path)
    path.chmod(0o600)
    return path


def _flip(value: object, position: int, mask: int) -> object:
    """The same value with one byte of its stored form XORed with ``mask``."""
    if isinstance(value, str):
        data = bytearray(value.encode())
        data[position % len(data)] ^= mask
        return bytes(data)  # stored with CAST(? AS TEXT): raw bytes, maybe not UTF-8
    if isinstance(value, int):
        data = bytearray(struct.pack(">q", value))
        data[position % 8] ^= mask
        return struct.unpack(">q", bytes(data))[0]
    assert isinstance(value, float)
    data = bytearray(struct.pack(">d", value))
    data[position % 8] ^= mask
    return struct.unpack(">d", bytes(data))[0]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    row_id=st.integers(1, 2 * PAIRS),
    column=st.sampled_from([*COLUMNS, "hash"]),
    position=st.integers(0, 10_000),
    mask=st.integers(1, 255),
)
def test_flipping_any_byte_of_any_row_breaks_the_chain_there(
    template: Path, row_id: int, column: str, position: int, mask: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = _copy(template, directory)
        old = stored_values(path, row_id)[column]
        assume(old is not None)
        new = _flip(old, position, mask)
        conn = sqlite3.connect(path)
        try:
            placeholder = "CAST(? AS TEXT)" if isinstance(new, bytes) else "?"
            conn.execute(f"UPDATE audit SET {column} = {placeholder} WHERE id = ?", (new, row_id))  # noqa: S608
            conn.commit()
        except sqlite3.IntegrityError:
            assume(False)  # a flipped id that lands on another row's id
        finally:
            conn.close()
        report = verify_chain(path)
        assert not report.ok
        if column != "id":
            assert report.first_broken == row_id, report


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pair=st.sampled_from([n for n in range(PAIRS) if n % 2]),
    offset=st.integers(-80, 100),
    mask=st.integers(1, 255),
)
def test_flipping_a_byte_of_a_row_in_the_file_itself_breaks_the_chain(
    template: Path, pair: int, offset: int, mask: int
) -> None:
    """Below SQL: the row's bytes in the database file, around its detail text."""
    with tempfile.TemporaryDirectory() as directory:
        path = _copy(template, directory)
        data = bytearray(path.read_bytes())
        at = data.find(f"marker-detail-{pair:04d}".encode())
        assert at > 0
        data[at + offset] ^= mask
        path.write_bytes(bytes(data))
        assert not verify_chain(path).ok


def test_deleting_a_row_names_it(template: Path, tmp_path: Path) -> None:
    path = _copy(template, str(tmp_path))
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM audit WHERE id = 3")
    conn.commit()
    conn.close()
    report = verify_chain(path)
    assert (report.ok, report.first_broken) == (False, 3)
    assert "row 3 is missing" in report.reason


def test_a_cut_off_tail_is_caught_by_the_head_noted_elsewhere(
    template: Path, tmp_path: Path
) -> None:
    path = _copy(template, str(tmp_path))
    head = verify_chain(path).head
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)")
    conn.commit()
    conn.close()
    report = verify_chain(path)
    assert report.ok  # a chain cannot see its own end cut off ...
    assert report.head != head  # ... which is why `audit verify` prints the head


def test_file_modes_of_the_wal_follow_the_database(log: AuditLog, log_path: Path) -> None:
    log.append_sync(intent(1))
    for companion in (Path(f"{log_path}-wal"), Path(f"{log_path}-shm")):
        if companion.exists():
            assert companion.stat().st_mode & 0o077 == 0, oct(companion.stat().st_mode)
    assert os.stat(log_path).st_uid == os.getuid()
