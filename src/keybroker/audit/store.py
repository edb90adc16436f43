"""The audit log on disk: durable appends with group commit, reading back, verifying.

    >>> log = AuditLog.open(home / "audit.db")
    >>> intent_id = await log.append(AuditRow("intent", bot="bot1", ...))  # durable now
    >>> verify_chain(home / "audit.db").ok
    True

Why SQLite (WAL, ``synchronous=FULL``) and not a flat file with ``fsync``:
both cost one fsync of one file per commit (bench/bench_audit.py measures
the two side by side), but SQLite also gives atomic multi-row commits (a
process killed mid-write leaves the log as it was before that commit, never
half a row), safe appends from several processes (a gateway and a CLI
``halt`` on one home), and indexed reads for ``tail`` and ``export --since``.

Group commit: every append, async or sync, goes to one writer thread. While
it commits one group (one transaction, one fsync of the WAL), new appends
queue up, and the next transaction takes them all. No append waits for a
timer, and N concurrent appends cost about two fsyncs, not N. ``append``
returns only once its row's transaction is committed and synced.

A caller with nothing else to do may commit on its own thread instead
(``append(row, inline=True)``): when no commit is under way and no other
process holds the log, the row and any waiting ones are committed right
there. That saves the two thread wake-ups of the hand-off (about 0.2 ms
on a 2-core VM, bench/bench_gateway.py), at the price of blocking the
caller (an event loop) for one commit. It never waits for another process: a busy log sends
the row to the writer thread as before. A row
nothing waits for (``append_later``: the gateway's result rows) may wait up
to ``later_s`` to join the next commit, so a steady flow of orders costs one
fsync per order, not two.

Each transaction reads the last row's hash inside ``BEGIN IMMEDIATE``, so
appends from several processes still form one chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from keybroker.audit.chain import GENESIS, ChainReport, is_hash, link, verify_rows
from keybroker.audit.row import COLUMNS, AuditRow, StoredRow, check_row, from_columns, to_columns
from keybroker.clock import Clock, SystemClock
from keybroker.errors import AuditError, InvalidInput

APPLICATION_ID = 0x4B424155  # "KBAU" at offset 68 of the file: this is a keybroker audit log
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"

_TABLE = f"""
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    bot TEXT, credential TEXT, exchange TEXT, environment TEXT,
    method TEXT, path TEXT, request_kind TEXT, order_json TEXT,
    decision TEXT, rule TEXT, detail TEXT,
    status INTEGER, venue_code TEXT, latency_ms REAL, intent_id INTEGER,
    client_order_id TEXT, paper INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts_ms);
