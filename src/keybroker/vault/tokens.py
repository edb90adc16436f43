"""Bot tokens: how a bot proves to the gateway which credentials it may use.

    >>> token, info = vault.create_token("grid-bot", ["binance-main"], expires_at=None,
    ...                                  max_orders_per_minute=30)
    >>> vault.check_token(token.reveal_text()).credentials
    ('binance-main',)

A token is ``kb_`` followed by 32 random bytes in unpadded base64url (256
bits; 46 characters). It is shown once, when created, and the vault keeps
only its SHA-256: reading the vault file gives nothing a bot could send.
(No slow hash is needed: 256 random bits cannot be guessed, and the gateway
checks a token on every request.)

Each row carries an HMAC-SHA256 under a key derived from the data key, over
the vault id, the row's random id and every column but ``last_used_at``. So
a row edited in SQLite (another bot's credentials granted, a revocation
undone, an expiry removed, a hash swapped in) fails as RecordTampered, and
minting a token needs the passphrase. ``last_used_at`` is a display value,
written best-effort without the key.

A bot has at most one active token; ``revoke_token`` ends it and a new one
can then be created. Revoked rows stay, so ``tokens list`` shows history.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from keybroker.errors import BadToken, CredentialNotFound, InvalidInput, RecordTampered, VaultError
from keybroker.secret import Secret
from keybroker.vault import _file
from keybroker.vault._parts import VaultParts, canonical, parse_time, time_text
from keybroker.vault._schema import write_transaction
from keybroker.vault.records import check_name

TOKEN_PREFIX = "kb_"  # noqa: S105 - a prefix, not a token
TOKEN_BYTES = 32
_TOKEN_TEXT = re.compile(r"kb_[A-Za-z0-9_-]{43}")
_BOT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
# A busy gateway would otherwise write (and fsync) the vault on every request.
TOUCH_INTERVAL_MS = 60_000
_MAC_KEY_LABEL = b"keybroker/token-mac/v1"

# The columns the MAC covers, in the order they are stored.
_COLUMNS = (
    "bot",
    "token_hash",
    "credentials",
    "created_at",
    "expires_at",
    "max_orders_per_minute",
    "revoked_at",
)
_SELECT = f"SELECT id, {', '.join(_COLUMNS)}, last_used_at, mac FROM tokens"  # noqa: S608
# Oldest first; of two made in the same microsecond, the revoked one first.
_ORDER = "ORDER BY bot, created_at, revoked_at IS NULL, id"


@dataclass(frozen=True, slots=True)
class BotToken:
    """What the vault knows about one bot's token; never the token itself."""

    bot: str
    credentials: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    max_orders_per_minute: int | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime) -> str:
        """``"revoked"``, ``"expired"`` (at or after expires_at) or ``"active"``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def allows(self, credential: str) -> bool:
        """Whether this token was granted ``credential`` (the gateway's 403 check)."""
        return credential in self.credentials


def token_hash(token: str) -> bytes:
    """SHA-256 of the token text: the only form of a token the vault stores."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token_text() -> str:
    """``kb_`` + base64url of 32 bytes from the OS's CSPRNG, without padding."""
    raw = secrets.token_bytes(TOKEN_BYTES)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def check_bot_name(bot: str) -> None:
    """Bot names follow credential names: 1–64 of A–Z a–z 0–9 . _ - (they go into audit rows)."""
    if not isinstance(bot, str) or not _BOT_NAME.fullmatch(bot):
        raise InvalidInput("bot name must be 1-64 characters of letters, digits, '.', '_' or '-'")


def token_mac(data_key: Secret, vault_id: str, row_id: int, columns: dict[str, object]) -> bytes:
    """HMAC-SHA256 of a token row under a key used for nothing else."""
    # A derived key, so the data key itself (AES-GCM's key) is never an HMAC key.
    mac_key = hmac.digest(data_key.reveal(), _MAC_KEY_LABEL, "sha256")
    bound: dict[str, object] = {"vault_id": vault_id, "id": row_id}
    for column in _COLUMNS:
        value = columns[column]
        bound[column] = value.hex() if isinstance(value, bytes) else value
    return hmac.digest(mac_key, b"keybroker/token/v1\n" + canonical(bound), "sha256")


def _columns_for(token: BotToken, digest: bytes) -> dict[str, object]:
    return {
        "bot": token.bot,
        "token_hash": digest,
        "credentials": json.dumps(list(token.credentials)),
        "created_at": time_text(token.created_at),
        "expires_at": None if token.expires_at is None else time_text(token.expires_at),
        "max_orders_per_minute": token.max_orders_per_minute,
        "revoked_at": None if token.revoked_at is None else time_text(token.revoked_at),
    }


def _from_row(row: Sequence[object]) -> BotToken:
    """Parse a row's columns; RecordTampered if they are not what keybroker writes."""
    _id, bot, _hash, credentials, created, expires, limit, revoked, used, _mac = row
    try:
        names = json.loads(credentials) if isinstance(credentials, str) else None
        if not isinstance(names, list) or not names:
            raise ValueError("credentials")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise ValueError("max_orders_per_minute")
        if not isinstance(bot, str):
            raise ValueError("bot")
        token = BotToken(
            bot=bot,
            credentials=tuple(str(name) for name in names),
            created_at=parse_time(created),
            expires_at=None if expires is None else parse_time(expires),
            max_orders_per_minute=limit,
            revoked_at=None if revoked is None else parse_time(revoked),
            last_used_at=None if used is None else parse_time(used),
        )
        check_bot_name(token.bot)
    except (ValueError, TypeError, InvalidInput):
        label = repr(bot) if isinstance(bot, str) and _BOT_NAME.fullmatch(bot) else "(unreadable)"
        raise RecordTampered(f"the token of bot {label} failed authentication") from None
    return token


class TokenStore(VaultParts):
    """The bot-token part of Vault."""

    def create_token(
        self,
        bot: str,
        credentials: Sequence[str],
        *,
        expires_at: datetime | None,
        max_orders_per_minute: int | None,
    ) -> tuple[Secret, BotToken]:
        """Issue a new token for ``bot``, granted ``credentials``; return it and its record.

        The token is in the returned Secret only: show it once. Every named
        credential must exist. Raises VaultLocked, InvalidInput (bad names, an
        expiry not in the future or without a time zone, a limit below 1, or
        the bot already has an active token: revoke it first),
        CredentialNotFound.
        """
        check_bot_name(bot)
        if isinstance(credentials, str) or not credentials:
            raise InvalidInput("give at least one credential the token may use")
        granted = tuple(dict.fromkeys(credentials))
        for name in granted:
            check_name(name)
        if max_orders_per_minute is not None and (
            not isinstance(max_orders_per_minute, int)
            or isinstance(max_orders_per_minute, bool)
            or max_orders_per_minute < 1
        ):
            raise InvalidInput("max orders per minute must be a whole number of at least 1")
        now = self._now()
        if expires_at is not None:
            if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
                raise InvalidInput("the expiry must be a datetime with a time zone")
            if expires_at <= now:
                raise InvalidInput("the expiry is not in the future")
        with self._lock:
            data_key = self._require_key()
            record = BotToken(
                bot=bot,
                credentials=granted,
                created_at=now,
                expires_at=None if expires_at is None else parse_time(time_text(expires_at)),
                max_orders_per_minute=max_orders_per_minute,
                revoked_at=None,
                last_used_at=None,
            )
            text = new_token_text()
            digest = token_hash(text)
            # Random ids are never reused: a revoked row's MAC can never
            # authenticate a later row.
            row_id = secrets.randbits(62) + 1
            columns = _columns_for(record, digest)
            mac = token_mac(data_key, self._header.vault_id, row_id, columns)
            with _file.sqlite_errors(), write_transaction(self._conn):
                for name in granted:
                    found = self._conn.execute(
                        "SELECT 1 FROM credentials WHERE name = ?", (name,)
                    ).fetchone()
                    if found is None:
                        raise CredentialNotFound(f"no credential named {name!r}")
                for existing in self._rows_of(bot):
                    if _from_row(existing).state(now) == "active":
                        raise InvalidInput(
                            f"bot {bot!r} already has an active token; revoke it first "
                            f"(keybroker tokens revoke {bot})"
                        )
                self._conn.execute(
                    f"INSERT INTO tokens (id, {', '.join(_COLUMNS)}, mac) "  # noqa: S608
                    f"VALUES (?, {', '.join('?' for _ in _COLUMNS)}, ?)",
                    (row_id, *columns.values(), mac),
                )
                self._bump_tokens_version()
        return Secret(text), record

    def check_token(self, token: str) -> BotToken:
        """The record of an active token, or BadToken (missing, unknown, expired, revoked).

        The row is found by the SHA-256 of ``token`` and the stored hash is
        compared with ``hmac.compare_digest``: how long this takes says nothing
        about how much of a guess was right. Each call reads the row afresh, so
        a revocation by another process applies to the very next call.
        Raises VaultLocked, BadToken, RecordTampered (the row was edited).
        """
        if not isinstance(token, str) or not token:
            raise BadToken("no bot token was given")
        with self._lock:
            data_key = self._require_key()
        if not _TOKEN_TEXT.fullmatch(token):
            raise BadToken("unknown bot token")
        digest = token_hash(token)
        with self._lock, _file.sqlite_errors():
            row = self._conn.execute(f"{_SELECT} WHERE token_hash = ?", (digest,)).fetchone()
        if row is None or not isinstance(row[2], bytes) or not hmac.compare_digest(row[2], digest):
            raise BadToken("unknown bot token")
        record = self._authentic(data_key, tuple(row))
        state = record.state(self._now())
        if state == "revoked":
            raise BadToken(f"the token of bot {record.bot!r} was revoked")
        if state == "expired":
            raise BadToken(f"the token of bot {record.bot!r} has expired")
        return record

    def list_tokens(self) -> list[BotToken]:
        """Every token record, revoked and expired ones too, by bot, oldest first; works locked.

        Nothing is authenticated here (as with list_credentials): check_token
        and Vault.verify() do that.
        """
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(f"{_SELECT} {_ORDER}").fetchall()
        return [_from_row(row) for row in rows]

    def holders_of(self, credential: str, now: datetime) -> list[str]:
        """Bots whose token is active at ``now`` and granted ``credential``, sorted; works
        locked (display only, as list_tokens: check_token authenticates)."""
        return sorted(
            {t.bot for t in self.list_tokens() if t.state(now) == "active" and t.allows(credential)}
        )

    def revoked_token_hashes(self) -> list[bytes]:
        """SHA-256 of every revoked token, for gateways on other hosts to refuse; works locked.

        A hash of a revoked token is no credential: the token is dead, and the
        hash of 32 random bytes gives nothing back. Not authenticated (as
        list_tokens): a row edited to look revoked only refuses more.
        """
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(
                "SELECT token_hash FROM tokens WHERE revoked_at IS NOT NULL"
            ).fetchall()
        return [row[0] for row in rows if isinstance(row[0], bytes)]

    def revoke_token(self, bot: str) -> None:
        """End ``bot``'s token; check_token refuses it from the next call on.

        Revoking an already revoked token does nothing. A row that fails
        authentication is left as it is: it can never pass check_token, and
        `keybroker vault verify` still shows it.
        Raises VaultLocked, InvalidInput (no token was ever made for ``bot``).
        """
        with self._lock:
            data_key = self._require_key()
            with _file.sqlite_errors(), write_transaction(self._conn):
                rows = self._rows_of(bot)
                if not rows:
                    raise InvalidInput(f"no token was made for bot {bot!r}")
                now = self._now()
                changed = False
                for row in rows:
                    try:
                        record = self._authentic(data_key, row)
                    except RecordTampered:
                        continue
                    if record.revoked_at is not None:
                        continue
                    row_id, digest = row[0], row[2]
                    assert isinstance(row_id, int) and isinstance(digest, bytes)  # authentic
                    columns = _columns_for(replace(record, revoked_at=now), digest)
                    mac = token_mac(data_key, self._header.vault_id, row_id, columns)
                    self._conn.execute(
                        "UPDATE tokens SET revoked_at = ?, mac = ? WHERE id = ?",
                        (columns["revoked_at"], mac, row_id),
                    )
                    changed = True
                if changed:
                    self._bump_tokens_version()

    def touch_token(self, bot: str) -> None:
        """Record that ``bot`` used its token now (best effort, at most once a minute).

        Needs no passphrase and never raises for a storage problem: a failed
        touch must not fail the request it accompanies. Each write is an fsync,
        so call it off the request path.
        """
        now_ms = self._clock.now_ms()
        with self._lock:
            last = self._touched.get(bot)
            if last is not None and now_ms - last < TOUCH_INTERVAL_MS:
                return
            self._touched[bot] = now_ms
            try:
                with write_transaction(self._conn):
                    self._conn.execute(
                        "UPDATE tokens SET last_used_at = ? WHERE bot = ? AND revoked_at IS NULL",
                        (time_text(self._now()), bot),
                    )
            except sqlite3.Error:
                return

    def tokens_version(self) -> int:
        """A counter bumped by every create and revoke; one SELECT, works locked.

        A gateway polling it (every ~0.5 s) knows when to drop cached token
        checks. It is a hint, not a guarantee: it is not authenticated.
        """
        with self._lock, _file.sqlite_errors():
            row = self._conn.execute("SELECT value FROM counters WHERE name = 'tokens'").fetchone()
        return 0 if row is None else int(row[0])

    def _verify_tokens(self, data_key: Secret) -> list[tuple[str, bool]]:
        """(bot, authentic) for every token row, by bot then age (for Vault.verify)."""
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(f"{_SELECT} {_ORDER}").fetchall()
        results = []
        for row in rows:
            label = row[1] if isinstance(row[1], str) else f"(row {row[0]})"
            try:
                self._authentic(data_key, tuple(row))
            except RecordTampered:
                results.append((label, False))
            else:
                results.append((label, True))
        return results

    def _rows_of(self, bot: str) -> list[tuple[object, ...]]:
        rows = self._conn.execute(f"{_SELECT} WHERE bot = ? ORDER BY id", (bot,)).fetchall()
        return [tuple(row) for row in rows]

    def _authentic(self, data_key: Secret, row: tuple[object, ...]) -> BotToken:
        record = _from_row(row)
        row_id, digest, mac = row[0], row[2], row[-1]
        if not isinstance(row_id, int) or not isinstance(digest, bytes):
            raise RecordTampered(f"the token of bot {record.bot!r} failed authentication")
        columns = dict(zip(_COLUMNS, row[1:-2], strict=True))
        expected = token_mac(data_key, self._header.vault_id, row_id, columns)
        if not isinstance(mac, bytes) or not hmac.compare_digest(mac, expected):
            raise RecordTampered(f"the token of bot {record.bot!r} failed authentication")
        return record

    def _bump_tokens_version(self) -> None:
        # Inside the caller's transaction, so the counter moves with the change.
        updated = self._conn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'tokens'"
        ).rowcount
        if updated != 1:
            raise VaultError("the vault's counters table is damaged")
