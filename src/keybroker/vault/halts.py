"""The kill switch: halted credentials, kept in the vault so every gateway sees them.

    >>> vault.halt("binance-main", reason="runaway bot")   # works locked
    >>> vault.halted()
    {'binance-main': datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)}
    >>> vault.resume("binance-main")                       # needs the passphrase

A halt stops new orders on every gateway using this vault file (they poll
``halted()``); cancels and reads still pass. It holds across restarts until
``resume``. The name ``"*"`` halts every credential.

Halting needs no passphrase, on purpose: an emergency button that first asks
for one is pressed too late. So halt rows cannot carry a MAC, and whoever can
write the vault file can delete one. That is no new power: such a person can
delete the whole vault. Resuming asks for the passphrase so that lifting a
halt is a deliberate act of the vault's owner, not of any process of the user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from keybroker.errors import CredentialNotFound, InvalidInput
from keybroker.vault import _file
from keybroker.vault._parts import VaultParts, parse_time, time_text
from keybroker.vault._schema import write_transaction
from keybroker.vault.records import check_name

ALL = "*"
MAX_REASON_CHARS = 500


@dataclass(frozen=True, slots=True)
class Halt:
    """One halt: a credential's name (or ``"*"`` for all), when, and the reason given."""

    name: str
    halted_at: datetime
    reason: str


class HaltStore(VaultParts):
    """The kill-switch part of Vault: halt, resume, halted, list_halts."""

    def halt(self, name: str | None, reason: str = "") -> None:
        """Stop new orders for credential ``name`` (None: for every credential); works locked.

        Halting what is already halted keeps the first halt's time and reason.
        Raises CredentialNotFound (a typo must not look like a halt that
        held), InvalidInput (a reason over 500 characters or with control
        characters).
        """
        if not isinstance(reason, str):
            raise InvalidInput("the reason must be text")
        reason = reason.strip()
        if len(reason) > MAX_REASON_CHARS:
            raise InvalidInput(f"the reason is limited to {MAX_REASON_CHARS} characters")
        if any(not character.isprintable() for character in reason):
            raise InvalidInput("the reason must be one line of printable text")
        if name is not None:
            check_name(name)
        with self._lock, _file.sqlite_errors(), write_transaction(self._conn):
            if name is not None:
                found = self._conn.execute(
                    "SELECT 1 FROM credentials WHERE name = ?", (name,)
                ).fetchone()
                if found is None:
                    raise CredentialNotFound(f"no credential named {name!r}")
            self._conn.execute(
                "INSERT INTO halts (name, halted_at, reason) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (ALL if name is None else name, time_text(self._now()), reason),
            )

    def resume(self, name: str | None) -> None:
        """Lift the halt on ``name``; None lifts every halt, ``"*"`` and per-credential ones.

        Resuming one credential while ``"*"`` stands leaves it halted (see
        ``halted()``). Resuming what is not halted does nothing.
        Raises VaultLocked.
        """
        with self._lock:
            self._require_key()
            with _file.sqlite_errors(), write_transaction(self._conn):
                if name is None:
                    self._conn.execute("DELETE FROM halts")
                else:
                    self._conn.execute("DELETE FROM halts WHERE name = ?", (name,))

    def halted(self) -> dict[str, datetime]:
        """Halted names and since when (``"*"`` means every credential); works locked."""
        return {halt.name: halt.halted_at for halt in self.list_halts()}

    def list_halts(self) -> list[Halt]:
        """Every halt with its reason, by name; works locked. One SELECT: cheap to poll."""
        with self._lock, _file.sqlite_errors():
            rows = self._conn.execute(
                "SELECT name, halted_at, reason FROM halts ORDER BY name"
            ).fetchall()
        halts = []
        for name, halted_at, reason in rows:
            try:
                moment = parse_time(halted_at)
            except (TypeError, ValueError):
                # Unreadable is still halted: a kill switch fails closed.
                moment = datetime.fromtimestamp(0, tz=UTC)
            halts.append(Halt(str(name), moment, reason if isinstance(reason, str) else ""))
        return halts