PRAGMA user_version = {SCHEMA_VERSION:d};
"""
MATCHABLE = frozenset({"bot", "credential", "kind", "decision", "request_kind", "exchange"})
"""Columns ``read_rows(match=...)`` may filter on."""
_SELECT = f"SELECT {', '.join(COLUMNS)}, hash FROM audit"  # noqa: S608 - constants only
_INSERT = (
    f"INSERT INTO audit ({', '.join(COLUMNS)}, hash) "  # noqa: S608 - constants only
    f"VALUES ({', '.join('?' for _ in COLUMNS)}, ?)"
)


@dataclass(slots=True)
class _Pending:
    row: AuditRow
    ts_ms: int
    future: Future[int]
    due: float | None = None
    """For a row that may wait (``append_later``): the monotonic time it must be written by."""


class AuditLog:
    """An open audit log with its writer thread. ``close()`` writes what is queued, then stops.

    Safe to use from any thread and any event loop; several processes may
    append to the same file at once.
    """

    busy_timeout: float = 10.0
    """How long a commit waits for another process's transaction."""
    max_group: int = 1000
    """At most this many rows per transaction (a bounded commit under a flood)."""
    on_append: Callable[[float], None] | None = None
    """Called on the appending event loop with each ``append``'s seconds until durable
    (the gateway's audit write latency metric; ``append_later`` rows, which wait on
    purpose, are not observed); never with row contents."""
    later_s: float = 0.05
    """How long a row given to ``append_later`` may wait for company in a commit."""

    def __init__(self, path: Path, conn: sqlite3.Connection, clock: Clock) -> None:
        """Internal: use ``AuditLog.open``."""
        self.path = path
        self.warnings: list[str] = []
        self._conn = conn
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: list[_Pending] = []
        self._urgent = 0  # pending rows that must not wait (all but append_later's)
        # When the writer looks at the queue again by itself: -inf while it works,
        # its deadline while it waits for one, inf while only a notify wakes it.
        self._wakes_by = -math.inf
        self._closed = False
        self._commits = 0
        self._inline_commits = 0
        self._rows = 0
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()  # one commit at a time: the writer's or an inline one
        self._inline_conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="keybroker-audit", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, path: Path, *, clock: Clock | None = None) -> AuditLog:
        """Open the log, creating it (0600, in a 0700 directory if that is new) when missing.

        Raises AuditError for a file that is not an audit log, is writable by
        group or others, or comes from a newer keybroker.
        """
        path = Path(path)
        warnings = _prepare_file(path)
        conn = _connect(path, cls.busy_timeout)
        try:
            _refuse_foreign(conn, path)  # before WAL mode would rewrite its header
            _use_wal(conn, path)
            _ensure_schema(conn, path)
        except BaseException:
            conn.close()
            raise
        log = cls(path, conn, clock or SystemClock())
        log.warnings = warnings
        return log

    def _inline_connection(self) -> sqlite3.Connection:
        """The inline commits' own connection: it never waits for another process's
        transaction (busy timeout 0), where the writer thread's waits ``busy_timeout``."""
        if self._inline_conn is None:
            conn = _connect(self.path, 0.0)
            try:
                _use_wal(conn, self.path)
            except BaseException:
                conn.close()
                raise
            self._inline_conn = conn
        return self._inline_conn

    # -- appending -------------------------------------------------------------------

    async def append(self, row: AuditRow, *, inline: bool = False) -> int:
        """Append a row; returns its id once it is committed and fsynced (group commit).

        ``inline``: commit on this thread if nobody else is committing (see the
        module's docstring); for a caller whose event loop has nothing else to do.
        Cancelled before its group is taken, the row is not written at all.
        InvalidInput for a malformed row; AuditError if the write failed.
        """
        started = time.perf_counter()
        checked = check_row(row)  # a malformed row fails here, alone
        row_id = self._append_here(checked) if inline else None
        if row_id is None:
            row_id = await asyncio.wrap_future(self._queue(checked))
        if self.on_append is not None:
            self.on_append(time.perf_counter() - started)
        return row_id

    def append_sync(self, row: AuditRow) -> int:
        """``append`` for threads and the CLI: blocks until the row is durable."""
        return self._queue(check_row(row)).result()

    def append_later(self, row: AuditRow) -> Future[int]:
        """Queue a row nothing has to wait for (the gateway's result rows); its future
        gives its id once it is durable.

        It is written with the next row that must not wait, or ``later_s`` after it
        was queued, whichever comes first: at a steady flow of orders each order's
        result row shares the next order's intent commit instead of costing an fsync
        of its own. ``close()`` writes it too. InvalidInput for a malformed row.
        """
        return self._queue(check_row(row), due=time.monotonic() + self.later_s)

    def _queue(self, checked: AuditRow, due: float | None = None) -> Future[int]:
        """Hand a checked row (``check_row``: a malformed one fails alone, before this)
        to the writer thread."""
        future: Future[int] = Future()
        with self._cond:
            if self._closed:
                raise AuditError(f"the audit log {self.path} is closed")
            self._pending.append(_Pending(checked, self._clock.now_ms(), future, due))
            if due is None:
                self._urgent += 1
                self._cond.notify()
            elif due < self._wakes_by:  # else it comes back in time: spare it a wake-up
                self._cond.notify()
        return future

    def _append_here(self, row: AuditRow) -> int | None:
        """Commit ``row``, with the rows waiting for company, on this thread; None when
        that would mean waiting (a commit under way, rows that must not wait are queued,
        another process holds the log): the caller then hands it to the writer thread."""
        if not self._write_lock.acquire(blocking=False):
            return None
        try:
            with self._cond:
                if self._closed:
                    raise AuditError(f"the audit log {self.path} is closed")
                if self._urgent:  # the writer takes those next; this row may go with them
                    return None
                waiting, self._pending = self._pending, []
            mine = _Pending(row, self._clock.now_ms(), Future())
            try:
                conn = self._inline_connection()
                conn.execute("BEGIN IMMEDIATE")  # busy timeout 0: never waits here
            except (sqlite3.Error, AuditError):  # busy, or failing: the writer says which
                with self._cond:
                    self._pending[:0] = waiting
                    if waiting:
                        self._cond.notify()
                return None
            group = [item for item in waiting if item.future.set_running_or_notify_cancel()]
            mine.future.set_running_or_notify_cancel()
            group.append(mine)
            commits = self._commits
            try:
                self._write(group, conn, begun=True)
            finally:  # whatever happened, the log is not left locked
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
            self._inline_commits += self._commits - commits
        finally:
            self._write_lock.release()
        return mine.future.result()  # AuditError if the commit failed

    @property
    def commit_count(self) -> int:
        """Transactions committed by this object so far (each is one fsync)."""
        return self._commits

    @property
    def inline_commit_count(self) -> int:
        """Of those, the ones made on an appender's thread (``append(inline=True)``)."""
        return self._inline_commits

    @property
    def row_count(self) -> int:
        """Rows written by this object so far."""
        return self._rows

    # -- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._pending and (self._urgent or self._closed):
                        break
                    if not self._pending:
                        if self._closed:
                            return  # closed and drained
                        self._wakes_by = math.inf
                        self._cond.wait()
                        self._wakes_by = -math.inf
                        continue
                    # Only rows that may wait: the first is the oldest.
                    due = self._pending[0].due
                    if due is None or due <= time.monotonic():
                        break
                    self._wakes_by = due
                    self._cond.wait(due - time.monotonic())
                    self._wakes_by = -math.inf
            with self._write_lock:  # an inline commit may have taken the rows meanwhile
                with self._cond:
                    group = self._pending[: self.max_group]
                    del self._pending[: self.max_group]
                    self._urgent = sum(1 for item in self._pending if item.due is None)
                # A caller that gave up (a cancelled task) before now is left out.
                group = [item for item in group if item.future.set_running_or_notify_cancel()]
                if group:
                    self._write(group, self._conn)

    def _write(self, group: list[_Pending], conn: sqlite3.Connection, begun: bool = False) -> None:
        try:
            ids = self._commit(group, conn, begun)
        except BaseException as exc:  # every waiter must hear, whatever went wrong
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            text = str(exc) if isinstance(exc, sqlite3.Error) else type(exc).__name__
            for item in group:
                error = AuditError(f"could not write the audit log {self.path}: {text}")
                item.future.set_exception(error)
            return
        self._commits += 1
        self._rows += len(group)
        for item, row_id in zip(group, ids, strict=True):
            item.future.set_result(row_id)

    def _commit(self, group: list[_Pending], conn: sqlite3.Connection, begun: bool) -> list[int]:
        if not begun:
            conn.execute("BEGIN IMMEDIATE")
        last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        last_id, previous = (0, GENESIS) if last is None else (int(last[0]), str(last[1]))
        if not is_hash(previous):
            previous = GENESIS  # the log is already broken there; verify says where
        values_list, ids = [], []
        for item in group:
            last_id += 1
            values = to_columns(item.row, id=last_id, ts_ms=item.ts_ms)
            previous = link(previous, values)
            values_list.append((*values.values(), previous))
            ids.append(last_id)
        conn.executemany(_INSERT, values_list)
        conn.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this returns
        return ids

    # -- reading in the writing process ----------------------------------------------

    def read_rows(
        self,
        *,
        after_id: int = 0,
        since_ms: int | None = None,
        last: int | None = None,
        limit: int | None = None,
        match: Mapping[str, str] | None = None,
    ) -> list[StoredRow]:
        """``read_rows(path, ...)`` for the process that has this log open (the gateway).

        POSIX drops every lock a process holds on a file when it closes any
        descriptor of that file. The module's ``read_rows`` opens and closes
        the file to check its header, which would pull this log's locks from
        under its own connection, and another process could then checkpoint
        the WAL away while this one still reads it. So reads here go through
        one reader connection of this object's, made once, and only SQLite
        ever opens the file. Safe from any thread (one read at a time).
        """
        query, parameters = _row_query(after_id, since_ms, last, limit, match)
        with self._read_lock:
            if self._reader is None:
                self._reader = _connect(self.path, self.busy_timeout)
            return _fetch(self._reader, self.path, query, parameters)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Write everything already appended, stop the writer, close the file. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._write_lock:  # an inline commit finishes first
            if self._inline_conn is not None:
                self._inline_conn.close()
                self._inline_conn = None
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"


