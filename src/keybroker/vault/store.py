"""The encrypted vault: one SQLite file holding exchange keys sealed under a passphrase.

    >>> vault = Vault.create(home / "vault.db", Secret("a long passphrase"))
    >>> vault.add("bot1", "binance", KeyMaterial("public-id", Secret("FAKE-SECRET")))
    >>> vault.credential("bot1").secret
    Secret('***')

Opening never creates or changes a file that is not a keybroker vault; a
damaged file is reported and left exactly as it was (a vault of an older
schema is upgraded in place: _schema.py). Every write is one
``BEGIN IMMEDIATE`` transaction with ``synchronous=FULL``, so a process killed
at any instant leaves the vault as it was before the write or after it.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import cast

from keybroker.clock import Clock, SystemClock
from keybroker.crypto.aead import new_key
from keybroker.crypto.kdf import Argon2idParams, derive_key, new_salt
from keybroker.crypto.keys import RemoteKey
from keybroker.crypto.signing import forget_cached_keys
from keybroker.errors import (
    CredentialExists,
    CredentialNotFound,
    InvalidInput,
    RecordTampered,
    VaultDamaged,
    VaultError,
    VaultExists,
    VaultLocked,
    VaultNotFound,
    WeakPassphrase,
    WrongPassphrase,
)
from keybroker.model import ENVIRONMENTS, EXCHANGES, Credential, check_choice, mask
from keybroker.secret import Secret
from keybroker.vault import _file, _schema
from keybroker.vault._schema import write_transaction
from keybroker.vault.admin_tokens import AdminTokenStore
from keybroker.vault.halts import HaltStore
from keybroker.vault.nonces import NonceStore
from keybroker.vault.policies import PolicyStore
from keybroker.vault.records import (
    COLUMNS,
    CredentialRecord,
    KeyMaterial,
    associated_data,
    check_base_url,
    check_name,
    columns_for,
    normalize_scopes,
    record_from_columns,
    seal_material,
    unseal_credential,
    unwrap_data_key,
    utc_from_ms,
    wrap_data_key,
)
from keybroker.vault.tokens import TokenStore

MIN_PASSPHRASE_CHARS = 12
HEADER_RESULT_NAME = "(header)"  # parentheses cannot occur in a credential name

_SELECT_ROW = f"SELECT id, {', '.join(COLUMNS)}, sealed FROM credentials"  # noqa: S608 - constants
_INSERT_ROW = (
    f"INSERT INTO credentials (id, {', '.join(COLUMNS)}, sealed) "  # noqa: S608 - constants
    f"VALUES (?, {', '.join('?' for _ in COLUMNS)}, ?)"
)
_UPDATE_ROW = (
    f"UPDATE credentials SET {', '.join(f'{c} = ?' for c in COLUMNS)}, sealed = ? "  # noqa: S608
    "WHERE id = ?"
)


@dataclass(frozen=True, slots=True)
class VaultInfo:
    """What ``keybroker info`` shows; readable without the passphrase."""

    path: Path
    vault_id: str
    schema_version: int
    kdf: Argon2idParams
    record_count: int
    file_mode: int
    dir_mode: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """One line of ``verify()``: a credential (or ``(header)``) and whether it authenticated."""

    name: str
    ok: bool


class Vault(PolicyStore, TokenStore, AdminTokenStore, HaltStore, NonceStore):
    """An open vault file. Locked until ``unlock``; ``list``/``record``/``info`` work locked.

    Build one with ``Vault.create`` or ``Vault.open``. Methods are safe to
    call from several threads (one lock around the connection); several
    processes may use the same file at once (SQLite WAL and a busy timeout).
    Credentials live here; policies, bot tokens, halts and nonce leases in
    the parts named in the bases (policies.py, tokens.py, halts.py, nonces.py).
    """

    # Seconds to wait before saying "wrong passphrase": on top of the KDF's own
    # cost it slows a guessing script. Tests shorten it; keep it on elsewhere.
    wrong_passphrase_delay: float = 1.0
    # How long a writer waits for another process's transaction to finish.
    busy_timeout: float = 10.0

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        header: _file.Header,
        warnings: list[str],
        clock: Clock,
    ) -> None:
        """Internal: use ``Vault.create`` or ``Vault.open``."""
        self.path = path
        self.warnings = warnings
        self._conn = conn
        self._header = header
        self._clock = clock
        self._data_key: Secret | None = None
        # name -> (the exact row that authenticated, its credential); see credential().
        self._opened: dict[str, tuple[tuple[object, ...], Credential]] = {}
        self._lock = threading.RLock()
        self._touched: dict[str, int] = {}
        self._key_generation = 0  # bumped by lock(): see change_marker()

    # -- opening and closing ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        passphrase: Secret,
        *,
        kdf: Argon2idParams | None = None,
        clock: Clock | None = None,
    ) -> Vault:
        """Create a new vault file and return it unlocked.

        The home directory is made 0700 if missing, the file is 0600. The file
        is built under a temporary name and linked into place in one step, so
        a crash during ``init`` never leaves a half-made vault behind.
        Raises VaultExists, WeakPassphrase, InsecurePermissions.
        """
        path = Path(path)
        _check_new_passphrase(passphrase)
        home = path.parent
        if not home.exists():
            home.mkdir(mode=0o700, parents=True)
            os.chmod(home, 0o700)  # whatever the umask says
        _file.check_mode(home, is_dir=True)
        if path.exists() or path.is_symlink():
            raise VaultExists(f"a vault already exists at {path}")
        params = kdf if kdf is not None else Argon2idParams.calibrate()
        vault_id, salt, data_key = uuid.uuid4().hex, new_salt(), Secret(new_key())
        kek = derive_key(passphrase.reveal(), salt, params)
        wrapped = wrap_data_key(kek, data_key, vault_id, params, salt)
        header = _file.Header(vault_id, params, salt, wrapped)
        _file.build_file(path, header, clock or SystemClock(), cls.busy_timeout)
        vault = cls.open(path, clock=clock)
        vault._data_key = data_key
        return vault

    @classmethod
    def open(cls, path: Path, *, clock: Clock | None = None) -> Vault:
        """Open an existing vault, locked. Never creates or rewrites the file.

        Raises VaultNotFound, InsecurePermissions (writable by group or
        others), VaultDamaged (not a keybroker vault, truncated, garbage).
        Readable-by-others problems are collected in ``.warnings``.
        """
        path = Path(path)
        if not path.exists():
            raise VaultNotFound(f"no vault at {path}; run `keybroker init`")
        if not path.is_file():
            raise VaultDamaged(f"vault file is damaged: {path} is not a regular file")
        warnings = [
            *_file.check_mode(path.parent, is_dir=True),
            *_file.check_mode(path, is_dir=False),
        ]
        _file.check_file_header(path)
        conn = _file.connect(path, cls.busy_timeout)
        try:
            with _file.sqlite_errors():
                _file.check_database(conn)
                _schema.migrate(conn)
                header = _file.read_header(conn)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn, header, warnings, clock or SystemClock())

    def unlock(self, passphrase: Secret) -> None:
        """Derive the KEK and unwrap the data key; WrongPassphrase (after a delay) if it fails."""
        with self._lock, _file.sqlite_errors():
            header = _file.read_header(self._conn)
        data_key = self._unwrap(passphrase, header)
        with self._lock:
            self.lock()
            self._header, self._data_key = header, data_key

    def lock(self) -> None:
        """Forget the data key (best-effort wipe: see keybroker.secret), the opened
        credentials, and the signers' cached key states (as secret as the keys)."""
        with self._lock:
            self._key_generation += 1
            if self._data_key is not None:
                self._data_key.wipe()
            self._data_key = None
            for _, credential in self._opened.values():
                _forget(credential)
            self._opened.clear()
            forget_cached_keys()

    @property
    def is_unlocked(self) -> bool:
        return self._data_key is not None

    def change_marker(self) -> tuple[int, int, int]:
        """A value that differs after any change to the file or to this vault's unlock state.

        Equal markers mean nothing was committed in between, by this object or
        by any other connection or process, and the vault was neither locked
        nor unlocked: a reader may keep what it decrypted (the gateway's
        VaultAccess does, per request). One ``PRAGMA data_version`` (other
        connections' commits) plus this connection's change count; no table
        is read. Works locked.
        """
        with self._lock, _file.sqlite_errors():
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            return self._key_generation, int(version), self._conn.total_changes

    def close(self) -> None:
        with self._lock:
            self.lock()
            self._conn.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "unlocked" if self.is_unlocked else "locked"
        return f"Vault({str(self.path)!r}, {state})"

    # -- reading ---------------------------------------------------------------------

    def info(self) -> VaultInfo:
        """Facts about the vault that need no passphrase."""
        with self._lock, _file.sqlite_errors():
            header = _file.read_header(self._conn)
            count = self._conn.execute("SELECT COUNT(*) FROM credentials").fetchone()[0]
            version = _schema.schema_version(self._conn)
        return VaultInfo(
            path=self.path,
            vault_id=header.vault_id,
            schema_version=version,
            kdf=header.params,
            record_count=int(count),
            file_mode=stat.S_IMODE(os.stat(self.path).st_mode),
            dir_mode=stat.S_IMODE(os.stat(self.path.parent).st_mode),
            warnings=tuple(self.warnings),
        )

    def list_credentials(self) -> list[CredentialRecord]:
        """Every credential's metadata, sorted by name; works locked (nothing is decrypted)."""
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(f"{_SELECT_ROW} ORDER BY name").fetchall()
        return [record_from_columns(_columns(row)) for row in rows]

    def record(self, name: str) -> CredentialRecord:
        """One credential's metadata; works locked. Raises CredentialNotFound."""
        return record_from_columns(_columns(self._row(name)))

    def credential(self, name: str) -> Credential:
        """Decrypt one credential for signing; every call reads its row afresh.

        A row byte-for-byte identical to one that already authenticated under
        this unlock is answered from memory: decrypting it again would give the
        same answer, and this keeps a lookup near the cost of one SELECT. Any
        edit to the row, a rotation by another process included, misses and is
        decrypted (and authenticated) again. Each call returns its own copies
        of the secrets, so a caller wiping its copy affects nobody else.
        Raises VaultLocked, CredentialNotFound, RecordTampered.
        """
        with self._lock:
            data_key = self._require_key()
            row = self._row(name)
            opened = self._opened.get(name)
            if opened is not None and opened[0] == row:
                return _copy(opened[1])
        credential = self._open_row(data_key, row)
        with self._lock:
            if self._data_key is data_key:  # not locked meanwhile
                self._forget_opened(name)
                self._opened[name] = (row, _copy(credential))
        return credential

    def verify(self) -> list[VerifyResult]:
        """Authenticate the header and every record; needs the vault unlocked.

        The first result is ``(header)``: the header must be exactly the one
        this vault was unlocked with (a passphrase change by another process
        since then also shows as not ok: unlock again and re-run). Then one
        result per credential, sorted by name; then ``policy:NAME`` per policy
        and ``token:BOT`` per bot token (revoked ones too), ``admin-token:NAME`` per admin token.
        """
        with self._lock:
            data_key = self._require_key()
            try:
                with _file.sqlite_errors():
                    header_ok = _file.read_header(self._conn) == self._header
            except VaultDamaged:
                header_ok = False
            with _file.sqlite_errors():
                rows = self._conn.execute(f"{_SELECT_ROW} ORDER BY name").fetchall()
        results = [VerifyResult(HEADER_RESULT_NAME, header_ok)]
        for row in rows:
            name = row[1] if isinstance(row[1], str) else f"(row {row[0]})"
            try:
                _forget(self._open_row(data_key, row))
            except RecordTampered:
                results.append(VerifyResult(name, False))
            else:
                results.append(VerifyResult(name, True))
        results += [VerifyResult(f"policy:{n}", ok) for n, ok in self._verify_policies(data_key)]
        results += [VerifyResult(f"token:{b}", ok) for b, ok in self._verify_tokens(data_key)]
        results += [
            VerifyResult(f"admin-token:{n}", ok) for n, ok in self._verify_admin_tokens(data_key)
        ]
        return results

    # -- writing ---------------------------------------------------------------------

    def add(
        self,
        name: str,
        exchange: str,
        material: KeyMaterial,
        *,
        environment: str = "testnet",
        scopes: Sequence[str] = ("read",),
        base_url: str | None = None,
        notes: str = "",
    ) -> CredentialRecord:
        """Store a new credential. Raises InvalidInput, VaultLocked, CredentialExists."""
        check_name(name)
        check_choice("exchange", exchange, EXCHANGES)
        check_choice("environment", environment, ENVIRONMENTS)
        scope_tuple = normalize_scopes(scopes)
        if base_url is not None:
            check_base_url(base_url)
        if not isinstance(material, KeyMaterial):
            raise TypeError("material must be a keybroker.vault.KeyMaterial")
        if not isinstance(notes, str):
            raise InvalidInput("notes must be text")
        with self._lock:
            data_key = self._require_key()
            record = CredentialRecord(
                name=name,
                exchange=exchange,
                environment=environment,
                scopes=scope_tuple,
                key_type=material.key_type,
                key_id=mask(material.api_key),
                created_at=utc_from_ms(self._clock.now_ms()),
                rotated_at=None,
                key_history=(),
                base_url=base_url,
                notes=notes,
                version=1,
            )
            # Random ids are never reused, so a removed record's ciphertext
            # can never authenticate in a later row.
            record_id = secrets.randbits(62) + 1
            columns = columns_for(record)
            sealed = seal_material(
                data_key, material, associated_data(self._header.vault_id, record_id, columns)
            )
            with _file.sqlite_errors(), write_transaction(self._conn):
                if self._find_id(name) is not None:
                    raise CredentialExists(f"a credential named {name!r} already exists")
                self._conn.execute(_INSERT_ROW, (record_id, *columns.values(), sealed))
        return record

    def rotate(self, name: str, material: KeyMaterial) -> CredentialRecord:
        """Replace a credential's key material; the old api key id goes into the history.

        The current record is authenticated first, so rotating can never turn
        edited metadata into authentic metadata. Sets ``rotated_at``, bumps
        ``version`` and scrubs the old ciphertext from the file.
        Raises VaultLocked, CredentialNotFound, RecordTampered.
        """
        if not isinstance(material, KeyMaterial):
            raise TypeError("material must be a keybroker.vault.KeyMaterial")
        with self._lock:
            data_key = self._require_key()
            with _file.sqlite_errors(), write_transaction(self._conn):
                row = self._row(name)
                _forget(self._open_row(data_key, row))
                old = record_from_columns(_columns(row))
                now = utc_from_ms(self._clock.now_ms())
                record = replace(
                    old,
                    key_type=material.key_type,
                    key_id=mask(material.api_key),
                    rotated_at=now,
                    key_history=(*old.key_history, (old.key_id, now)),
                    version=old.version + 1,
                )
                columns = columns_for(record)
                record_id = cast(int, row[0])  # _open_row checked it
                aad = associated_data(self._header.vault_id, record_id, columns)
                sealed = seal_material(data_key, material, aad)
                self._conn.execute(_UPDATE_ROW, (*columns.values(), sealed, record_id))
            self._forget_opened(name)
            self._scrub()
        return record

    def remove(self, name: str) -> None:
        """Delete a credential and its policy; scrub its ciphertext. Raises CredentialNotFound.

        Works locked: deleting needs no key, and a record that fails
        authentication must stay removable. A halt on the name stays until
        resumed (a kill switch is never lifted as a side effect).
        """
        with self._lock:
            with _file.sqlite_errors(), write_transaction(self._conn):
                deleted = self._conn.execute("DELETE FROM credentials WHERE name = ?", (name,))
                if deleted.rowcount == 0:
                    raise CredentialNotFound(f"no credential named {name!r}")
                self._conn.execute("DELETE FROM policies WHERE name = ?", (name,))
            self._forget_opened(name)
            self._scrub()

    def change_passphrase(self, new: Secret) -> None:
        """Rewrap the data key under a new passphrase: one row, one transaction.

        A process killed at any instant leaves the vault opening with the old
        or the new passphrase, never neither (tests/unit/vault kills it at many
        points to show this). Records are not re-encrypted: the data key stays.
        Raises VaultLocked, WeakPassphrase.
        """
        _check_new_passphrase(new)
        with self._lock:
            data_key = self._require_key()
            # The KDF runs outside the lock and the transaction; _replace_header
            # then refuses if another process changed the parameters meanwhile.
            # A concurrent passphrase change (same parameters) is simply
            # superseded: the last passphrase set wins.
            header = self._header
        salt = new_salt()
        kek = derive_key(new.reveal(), salt, header.params)
        wrapped = wrap_data_key(kek, data_key, header.vault_id, header.params, salt)
        self._replace_header(header, replace(header, salt=salt, wrapped_key=wrapped))

    def upgrade_kdf(self, passphrase: Secret, params: Argon2idParams) -> None:
        """Rewrap the data key under stronger Argon2id parameters and a fresh salt.

        Raises InvalidInput if ``params`` are weaker than the current ones (a
        downgrade must never happen by accident), WrongPassphrase.
        """
        with self._lock, _file.sqlite_errors():
            header = _file.read_header(self._conn)
        if params.is_weaker_than(header.params):
            raise InvalidInput(
                f"refusing weaker KDF parameters: {_describe(params)} is below the "
                f"current {_describe(header.params)}"
            )
        data_key = self._unwrap(passphrase, header)
        try:
            salt = new_salt()
            kek = derive_key(passphrase.reveal(), salt, params)
            wrapped = wrap_data_key(kek, data_key, header.vault_id, params, salt)
        finally:
            data_key.wipe()  # our own copy; an unlocked vault keeps its own
        self._replace_header(header, _file.Header(header.vault_id, params, salt, wrapped))

    # -- internals -------------------------------------------------------------------

    def _require_key(self) -> Secret:
        if self._data_key is None:
            raise VaultLocked("the vault is locked; unlock it with the passphrase first")
        return self._data_key

    def _unwrap(self, passphrase: Secret, header: _file.Header) -> Secret:
        kek = derive_key(passphrase.reveal(), header.salt, header.params)
        try:
            return unwrap_data_key(
                kek, header.wrapped_key, header.vault_id, header.params, header.salt
            )
        except RecordTampered:
            time.sleep(self.wrong_passphrase_delay)
            raise WrongPassphrase("wrong passphrase") from None

    def _replace_header(self, old: _file.Header, new: _file.Header) -> None:
        with self._lock:
            with _file.sqlite_errors(), write_transaction(self._conn):
                current = _file.read_header(self._conn)
                # Another process may have upgraded the KDF meanwhile; writing
                # ours would silently undo that.
                if (current.vault_id, current.params) != (old.vault_id, old.params):
                    raise VaultError(
                        "the vault header was changed by another process; unlock again and retry"
                    )
                _file.update_header(self._conn, new)
            self._header = new
            # The old wrapping opens under the old passphrase: do not leave it in the WAL.
            self._scrub()

    def _forget_opened(self, name: str) -> None:
        opened = self._opened.pop(name, None)
        if opened is not None:
            _forget(opened[1])

    def _scrub(self) -> None:
        # secure_delete zeroes freed cells inside pages; a TRUNCATE checkpoint
        # then copies the clean pages into the file and empties the WAL, where
        # old page images (an old wrapped key, an old secret) would linger.
        # Best effort: a reader holding an old snapshot can make it incomplete,
        # and the next checkpoint finishes the job.
        with _file.sqlite_errors():
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _row(self, name: str) -> tuple[object, ...]:
        with self._lock, _file.sqlite_errors():
            row = self._conn.execute(f"{_SELECT_ROW} WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise CredentialNotFound(f"no credential named {name!r}")
        return tuple(row)

    def _find_id(self, name: str) -> int | None:
        row = self._conn.execute("SELECT id FROM credentials WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def _open_row(self, data_key: Secret, row: Sequence[object]) -> Credential:
        columns = _columns(row)
        record = record_from_columns(columns)
        record_id, sealed = row[0], row[-1]
        if not isinstance(record_id, int) or not isinstance(sealed, bytes):
            raise RecordTampered(f"credential {record.name!r} failed authentication")
        aad = associated_data(self._header.vault_id, record_id, columns)
        return unseal_credential(data_key, record, sealed, aad)


def _columns(row: Sequence[object]) -> dict[str, object]:
    return dict(zip(COLUMNS, row[1:-1], strict=True))


def _copy(credential: Credential) -> Credential:
    passphrase = credential.passphrase
    secret = credential.secret
    return credential.replace(
        # A remote key holds no bytes to copy: only its name, which nobody wipes.
        secret=secret if isinstance(secret, RemoteKey) else Secret(secret.reveal()),
        passphrase=None if passphrase is None else Secret(passphrase.reveal()),
    )


def _forget(credential: Credential) -> None:
    credential.secret.wipe()
    if credential.passphrase is not None:
        credential.passphrase.wipe()


def _describe(params: Argon2idParams) -> str:
    return f"{params.memory_kib // 1024} MiB × {params.iterations} passes"


def _check_new_passphrase(passphrase: Secret) -> None:
    if not isinstance(passphrase, Secret):
        raise TypeError("the passphrase must be a keybroker.Secret")
    try:
        length = len(passphrase.reveal_text())
    except UnicodeDecodeError:
        raise InvalidInput("the passphrase is not UTF-8 text") from None
    if length < MIN_PASSPHRASE_CHARS:
        raise WeakPassphrase(
            f"passphrase is too short: use at least {MIN_PASSPHRASE_CHARS} characters"
        )
