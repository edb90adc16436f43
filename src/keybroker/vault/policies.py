"""Each credential's policy document, sealed in the vault like its key material.

    >>> vault.set_policy("bot1", policy.to_json())   # needs the vault unlocked
    >>> Policy.from_json(vault.policy_document("bot1") or DEFAULT_POLICY.to_json())

The vault stores the document as opaque bytes (keybroker.policy gives them
meaning; the vault may not import it). The ciphertext is bound to the vault,
the credential's name *and its random row id*, the policy's version and the
time it was set. So an edited or swapped policy row fails as RecordTampered,
a policy pasted from another credential or vault fails, and a policy left
behind by a removed credential can never apply to a new credential that
reuses the name. Deleting the row is the one edit that is not detected, and
it fails safe: no document means the default policy, read-only, no symbols.
An older sealed document of the same credential pasted back (a rollback)
is not detected either; that needs a counter outside the file.
"""

from __future__ import annotations

from keybroker.crypto.aead import seal, unseal
from keybroker.errors import CredentialNotFound, InvalidInput, RecordTampered
from keybroker.secret import Secret
from keybroker.vault import _file
from keybroker.vault._parts import VaultParts, canonical, time_text
from keybroker.vault._schema import write_transaction

# Far above any real policy (a few hundred bytes); keeps a runaway caller from
# writing megabytes into every gateway's poll.
MAX_DOCUMENT_BYTES = 64 * 1024

_SELECT = (
    "SELECT c.id, p.version, p.updated_at, p.sealed FROM credentials AS c "
    "LEFT JOIN policies AS p ON p.name = c.name WHERE c.name = ?"
)


def policy_associated_data(
    vault_id: str, name: str, credential_id: int, version: int, updated_at: str
) -> bytes:
    """What a policy's ciphertext is bound to (fixed-key JSON, unambiguous)."""
    bound = {
        "vault_id": vault_id,
        "name": name,
        "credential_id": credential_id,
        "version": version,
        "updated_at": updated_at,
    }
    return b"keybroker/policy/v1\n" + canonical(bound)


class PolicyStore(VaultParts):
    """The policy part of Vault: set_policy, policy_document."""

    def set_policy(self, name: str, document: bytes) -> None:
        """Seal ``document`` as the policy of credential ``name``, replacing any before it.

        Each call bumps the policy's version. Raises VaultLocked,
        CredentialNotFound, InvalidInput (not bytes, or over 64 KiB).
        """
        if not isinstance(document, bytes | bytearray):
            raise InvalidInput("a policy document must be bytes")
        if len(document) > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"a policy document is limited to {MAX_DOCUMENT_BYTES} bytes")
        with self._lock:
            data_key = self._require_key()
            with _file.sqlite_errors(), write_transaction(self._conn):
                row = self._conn.execute(_SELECT, (name,)).fetchone()
                if row is None:
                    raise CredentialNotFound(f"no credential named {name!r}")
                credential_id, old_version = row[0], row[1]
                version = (old_version if isinstance(old_version, int) else 0) + 1
                updated_at = time_text(self._now())
                aad = policy_associated_data(
                    self._header.vault_id, name, credential_id, version, updated_at
                )
                sealed = seal(data_key.reveal(), bytes(document), aad)
                self._conn.execute(
                    "INSERT INTO policies (name, version, updated_at, sealed) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET version = excluded.version, "
                    "updated_at = excluded.updated_at, sealed = excluded.sealed",
                    (name, version, updated_at, sealed),
                )

    def policy_document(self, name: str) -> bytes | None:
        """The policy document last set for credential ``name``, or None if none was.

        Read afresh on every call (one indexed SELECT and one AES-GCM open),
        so a `keybroker policy set` in another process applies at once.
        Raises VaultLocked, CredentialNotFound, RecordTampered.
        """
        with self._lock:
            data_key = self._require_key()
            with _file.sqlite_errors():
                row = self._conn.execute(_SELECT, (name,)).fetchone()
        if row is None:
            raise CredentialNotFound(f"no credential named {name!r}")
        return self._open_policy(data_key, name, tuple(row))

    def _verify_policies(self, data_key: Secret) -> list[tuple[str, bool]]:
        """(name, authentic) for every stored policy, sorted by name (for Vault.verify)."""
        with self._lock, _file.sqlite_errors():
            names = [
                row[0]
                for row in self._conn.execute("SELECT name FROM policies ORDER BY name").fetchall()
            ]
        results = []
        for name in names:
            with self._lock, _file.sqlite_errors():
                row = self._conn.execute(_SELECT, (name,)).fetchone()
            try:
                if row is None:  # a policy whose credential is gone
                    raise RecordTampered("orphaned policy")
                self._open_policy(data_key, name, tuple(row))
            except RecordTampered:
                results.append((str(name), False))
            else:
                results.append((str(name), True))
        return results

    def _open_policy(self, data_key: Secret, name: str, row: tuple[object, ...]) -> bytes | None:
        credential_id, version, updated_at, sealed = row
        if version is None and updated_at is None and sealed is None:
            return None
        if not (
            isinstance(credential_id, int)
            and isinstance(version, int)
            and isinstance(updated_at, str)
            and isinstance(sealed, bytes)
        ):
            raise _tampered(name)
        aad = policy_associated_data(
            self._header.vault_id, name, credential_id, version, updated_at
        )
        try:
            return unseal(data_key.reveal(), sealed, aad)
        except RecordTampered:
            raise _tampered(name) from None


def _tampered(name: str) -> RecordTampered:
    return RecordTampered(f"the policy of credential {name!r} failed authentication")