# -- reading ---------------------------------------------------------------------------


def read_rows(
    path: Path,
    *,
    after_id: int = 0,
    since_ms: int | None = None,
    last: int | None = None,
    limit: int | None = None,
    kind: str | None = None,
    request_kind: str | None = None,
    match: Mapping[str, str] | None = None,
) -> list[StoredRow]:
    """Rows in id order: after ``after_id``, at or after ``since_ms``, or the ``last`` N;
    only rows of ``kind`` and ``request_kind`` when given.

    ``match`` keeps rows whose columns equal the given text, for the columns
    in ``MATCHABLE`` (the dashboard's filters); any other key is InvalidInput.
    Opens the file for this read only (it never creates one): AuditError if missing.
    A process that holds the log open with ``AuditLog`` reads with
    ``AuditLog.read_rows`` instead (see there why).
    """
    wanted = dict(match or {})
    for column, value in (("kind", kind), ("request_kind", request_kind)):
        if value is not None:
            wanted[column] = value
    query, parameters = _row_query(after_id, since_ms, last, limit, wanted)
    with _reading(path) as conn:
        return _fetch(conn, path, query, parameters)


def _row_query(
    after_id: int,
    since_ms: int | None,
    last: int | None,
    limit: int | None,
    match: Mapping[str, str] | None,
) -> tuple[str, list[object]]:
    clauses: list[str] = ["id > ?"]
    parameters: list[object] = [after_id]
    if since_ms is not None:
        clauses.append("ts_ms >= ?")
        parameters.append(since_ms)
    for column, value in sorted((match or {}).items()):
        if column not in MATCHABLE:
            raise InvalidInput(f"audit rows cannot be filtered by {column!r}")
        clauses.append(f"{column} = ?")  # a name from MATCHABLE, never the caller's text
        parameters.append(value)
    where = " AND ".join(clauses)
    if last is not None:
        # Only constant clauses are joined in; every value is a parameter.
        query = f"SELECT * FROM ({_SELECT} WHERE {where} ORDER BY id DESC LIMIT ?) ORDER BY id"  # noqa: S608
        parameters.append(last)
    else:
        query = f"{_SELECT} WHERE {where} ORDER BY id"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(limit)
    return query, parameters


