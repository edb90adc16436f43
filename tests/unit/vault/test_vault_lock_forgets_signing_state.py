"""Locking the vault also forgets what the signers cached about its keys."""

from __future__ import annotations

from pathlib import Path

from keybroker.crypto import signing
from keybroker.crypto.kdf import Argon2idParams
from keybroker.secret import Secret
from keybroker.vault import Vault

FAST = Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1)


def test_lock_empties_the_hmac_state_cache(tmp_path: Path) -> None:
    vault = Vault.create(tmp_path / "vault.db", Secret("a test passphrase, not real"), kdf=FAST)
    signing.hmac_sha256_hex(b"obviously-fake-test-secret", b"payload")
    assert signing._pads.cache_info().currsize >= 1
    vault.lock()
    assert signing._pads.cache_info().currsize == 0
    vault.close()
