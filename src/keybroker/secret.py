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
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

_REDACTED = "Secret('***')"


class Secret:
    """Holds secret bytes; every textual form of it is redacted."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes | bytearray) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes | bytearray):
            raise TypeError("Secret takes str or bytes")
        self._value = bytearray(value)

    def reveal(self) -> bytes:
        """Return the secret bytes. Every call site is a place the secret is used."""
        return bytes(self._value)

    def reveal_text(self) -> str:
        """Return the secret as text (exchange secrets are ASCII or UTF-8)."""
        return self._value.decode("utf-8")

    def wipe(self) -> None:
        """Overwrite this object's copy with zeros and empty it (best effort, see module doc)."""
        for i in range(len(self._value)):
            self._value[i] = 0
        self._value = bytearray()

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