def _fetch(
    conn: sqlite3.Connection, path: Path, query: str, parameters: list[object]
) -> list[StoredRow]:
    try:
        raw = conn.execute(query, parameters).fetchall()
    except sqlite3.Error as exc:
        raise AuditError(f"could not read the audit log {path}: {exc}") from exc
    return [
        from_columns(dict(zip(COLUMNS, values, strict=False)), str(values[-1])) for values in raw
    ]


def verify_chain(path: Path) -> ChainReport:
    """Recompute every row's hash from its stored bytes; the first row that fails is named.

    A missing file is not a valid (empty) log: deleting the log must not pass.
    """
    path = Path(path)
    if not path.is_file():
        return ChainReport(False, 0, None, f"no audit log at {path}")
    damage: list[str] = []
    try:
        conn = _connect_existing(path, AuditLog.busy_timeout)
    except AuditError as exc:
        return ChainReport(False, 0, None, str(exc))
    # Invalid UTF-8 (a flipped byte in the file) must not stop the read: it
    # decodes to different text, so that row's hash fails and names it.
    conn.text_factory = lambda data: data.decode("utf-8", "surrogateescape")

    def rows() -> Iterator[tuple[dict[str, object], object]]:
        try:
            for values in conn.execute(f"{_SELECT} ORDER BY id"):
                yield dict(zip(COLUMNS, values, strict=False)), values[-1]
        except sqlite3.Error as exc:
            damage.append(type(exc).__name__)

    try:
        report = verify_rows(rows())
    finally:
        conn.close()
    if damage and report.ok:
        broken = report.rows + 1
        return ChainReport(
            False, report.rows, broken, f"row {broken} cannot be read: the file is damaged"
        )
    return report


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    conn = _connect_existing(path, AuditLog.busy_timeout)
    try:
        yield conn
    finally:
        conn.close()


