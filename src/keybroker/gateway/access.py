"""The gateway's view of the vault: bot tokens, credentials, policies and halts, cached where safe.

    >>> access = VaultAccess(vault, clock)
    >>> bot = access.check_token(token_text)          # BadToken -> 401
    >>> access.refresh()                              # the poller: revocations and halts

A token that checked once is remembered by its SHA-256 until the vault's
``tokens_version`` moves (every create and revoke bumps it); the poller reads
that counter every ``poll_interval_s``, so a revocation by ``keybroker tokens
revoke`` in another process applies within that interval, and expiry is
checked on every use. Halts are polled the same way for reads, and read afresh
for every order, so ``keybroker halt`` stops the very next one.

Credentials, policies and the halts an order reads are answered from memory
while the vault's ``change_marker()`` stays the same: one cheap ``PRAGMA``
per call instead of SELECTs and an AES-GCM open per request. Any commit to
the vault file, by this process or another (a rotation, ``policy set``,
``halt``), or a lock of the vault, changes the marker, and the next call reads
the vault afresh: nothing a request sees is older than the last commit.

Several gateways (``serve --redis``) also honour the halts and revocations
other hosts published (``shared_halts``, ``shared_revocations``, set by the
coordination): a halt or a revoked token anywhere holds here too.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from keybroker.clock import Clock
from keybroker.errors import BadToken
from keybroker.model import Credential
from keybroker.policy import DEFAULT_POLICY, Policy
from keybroker.vault import BotToken, Vault

log = logging.getLogger("keybroker.gateway")

ALL = "*"
_MAX_CACHED_TOKENS = 10_000
_MAX_CACHED_POLICIES = 1_000
_TOUCH_INTERVAL_MS = 60_000


class VaultAccess:
    """Reads the vault for the pipeline; every method is cheap enough for the event loop."""

    def __init__(self, vault: Vault, clock: Clock) -> None:
        self.vault = vault
        self._clock = clock
        self._tokens: dict[bytes, BotToken] = {}
        self._tokens_version = vault.tokens_version()
        self._halted: dict[str, datetime] = vault.halted()
        self._policies: dict[bytes, Policy] = {}
        self._touched: dict[str, int] = {}
        self.shared_halts: dict[str, datetime] = {}
        """Halts published by any gateway sharing this one's store (name -> since)."""
        self.shared_revocations: frozenset[bytes] = frozenset()
        """SHA-256 of tokens revoked on any host sharing this gateway's store."""
        # Read from the vault while its change marker was ``_marker`` (see _current()).
        self._marker: tuple[int, int, int] | None = None
        self._credentials: dict[str, Credential] = {}
        self._documents: dict[str, bytes | None] = {}
        self._halts_marker: tuple[int, int, int] | None = None

    # -- tokens ----------------------------------------------------------------------

    def check_token(self, token: str) -> BotToken:
        """The active token's record; BadToken when missing, unknown, expired or revoked."""
        if not token:
            raise BadToken("no bot token was given")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        record = self._tokens.get(digest)
        if record is None:
            record = self.vault.check_token(token)
            if len(self._tokens) >= _MAX_CACHED_TOKENS:
                self._tokens.clear()
            self._tokens[digest] = record
        state = record.state(self._now())
        if state == "active" and digest in self.shared_revocations:
            state = "revoked"
        if state != "active":
            self._tokens.pop(digest, None)
            raise BadToken(f"the token of bot {record.bot!r} is {state}")
        return record

    def due_for_touch(self, bot: str) -> bool:
        """Whether ``last_used_at`` of ``bot`` should be written now (at most once a minute)."""
        now = self._clock.now_ms()
        if now - self._touched.get(bot, -_TOUCH_INTERVAL_MS) < _TOUCH_INTERVAL_MS:
            return False
        self._touched[bot] = now
        return True

    # -- credentials and policies ----------------------------------------------------

    def credential(self, name: str) -> Credential:
        """The decrypted credential; CredentialNotFound, RecordTampered, VaultLocked.

        Shared by every request until the vault changes: read it, never wipe it.
        """
        return self._credential(name, self._current())

    def policy(self, name: str) -> Policy:
        """The credential's policy, or the default (read-only, no symbols) when it has none."""
        return self._policy(name, self._current())

    def credential_and_policy(self, name: str) -> tuple[Credential, Policy]:
        """``credential`` and ``policy`` under one read of the change marker, and the halts
        as of that read: what one request needs from the vault, for one ``PRAGMA``.

        Every read of the marker is an SQLite call that gives up the GIL, so the
        request path makes one, not three.
        """
        fresh = self._current()
        return self._credential(name, fresh), self._policy(name, fresh)

    def _credential(self, name: str, fresh: bool) -> Credential:
        credential = self._credentials.get(name) if fresh else None
        if credential is None:
            credential = self.vault.credential(name)
            if fresh:
                self._credentials[name] = credential
        return credential

    def _policy(self, name: str, fresh: bool) -> Policy:
        if fresh and name in self._documents:
            document = self._documents[name]
        else:
            document = self.vault.policy_document(name)
            if fresh:
                self._documents[name] = document
        if document is None:
            return DEFAULT_POLICY
        policy = self._policies.get(document)
        if policy is None:
            policy = Policy.from_json(document)
            if len(self._policies) >= _MAX_CACHED_POLICIES:
                self._policies.clear()
            self._policies[document] = policy
        return policy

    # -- halts -----------------------------------------------------------------------

    def is_halted(self, name: str, *, fresh: bool = False) -> bool:
        """Whether ``name`` (or every credential) is halted; ``fresh`` reads the vault now."""
        if fresh:
            marker = self.vault.change_marker()
            if marker != self._halts_marker:
                self._halted = self.vault.halted()
                self._halts_marker = marker
        shared = self.shared_halts
        return name in self._halted or ALL in self._halted or name in shared or ALL in shared

    @property
    def halted(self) -> dict[str, datetime]:
        """Every halt in force here: this vault's and those other gateways published."""
        return {**self.shared_halts, **self._halted}

    @property
    def local_halts(self) -> dict[str, datetime]:
        """This vault's halts alone (what this gateway publishes to the others)."""
        return dict(self._halted)

    # -- polling ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Forget cached tokens if any was created or revoked; reread the halts."""
        version = self.vault.tokens_version()
        if version != self._tokens_version:
            self._tokens.clear()
            self._tokens_version = version
        self._halts_marker = self.vault.change_marker()
        self._halted = self.vault.halted()

    def _current(self) -> bool:
        """Whether what was decrypted under the vault's present marker may be used.

        When the vault changed (or is locked), the cache is emptied and begins
        again under the new marker, and the halts are read again. The marker is
        read before the vault is, so a commit in between only makes the next call
        read again.
        """
        marker = self.vault.change_marker()
        if marker == self._marker:
            return True
        self._credentials.clear()
        self._documents.clear()
        if marker != self._halts_marker:  # the halts as of this marker, too
            self._halted = self.vault.halted()
            self._halts_marker = marker
        self._marker = marker if self.vault.is_unlocked else None
        return self._marker is not None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=UTC)
