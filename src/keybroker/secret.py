"""A secret value that cannot be printed, logged or pickled by accident.

    >>> s = Secret("not-a-real-secret")
    >>> s
    Secret('***')
    >>> s.reveal()
    b'not-a-real-secret'

``reveal()`` is the one, grep-able door to the value; only the signers, the
vault and the clipboard command walk through it.

What ``wipe()`` can and cannot do: it overwrites the ``bytearray`` this object
owns with zeros. It cannot reach copies Python made elsewhere: the ``str`` or
``bytes`` the secret was built from (immutable, and possibly interned), the
``bytes`` every ``reveal()`` returns, buffers inside ``cryptography`` or
``hmac``, and pages the kernel swapped out before the wipe. Wiping narrows the
window in which a memory dump finds the secret; it does not close it. The
gateway's process hardening (no core dumps, locked memory) covers the rest.

Where the kernel offers secret memory (``memfd_secret``), the gateway calls
``keep_secrets_in(arena)`` at start, before the vault is unlocked: from then
on each ``Secret`` keeps its bytes in a buffer from the arena (pages that are
not in the kernel's direct map, so ``/proc/<pid>/mem``, a debugger or a
kernel bug reading memory finds nothing), falling back to the heap when the
arena is full. A ``Secret`` is wiped when it is garbage-collected, which also
hands its buffer back.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn, Protocol

_REDACTED = "Secret('***')"


class SecretStorage(Protocol):
    """Where ``Secret`` bytes may live instead of the heap (the gateway's memfd_secret arena)."""

    def allocate(self, size: int) -> memoryview | None:
        """A writable buffer of exactly ``size`` bytes, or None (the heap is used)."""

    def release(self, buffer: memoryview) -> None:
        """``buffer`` (already zeroed) is free again."""


_storage: SecretStorage | None = None


def keep_secrets_in(storage: SecretStorage | None) -> None:
    """Every ``Secret`` made from now on keeps its bytes in ``storage`` (None: the heap)."""
    global _storage
    _storage = storage


class Secret:
    """Holds secret bytes; every textual form of it is redacted."""

    __slots__ = ("_storage", "_value")

    def __init__(self, value: str | bytes | bytearray) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes | bytearray):
            raise TypeError("Secret takes str or bytes")
        storage = _storage
        buffer = storage.allocate(len(value)) if storage is not None and value else None
        if buffer is not None and storage is not None:
            buffer[:] = value
            self._value: bytearray | memoryview = buffer
            self._storage: SecretStorage | None = storage
        else:
            self._value = bytearray(value)
            self._storage = None

    @property
    def in_secret_memory(self) -> bool:
        """Whether the bytes live in the storage of ``keep_secrets_in`` (not the heap)."""
        return self._storage is not None

    def reveal(self) -> bytes:
        """Return the secret bytes. Every call site is a place the secret is used."""
        return bytes(self._value)

    def reveal_text(self) -> str:
        """Return the secret as text (exchange secrets are ASCII or UTF-8)."""
        return bytes(self._value).decode("utf-8")

    def wipe(self) -> None:
        """Overwrite this object's copy with zeros and empty it (best effort, see module doc)."""
        value = self._value
        value[:] = bytes(len(value))  # in place: same length, zeros
        storage, self._storage = self._storage, None
        self._value = bytearray()
        if storage is not None and isinstance(value, memoryview):
            storage.release(value)

    def __del__(self) -> None:
        # A Secret nobody holds any more is wiped, and its secret-memory buffer given back.
        # try/except, not contextlib.suppress: at interpreter shutdown module globals are gone.
        try:  # noqa: SIM105
            self.wipe()
        except Exception:  # noqa: S110 - interpreter shutdown: nothing left to protect
            pass

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        # f"{secret:>40}" must not become a way around the redaction.
        return _REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time, so comparing a guess leaks nothing through timing.
        return hmac.compare_digest(bytes(self._value), bytes(other._value))

    # A hash of the value would be an oracle; secrets are not dict keys.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret refuses to be pickled: a pickle would carry the value in clear")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Secret refuses to be pickled: a pickle would carry the value in clear")

    def __getstate__(self) -> NoReturn:
        raise TypeError("Secret refuses to be pickled: a pickle would carry the value in clear")