# -- the file --------------------------------------------------------------------------


def _prepare_file(path: Path) -> list[str]:
    """Make the directory (0700) and the file (0600) if missing; check modes and kind."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # whatever the umask says
    if path.is_symlink():
        raise AuditError(f"the audit log {path} is a symbolic link; refusing to follow it")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        _fsync_directory(directory)  # the new name survives a power cut too
    if not path.is_file():
        raise AuditError(f"the audit log {path} is not a regular file")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o022:
        raise AuditError(
            f"the audit log {path} is writable by group or others (mode {mode:04o}); "
            f"fix it with: chmod 600 {path}"
        )
    _check_header(path)
    if mode & 0o077:
        return [f"the audit log {path} is readable by group or others (mode {mode:04o})"]
    return []


def _check_header(path: Path) -> None:
    """Refuse a file that is not ours before SQLite touches it (it would add -wal beside it)."""
    with path.open("rb") as file:
        head = file.read(100)
    if not head:
        return  # just created (or created and killed before the schema): ours to fill
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise AuditError(f"{path} is not a keybroker audit log")
    application_id = int.from_bytes(head[68:72], "big")
    if application_id not in (0, APPLICATION_ID):
        raise AuditError(f"{path} is not a keybroker audit log")


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw",  # never creates: _prepare_file did
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,  # BEGIN IMMEDIATE / COMMIT are ours
            check_same_thread=False,  # used by the writer thread, closed by the owner
        )
    except sqlite3.Error as exc:
        raise AuditError(f"could not open the audit log {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
    except sqlite3.Error as exc:
        conn.close()
        raise AuditError(f"could not open the audit log {path}: {exc}") from exc
    return conn


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    """The writer's durability settings (readers leave the file's mode alone)."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: with WAL, the commit fsyncs the WAL. NORMAL would survive a
        # killed process but not a power cut, and an intent row must outlive
        # both: the order it records may already be at the exchange.
        conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as exc:
        raise AuditError(f"could not open the audit log {path}: {exc}") from exc


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    """An SQLite file with tables but no audit schema is someone else's: do not touch it."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.Error as exc:
        raise AuditError(f"{path} is not a keybroker audit log ({exc})") from exc
    if version == 0 and tables:
        raise AuditError(f"{path} is not a keybroker audit log")


def _connect_existing(path: Path, busy_timeout: float) -> sqlite3.Connection:
    if not path.is_file():
        raise AuditError(f"no audit log at {path}")
    _check_header(path)
    conn = _connect(path, busy_timeout)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            raise AuditError(f"{path} is not a keybroker audit log (no table)")
        if version > SCHEMA_VERSION:
            raise AuditError(f"the audit log {path} was written by a newer keybroker")
    except sqlite3.Error as exc:
        conn.close()
        raise AuditError(f"could not read the audit log {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise AuditError(f"the audit log {path} was written by a newer keybroker")
            if version == 0:
                tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise AuditError(f"{path} is not a keybroker audit log")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
                for statement in filter(str.strip, _TABLE.split(";")):
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise AuditError(f"could not set up the audit log {path}: {exc}") from exc


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
