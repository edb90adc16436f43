"""Admin tokens: how a person proves to the dashboard that they may watch and halt.

    >>> token, info = vault.create_admin_token("alice", expires_at=None)
    >>> vault.check_admin_token(token.reveal_text()).name
    'alice'

An admin token is a kind of its own, not a bot token with a flag: it is
``kbadm_`` followed by 32 random bytes in unpadded base64url, kept in its own
table under its own MAC key. So a bot token can never open the dashboard
(``check_admin_token`` refuses its shape before any lookup) and an admin
token can never sign an exchange request (``check_token`` refuses this
shape, and the gateway's bearer parsing wants ``kb_``). Both directions are
tested, because a bot that could halt every credential, or a dashboard
password that could trade, would each be a loss waiting to happen.

As with bot tokens, the vault keeps only the SHA-256 of the token, every row
is authenticated with an HMAC under a key derived from the data key (so
granting, un-revoking or un-expiring a row in SQLite fails as
RecordTampered), a name has at most one active token, and revoked rows stay
for ``tokens list-admin``.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from keybroker.errors import BadToken, InvalidInput, RecordTampered
from keybroker.secret import Secret
from keybroker.vault import _file
from keybroker.vault._parts import VaultParts, canonical, parse_time, time_text
from keybroker.vault._schema import write_transaction
from keybroker.vault.tokens import TOKEN_BYTES, TOUCH_INTERVAL_MS, check_bot_name, token_hash

ADMIN_TOKEN_PREFIX = "kbadm_"  # noqa: S105 - a prefix, not a token
_ADMIN_TOKEN_TEXT = re.compile(r"kbadm_[A-Za-z0-9_-]{43}")
_MAC_KEY_LABEL = b"keybroker/admin-token-mac/v1"
_COLUMNS = ("name", "token_hash", "created_at", "expires_at", "revoked_at")
_SELECT = f"SELECT id, {', '.join(_COLUMNS)}, last_used_at, mac FROM admin_tokens"  # noqa: S608
_ORDER = "ORDER BY name, created_at, revoked_at IS NULL, id"


@dataclass(frozen=True, slots=True)
class AdminToken:
    """What the vault knows about one admin's token; never the token itself."""

    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime) -> str:
        """``"revoked"``, ``"expired"`` (at or after expires_at) or ``"active"``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


def new_admin_token_text() -> str:
    """``kbadm_`` + base64url of 32 bytes from the OS's CSPRNG, without padding."""
    raw = secrets.token_bytes(TOKEN_BYTES)
    return ADMIN_TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def admin_token_mac(
    data_key: Secret, vault_id: str, row_id: int, columns: dict[str, object]
) -> bytes:
    """HMAC-SHA256 of an admin-token row, under a key used for nothing else."""
    mac_key = hmac.digest(data_key.reveal(), _MAC_KEY_LABEL, "sha256")
    bound: dict[str, object] = {"vault_id": vault_id, "id": row_id}
    for column in _COLUMNS:
        value = columns[column]
        bound[column] = value.hex() if isinstance(value, bytes) else value
    return hmac.digest(mac_key, b"keybroker/admin-token/v1\n" + canonical(bound), "sha256")


def _columns_for(token: AdminToken, digest: bytes) -> dict[str, object]:
    return {
        "name": token.name,
        "token_hash": digest,
        "created_at": time_text(token.created_at),
        "expires_at": None if token.expires_at is None else time_text(token.expires_at),
        "revoked_at": None if token.revoked_at is None else time_text(token.revoked_at),
    }


def _from_row(row: Sequence[object]) -> AdminToken:
    _id, name, _hash, created, expires, revoked, used, _mac = row
    try:
        if not isinstance(name, str):
            raise ValueError("name")
        check_bot_name(name)
        return AdminToken(
            name=name,
            created_at=parse_time(created),
            expires_at=None if expires is None else parse_time(expires),
            revoked_at=None if revoked is None else parse_time(revoked),
            last_used_at=None if used is None else parse_time(used),
        )
    except (ValueError, TypeError, InvalidInput):
        label = repr(name) if isinstance(name, str) and len(name) <= 64 else "(unreadable)"
        raise RecordTampered(f"the admin token of {label} failed authentication") from None


