"""The vault file on disk: permissions, recognising a vault, connecting, the header row.

    >>> warnings = check_mode(path, is_dir=False)   # raises InsecurePermissions
    >>> check_file_header(path)                     # raises VaultDamaged; reads 100 bytes
    >>> conn = connect(path, busy_timeout=10.0)     # never creates the file

Everything here runs before the vault is trusted, so none of it may write to
a file it has not recognised as a keybroker vault.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from keybroker.clock import Clock
from keybroker.crypto.kdf import Argon2idParams
from keybroker.errors import (
    InsecurePermissions,
    InvalidInput,
    VaultDamaged,
    VaultError,
    VaultExists,
)
from keybroker.vault import _schema
from keybroker.vault._schema import write_transaction
from keybroker.vault.records import utc_from_ms

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_HEADER_BYTES = 32


@dataclass(frozen=True, slots=True)
class Header:
    """The header row: what unlocking needs, and what the wrapped key is bound to."""

    vault_id: str
    params: Argon2idParams
    salt: bytes
    wrapped_key: bytes


def check_mode(target: Path, *, is_dir: bool) -> list[str]:
    """Refuse what others can write; return a warning for what others can read."""
    mode = stat.S_IMODE(os.stat(target).st_mode)
    fix = f"chmod {'700' if is_dir else '600'} {target}"
    what = "directory" if is_dir else "file"
    if mode & 0o022:
        raise InsecurePermissions(
            f"vault {what} {target} is writable by group or others (mode {mode:04o}); "
            f"fix it with: {fix}"
        )
    if mode & 0o077:
        return [
            f"vault {what} {target} is readable by group or others (mode {mode:04o}); "
            f"fix it with: {fix}"
        ]
    return []


def damaged(reason: str) -> VaultDamaged:
    """The one message shape for a damaged file: the CLI prints it as one line."""
    return VaultDamaged(f"vault file is damaged: {reason}")


def check_file_header(path: Path) -> None:
    """Recognise a keybroker vault from its first 100 bytes, before SQLite touches it.

    SQLite would happily treat an empty file as a new database, and opening a
    foreign one would create -wal/-shm files beside it; this check keeps
    damaged and foreign files byte-for-byte untouched.
    """
    with path.open("rb") as file:
        head = file.read(100)
        size = os.fstat(file.fileno()).st_size
    if not head:
        raise damaged("the file is empty")
    if not head.startswith(_SQLITE_MAGIC[: len(head)]):
        raise damaged("not an SQLite database (garbage or another kind of file)")
    if len(head) < 100:
        raise damaged(f"truncated to {size} bytes")
    application_id = int.from_bytes(head[68:72], "big")
    if application_id != _schema.APPLICATION_ID:
        raise damaged(f"not a keybroker vault (SQLite application id {application_id:#x})")
    raw_page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if raw_page_size == 1 else raw_page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise damaged(f"bad page size {page_size}")
    # The page count at offset 28 is valid when the change counter (24) equals
    # "version valid for" (92). A non-empty WAL may legitimately hold pages the
    # main file does not have yet (a crash mid-checkpoint), so only judge
    # truncation when there is none.
    pages = int.from_bytes(head[28:32], "big")
    counter_valid = head[24:28] == head[92:96] and pages > 0
    if not _wal_has_frames(path) and (
        size % page_size or (counter_valid and size < pages * page_size)
    ):
        raise damaged(f"truncated ({size} bytes, expected {pages * page_size})")


def _wal_has_frames(path: Path) -> bool:
    try:
        return os.stat(f"{path}-wal").st_size > _WAL_HEADER_BYTES
    except FileNotFoundError:
        return False


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection to an existing file, with the vault's durability and safety pragmas."""
    # mode=rw: SQLite must never create a vault as a side effect of opening one.
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=rw",
        uri=True,
        timeout=busy_timeout,
        isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
        check_same_thread=False,  # guarded by Vault._lock
    )
    try:
        # FULL, not NORMAL: with WAL, NORMAL survives a killed process but a
        # power cut can lose the last commits. The last commit may be a new
        # passphrase the user was told is in force (the old one forgotten), or
        # a secret the exchange will never show again. A few ms per write is
        # cheap for that.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
    except BaseException:
        conn.close()
        raise
    return conn


