"""The encrypted vault: exchange keys sealed under a passphrase in one SQLite file.

    >>> with Vault.open(settings.vault_path) as vault:
    ...     vault.unlock(passphrase)
    ...     credential = vault.credential("bot1")

See ``store.py`` for the file and its guarantees, ``records.py`` for what each
ciphertext is bound to, and ``_schema.py`` for the tables and migrations. For
the gateway: ``policies.py`` (sealed policy documents), ``tokens.py`` (bot
tokens), ``admin_tokens.py`` (the dashboard's), ``halts.py`` (the kill switch)
and ``nonces.py`` (nonce leases).
"""

from keybroker.vault.admin_tokens import AdminToken
from keybroker.vault.halts import Halt
from keybroker.vault.lifecycle import RotationStatus, rotation_status
from keybroker.vault.records import CredentialRecord, KeyMaterial
from keybroker.vault.store import Vault, VaultInfo, VerifyResult
from keybroker.vault.tokens import BotToken

__all__ = [
    "AdminToken",
    "BotToken",
    "CredentialRecord",
    "Halt",
    "KeyMaterial",
    "RotationStatus",
    "Vault",
    "VaultInfo",
    "VerifyResult",
    "rotation_status",
]