class AdminTokenStore(VaultParts):
    """The admin-token part of Vault."""

    def create_admin_token(
        self, name: str, *, expires_at: datetime | None
    ) -> tuple[Secret, AdminToken]:
        """Issue an admin token for ``name``; return it (show it once) and its record.

        Raises VaultLocked, InvalidInput (a bad name, an expiry not in the
        future or without a time zone, or ``name`` already has an active
        admin token: revoke it first).
        """
        check_bot_name(name)
        now = self._now()
        if expires_at is not None:
            if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
                raise InvalidInput("the expiry must be a datetime with a time zone")
            if expires_at <= now:
                raise InvalidInput("the expiry is not in the future")
        with self._lock:
            data_key = self._require_key()
            record = AdminToken(
                name=name,
                created_at=now,
                expires_at=None if expires_at is None else parse_time(time_text(expires_at)),
                revoked_at=None,
                last_used_at=None,
            )
            text = new_admin_token_text()
            digest = token_hash(text)
            row_id = secrets.randbits(62) + 1  # never reused: an old MAC fits no new row
            columns = _columns_for(record, digest)
            mac = admin_token_mac(data_key, self._header.vault_id, row_id, columns)
            with _file.sqlite_errors(), write_transaction(self._conn):
                for existing in self._admin_rows_of(name):
                    if _from_row(existing).state(now) == "active":
                        raise InvalidInput(
                            f"admin {name!r} already has an active token; revoke it first "
                            f"(keybroker tokens revoke-admin {name})"
                        )
                self._conn.execute(
                    f"INSERT INTO admin_tokens (id, {', '.join(_COLUMNS)}, mac) "  # noqa: S608
                    f"VALUES (?, {', '.join('?' for _ in _COLUMNS)}, ?)",
                    (row_id, *columns.values(), mac),
                )
        return Secret(text), record

    def check_admin_token(self, token: str) -> AdminToken:
        """The record of an active admin token, or BadToken; read afresh on every call.

        A bot token (``kb_…``) is refused by its shape, with a message that
        says so. Raises VaultLocked, BadToken, RecordTampered.
        """
        if not isinstance(token, str) or not token:
            raise BadToken("no admin token was given")
        if not _ADMIN_TOKEN_TEXT.fullmatch(token):
            if token.startswith("kb_"):
                raise BadToken("a bot token cannot open the dashboard; use an admin token")
            raise BadToken("unknown admin token")
        return self.check_admin_digest(token_hash(token))

    def check_admin_digest(self, digest: bytes) -> AdminToken:
        """``check_admin_token`` for a token known by its SHA-256 (a dashboard session).

        Each call reads the row afresh, so a revocation by another process or
        an expiry applies to the very next call. Raises VaultLocked, BadToken,
        RecordTampered.
        """
        with self._lock:
            data_key = self._require_key()
            with _file.sqlite_errors():
                row = self._conn.execute(
                    f"{_SELECT} WHERE token_hash = ?", (bytes(digest),)
                ).fetchone()
        if row is None or not isinstance(row[2], bytes) or not hmac.compare_digest(row[2], digest):
            raise BadToken("unknown admin token")
        record = self._authentic_admin(data_key, tuple(row))
        state = record.state(self._now())
        if state != "active":
            raise BadToken(f"the admin token of {record.name!r} is {state}")
        return record

    def list_admin_tokens(self) -> list[AdminToken]:
        """Every admin-token record (revoked, expired too), by name, oldest first; works locked."""
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(f"{_SELECT} {_ORDER}").fetchall()
        return [_from_row(row) for row in rows]

    def revoke_admin_token(self, name: str) -> None:
        """End ``name``'s admin token; dashboard sessions opened with it end on their next request.

        Revoking an already revoked token does nothing. Raises VaultLocked,
        InvalidInput (no admin token was ever made for ``name``).
        """
        with self._lock:
            data_key = self._require_key()
            with _file.sqlite_errors(), write_transaction(self._conn):
                rows = self._admin_rows_of(name)
                if not rows:
                    raise InvalidInput(f"no admin token was made for {name!r}")
                now = self._now()
                for row in rows:
                    try:
                        record = self._authentic_admin(data_key, row)
                    except RecordTampered:
                        continue
                    if record.revoked_at is not None:
                        continue
                    row_id, digest = row[0], row[2]
                    assert isinstance(row_id, int) and isinstance(digest, bytes)  # authentic
                    columns = _columns_for(replace(record, revoked_at=now), digest)
                    mac = admin_token_mac(data_key, self._header.vault_id, row_id, columns)
                    self._conn.execute(
                        "UPDATE admin_tokens SET revoked_at = ?, mac = ? WHERE id = ?",
                        (columns["revoked_at"], mac, row_id),
                    )

    def touch_admin_token(self, name: str) -> None:
        """Record that ``name`` used the dashboard now (best effort, at most once a minute)."""
        now_ms = self._clock.now_ms()
        key = "admin:" + name
        with self._lock:
            last = self._touched.get(key)
            if last is not None and now_ms - last < TOUCH_INTERVAL_MS:
                return
            self._touched[key] = now_ms
            try:
                with write_transaction(self._conn):
                    self._conn.execute(
                        "UPDATE admin_tokens SET last_used_at = ? "
                        "WHERE name = ? AND revoked_at IS NULL",
                        (time_text(self._now()), name),
                    )
            except sqlite3.Error:
                return

    def _verify_admin_tokens(self, data_key: Secret) -> list[tuple[str, bool]]:
        """(name, authentic) for every admin-token row (for Vault.verify)."""
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(f"{_SELECT} {_ORDER}").fetchall()
        results = []
        for row in rows:
            label = row[1] if isinstance(row[1], str) else f"(row {row[0]})"
            try:
                self._authentic_admin(data_key, tuple(row))
            except RecordTampered:
                results.append((label, False))
            else:
                results.append((label, True))
        return results

    def _admin_rows_of(self, name: str) -> list[tuple[object, ...]]:
        rows = self._conn.execute(f"{_SELECT} WHERE name = ? ORDER BY id", (name,)).fetchall()
        return [tuple(row) for row in rows]

    def _authentic_admin(self, data_key: Secret, row: tuple[object, ...]) -> AdminToken:
        record = _from_row(row)
        row_id, digest, mac = row[0], row[2], row[-1]
        if not isinstance(row_id, int) or not isinstance(digest, bytes):
            raise RecordTampered(f"the admin token of {record.name!r} failed authentication")
        columns = dict(zip(_COLUMNS, row[1:-2], strict=True))
        expected = admin_token_mac(data_key, self._header.vault_id, row_id, columns)
        if not isinstance(mac, bytes) or not hmac.compare_digest(mac, expected):
            raise RecordTampered(f"the admin token of {record.name!r} failed authentication")
        return record