def check_database(conn: sqlite3.Connection) -> None:
    """SQLite's own structural check, then nothing foreign in the schema; VaultDamaged otherwise."""
    result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        detail = "; ".join(str(result[0]).splitlines()) if result else "no answer"
        raise damaged(f"integrity check failed: {detail}")
    # A trigger or view in a vault was put there by someone else: a trigger
    # could copy rows or old wrapped keys aside on every write.
    extra = conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'view')"
    ).fetchone()
    if extra is not None:
        raise damaged(f"unexpected schema object {extra[0]!r}")
    if _schema.schema_version(conn) < 1:
        raise damaged("the vault was never finished (schema version 0)")


def read_header(conn: sqlite3.Connection) -> Header:
    """The header row, checked for shape only (unwrapping the data key authenticates it)."""
    rows = conn.execute(
        "SELECT magic, vault_id, kdf_memory_kib, kdf_iterations, kdf_lanes, kdf_salt, "
        "wrapped_key FROM header"
    ).fetchall()
    if len(rows) != 1:
        raise damaged("the header row is missing")
    magic, vault_id, memory, iterations, lanes, salt, wrapped = rows[0]
    if magic != _schema.MAGIC:
        raise damaged("not a keybroker vault (bad header magic)")
    if not (
        isinstance(vault_id, str)
        and all(isinstance(v, int) for v in (memory, iterations, lanes))
        and isinstance(salt, bytes)
        and isinstance(wrapped, bytes)
    ):
        raise damaged("the header has values of the wrong type")
    try:
        params = Argon2idParams(memory_kib=memory, iterations=iterations, lanes=lanes)
    except InvalidInput as exc:
        raise damaged(f"the header's KDF parameters are invalid ({exc})") from None
    return Header(vault_id, params, salt, wrapped)


def update_header(conn: sqlite3.Connection, header: Header) -> None:
    """Replace the KDF settings and wrapped key (the caller holds the write transaction)."""
    conn.execute(
        "UPDATE header SET kdf_memory_kib = ?, kdf_iterations = ?, kdf_lanes = ?, "
        "kdf_salt = ?, wrapped_key = ? WHERE id = 1",
        (
            header.params.memory_kib,
            header.params.iterations,
            header.params.lanes,
            header.salt,
            header.wrapped_key,
        ),
    )


def build_file(path: Path, header: Header, clock: Clock, busy_timeout: float) -> None:
    """Write a complete vault under a temporary name, then link it to ``path`` atomically."""
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}.creating")
    fd = os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    try:
        conn = connect(staging, busy_timeout)
        try:
            with sqlite_errors():
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA application_id = {_schema.APPLICATION_ID:d}")
                _schema.migrate(conn)
                with write_transaction(conn):
                    conn.execute(
                        "INSERT INTO header (id, magic, vault_id, created_at, kdf_memory_kib, "
                        "kdf_iterations, kdf_lanes, kdf_salt, wrapped_key) "
                        "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            _schema.MAGIC,
                            header.vault_id,
                            utc_from_ms(clock.now_ms()).isoformat(),
                            header.params.memory_kib,
                            header.params.iterations,
                            header.params.lanes,
                            header.salt,
                            header.wrapped_key,
                        ),
                    )
        finally:
            conn.close()  # checkpoints the WAL into the file and removes it
        try:
            # link() fails if `path` appeared meanwhile, where rename() would
            # silently replace another process's new vault.
            os.link(staging, path)
        except FileExistsError:
            raise VaultExists(f"a vault already exists at {path}") from None
        _fsync_dir(path.parent)
    finally:
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def sqlite_errors() -> Iterator[None]:
    """Translate sqlite3 errors at the boundary into the vault's own (no SQL values in them)."""
    try:
        yield
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc)
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or text.startswith(
            ("no such table", "no such column")
        ):
            raise damaged(text) from exc
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            raise VaultError(
                "the vault is busy: another process kept it locked; try again"
            ) from exc
        raise VaultError(f"vault storage error: {text}") from exc
