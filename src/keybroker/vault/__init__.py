"""The encrypted vault: exchange keys sealed under a passphrase in one SQLite file.

    >>> with Vault.open(settings.vault_path) as vault:
    ...     vault.unlock(passphrase)
    ...     credential = vault.credential("bot1")

See ``store.py`` for the file and its guarantees, ``records.py`` for what each
ciphertext is bound to, and ``_schema.py`` for the tables and migrations.
"""

from keybroker.vault.lifecycle import RotationStatus, rotation_status
from keybroker.vault.records import CredentialRecord, KeyMaterial
from keybroker.vault.store import Vault, VaultInfo, VerifyResult

__all__ = [
    "CredentialRecord",
    "KeyMaterial",
    "RotationStatus",
    "Vault",
    "VaultInfo",
    "VerifyResult",
    "rotation_status",
]
