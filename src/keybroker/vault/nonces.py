"""Nonce leases: a durable high-water mark per exchange key, so nonces never go backwards.

    >>> ceiling = vault.reserve_nonces("kraken-main", at_least=clock.now_ms())
    >>> # hand out ceiling - 10_000 … ceiling - 1 from memory, then reserve again

Exchanges such as Kraken refuse a nonce not above the last one they saw for
the key, and several bots sharing a key race each other into "invalid nonce"
(ccxt #5110, freqtrade #2613). The gateway signs for all of them and takes
its nonces from one lease here. The ceiling is written (fsync) before any
nonce under it is used; after a crash or restart the next lease starts at or
above the stored ceiling, so no nonce is ever reused or lower than one sent.

Works locked: a ceiling is no secret. Whoever can write the file could lower
a ceiling, which makes the exchange refuse a reused nonce (it checks too), no
worse than deleting the vault.

Two gateways leasing for the same key get disjoint blocks, but their nonces
interleave and the exchange sees them out of order: run one gateway per key
that uses nonces.
"""

from __future__ import annotations

from keybroker.errors import InvalidInput, VaultError
from keybroker.vault import _file
from keybroker.vault._parts import VaultParts
from keybroker.vault._schema import write_transaction

DEFAULT_BLOCK = 10_000
_MAX_INTEGER = 2**63 - 1  # SQLite's INTEGER
_MAX_KEY_ID_CHARS = 200


class NonceStore(VaultParts):
    """The nonce part of Vault: reserve_nonces, nonce_ceiling."""

    def reserve_nonces(self, key_id: str, at_least: int, block: int = DEFAULT_BLOCK) -> int:
        """Raise ``key_id``'s stored ceiling to ``max(stored, at_least) + block`` and return it.

        The caller may use every nonce in ``[ceiling - block, ceiling)``: all
        above any nonce an earlier lease allowed, and all at least
        ``at_least`` (pass the current time for exchanges that want
        time-like nonces). Durable before it returns.
        Raises InvalidInput, VaultError (the ceiling would overflow 2**63).
        """
        if not isinstance(key_id, str) or not key_id or len(key_id) > _MAX_KEY_ID_CHARS:
            raise InvalidInput(f"a nonce key id must be 1-{_MAX_KEY_ID_CHARS} characters")
        for label, value, lowest in (("at_least", at_least, 0), ("block", block, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
                raise InvalidInput(f"{label} must be a whole number of at least {lowest}")
        with self._lock, _file.sqlite_errors(), write_transaction(self._conn):
            row = self._conn.execute(
                "SELECT ceiling FROM nonces WHERE key_id = ?", (key_id,)
            ).fetchone()
            stored = 0 if row is None else row[0]
            if not isinstance(stored, int):
                raise _file.damaged(f"the nonce ceiling of {key_id!r} is not a number")
            ceiling = max(stored, at_least) + block
            if ceiling > _MAX_INTEGER:
                raise VaultError(f"the nonce ceiling of {key_id!r} would overflow")
            self._conn.execute(
                "INSERT INTO nonces (key_id, ceiling) VALUES (?, ?) "
                "ON CONFLICT (key_id) DO UPDATE SET ceiling = excluded.ceiling",
                (key_id, ceiling),
            )
        return ceiling

    def nonce_ceiling(self, key_id: str) -> int | None:
        """The stored ceiling for ``key_id`` (None if never reserved); works locked."""
        with self._lock, _file.sqlite_errors():
            row = self._conn.execute(
                "SELECT ceiling FROM nonces WHERE key_id = ?", (key_id,)
            ).fetchone()
        if row is None:
            return None
        if not isinstance(row[0], int):
            raise _file.damaged(f"the nonce ceiling of {key_id!r} is not a number")
        return row[0]
