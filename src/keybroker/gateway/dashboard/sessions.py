"""Dashboard sessions: the browser holds a random session id; the admin token stays here.

    >>> session = sessions.open("alice", token_digest)      # after a good login
    >>> sessions.find(cookie_value)                          # None: log in again
    >>> sessions.end(cookie_value)                           # logout, at once

The cookie carries 256 random bits that mean nothing outside this process;
the session remembers the admin's name and the SHA-256 of the admin token
(never the token), so every request can ask the vault afresh whether that
token is still active: a revocation or an expiry ends the session at the
next request. Sessions live in memory: a gateway restart logs everyone out,
which is the safe direction. They are kept by the SHA-256 of their id, so
not even this table holds a usable cookie value.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from keybroker.clock import Clock

LIFETIME_MS = 8 * 3_600_000
"""A session ends this long after login, whatever the token's own expiry."""
IDLE_MS = 3_600_000
"""... or after this long without a request (the pages poll while open)."""
MAX_SESSIONS = 1000


@dataclass(slots=True)
class Session:
    """One logged-in browser: who, which token (its hash), the CSRF token, its times."""

    admin: str
    token_digest: bytes
    csrf: str
    created_ms: int
    seen_ms: int


def _key(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()


class Sessions:
    """The open sessions of one gateway; used from its event loop only."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._open: dict[bytes, Session] = {}

    def open(self, admin: str, token_digest: bytes) -> tuple[str, Session]:
        """A new session for ``admin``; returns the id for the cookie (shown to nobody else)."""
        now = self._clock.now_ms()
        self._forget_stale(now)
        if len(self._open) >= MAX_SESSIONS:  # the oldest go first
            for key in list(self._open)[: len(self._open) - MAX_SESSIONS + 1]:
                del self._open[key]
        session_id = secrets.token_urlsafe(32)
        session = Session(admin, token_digest, secrets.token_urlsafe(32), now, now)
        self._open[_key(session_id)] = session
        return session_id, session

    def find(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value, or None (unknown, too old, or idle too long)."""
        if not session_id:
            return None
        key = _key(session_id)
        session = self._open.get(key)
        if session is None:
            return None
        now = self._clock.now_ms()
        if now - session.created_ms >= LIFETIME_MS or now - session.seen_ms >= IDLE_MS:
            del self._open[key]
            return None
        session.seen_ms = now
        return session

    def end(self, session_id: str | None) -> None:
        """Forget a session (logout, or its token was found revoked or expired)."""
        if session_id:
            self._open.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._open)

    def _forget_stale(self, now: int) -> None:
        stale = [
            key
            for key, session in self._open.items()
            if now - session.created_ms >= LIFETIME_MS or now - session.seen_ms >= IDLE_MS
        ]
        for key in stale:
            del self._open[key]
