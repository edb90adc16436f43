"""The vault's SQLite schema, as numbered migrations applied in order.

    >>> migrate(conn)        # inside no transaction; takes the write lock itself
    >>> schema_version(conn)
    2

``PRAGMA user_version`` is the schema version. Migration ``n`` (1-based)
takes a vault from version ``n - 1`` to ``n``; all pending migrations and the
new version number are written in one ``BEGIN IMMEDIATE`` transaction, so a
vault is always at exactly one version. Migrations are only ever appended,
never edited: a vault made by an older keybroker is upgraded in place the
first time a newer one opens it (tests/unit/vault/test_vault_schema.py).

1. header and credentials;
2. policies, bot tokens, halts, nonce ceilings and change counters (the gateway);
3. admin tokens (the dashboard).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from keybroker.errors import VaultError

# "KBvl": written into the SQLite file header (offset 68), so a keybroker
# vault is recognisable from its first 100 bytes before SQLite parses anything.
APPLICATION_ID = int.from_bytes(b"KBvl", "big")
MAGIC = "keybroker-vault"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: header (exactly one row) and credentials.
    (
        """
        CREATE TABLE header (
            id              INTEGER PRIMARY KEY CHECK (id = 1),
            magic           TEXT    NOT NULL,
            vault_id        TEXT    NOT NULL,
            created_at      TEXT    NOT NULL,
            kdf_memory_kib  INTEGER NOT NULL,
            kdf_iterations  INTEGER NOT NULL,
            kdf_lanes       INTEGER NOT NULL,
            kdf_salt        BLOB    NOT NULL,
            wrapped_key     BLOB    NOT NULL
        )
        """,
        # Every column but `sealed` is readable without the passphrase (so
        # `list` works while locked) and is bound into the record's associated
        # data (records.py), so editing any of them is detected on next use.
        """
        CREATE TABLE credentials (
            id           INTEGER PRIMARY KEY,
            name         TEXT    NOT NULL UNIQUE,
            exchange     TEXT    NOT NULL,
            environment  TEXT    NOT NULL,
            scopes       TEXT    NOT NULL,
            key_type     TEXT    NOT NULL,
            key_id       TEXT    NOT NULL,
            created_at   TEXT    NOT NULL,
            rotated_at   TEXT,
            key_history  TEXT    NOT NULL,
            base_url     TEXT,
            notes        TEXT    NOT NULL,
            version      INTEGER NOT NULL,
            sealed       BLOB    NOT NULL
        )
        """,
    ),
    # 2: what the signing gateway needs (issue 5). Policies and tokens are
    # authenticated under the data key (policies.py, tokens.py); halts, nonce
    # ceilings and counters are written without the passphrase, on purpose:
    # see halts.py and nonces.py for why that is safe.
    (
        # One sealed policy document per credential. Its ciphertext is bound
        # to the vault, the credential's name and random row id, `version` and
        # `updated_at`, so a policy never outlives or changes credential.
        """
        CREATE TABLE policies (
            name        TEXT    PRIMARY KEY,
            version     INTEGER NOT NULL,
            updated_at  TEXT    NOT NULL,
            sealed      BLOB    NOT NULL
        )
        """,
        # Only SHA-256 of a token is stored. `mac` covers every column but
        # `last_used_at` (a best-effort display value written without the key).
        """
        CREATE TABLE tokens (
            id                     INTEGER PRIMARY KEY,
            bot                    TEXT    NOT NULL,
            token_hash             BLOB    NOT NULL UNIQUE,
            credentials            TEXT    NOT NULL,
            created_at             TEXT    NOT NULL,
            expires_at             TEXT,
            max_orders_per_minute  INTEGER,
            revoked_at             TEXT,
            last_used_at           TEXT,
            mac                    BLOB    NOT NULL
        )
        """,
        "CREATE INDEX tokens_by_bot ON tokens (bot)",
        # name is a credential name, or "*" for every credential.
        """
        CREATE TABLE halts (
            name       TEXT PRIMARY KEY,
            halted_at  TEXT NOT NULL,
            reason     TEXT NOT NULL
        )
        """,
        # The highest nonce reserved so far per exchange key; only ever raised.
        """
        CREATE TABLE nonces (
            key_id   TEXT    PRIMARY KEY,
            ceiling  INTEGER NOT NULL
        )
        """,
        # Cheap change counters a running gateway polls (tokens_version()).
        """
        CREATE TABLE counters (
            name   TEXT    PRIMARY KEY,
            value  INTEGER NOT NULL
        )
        """,
        "INSERT INTO counters (name, value) VALUES ('tokens', 0)",
    ),
    # 3: admin tokens for the dashboard (issue 8): a kind apart from bot tokens,
    # with its own table and MAC key (admin_tokens.py). Only SHA-256 of a token
    # is stored; `mac` covers every column but `last_used_at`.
    (
        """
        CREATE TABLE admin_tokens (
            id            INTEGER PRIMARY KEY,
            name          TEXT    NOT NULL,
            token_hash    BLOB    NOT NULL UNIQUE,
            created_at    TEXT    NOT NULL,
            expires_at    TEXT,
            revoked_at    TEXT,
            last_used_at  TEXT,
            mac           BLOB    NOT NULL
        )
        """,
        "CREATE INDEX admin_tokens_by_name ON admin_tokens (name)",
    ),
)

LATEST_VERSION = len(MIGRATIONS)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception.

    IMMEDIATE takes the write lock up front, so two writers queue on the busy
    timeout instead of one failing when it upgrades a read lock to a write.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite may already have rolled back by itself (disk full, I/O error).
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every pending migration in one transaction; return the resulting version.

    Raises VaultError if the file was written by a newer keybroker: guessing at
    a schema we do not know could destroy records.
    """
    version = schema_version(conn)
    if version == LATEST_VERSION:
        return version
    _refuse_newer(version)
    with write_transaction(conn):
        # Read again under the write lock: another process may have migrated
        # between our first look and the lock.
        version = schema_version(conn)
        _refuse_newer(version)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        # PRAGMA values cannot be bound parameters; LATEST_VERSION is our own int.
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION:d}")
    return LATEST_VERSION


def _refuse_newer(version: int) -> None:
    if version > LATEST_VERSION:
        raise VaultError(
            f"this vault uses schema {version}, newer than this keybroker "
            f"understands ({LATEST_VERSION}); upgrade keybroker"
        )
