"""Nonces for exchanges that want them (Kraken): strictly increasing per key, across restarts.

    >>> lease = NonceLease(vault)
    >>> await lease.next("kraken:4f1c…", now_ms)   # >= now_ms, > every nonce handed out before

Every bot signing through this gateway takes its nonces from here, so two bots
sharing one Kraken key can no longer race each other into "invalid nonce"
(ccxt #5110, freqtrade #2613). The vault stores a ceiling per key
(``Vault.reserve_nonces``, durable before it returns); nonces below it are
handed out from memory, and a new block is reserved when they run out. After a
restart the first block starts at or above the stored ceiling, so a nonce
never repeats or goes backwards, even after a crash.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Protocol

from keybroker.model import Credential
from keybroker.vault import Vault

BLOCK = 10_000


def key_id(credential: Credential) -> str:
    """The lease's name for a key: exchange and a digest of the api key (rotation starts afresh)."""
    digest = hashlib.sha256(credential.api_key.encode("utf-8")).hexdigest()[:24]
    return f"{credential.exchange}:{digest}"


class Nonces(Protocol):
    """Where signing takes its nonces: this lease, or one shared by several gateways."""

    async def next(self, key: str, now_ms: int) -> int:
        """A nonce for ``key``, above every nonce handed out for it before."""
        ...


class NonceLease:
    """Hands out nonces from leased blocks; one lock, so concurrent requests never share one."""

    def __init__(self, vault: Vault, block: int = BLOCK) -> None:
        self._vault = vault
        self._block = block
        self._last: dict[str, int] = {}
        self._ceiling: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def next(self, key: str, now_ms: int) -> int:
        """A nonce for ``key``: at least ``now_ms``, above every earlier one, below the ceiling."""
        async with self._lock:
            value = max(now_ms, self._last.get(key, -1) + 1)
            ceiling = self._ceiling.get(key)
            if ceiling is None or value >= ceiling:
                # The write waits for SQLite's lock and an fsync: keep it off the event loop.
                ceiling = await asyncio.to_thread(
                    self._vault.reserve_nonces, key, value, self._block
                )
                value = max(value, ceiling - self._block)
                self._ceiling[key] = ceiling
            self._last[key] = value
            return value
