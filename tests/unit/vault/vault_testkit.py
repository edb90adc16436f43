"""Shared values for the vault tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

from keybroker.crypto.kdf import Argon2idParams
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

# The smallest parameters Argon2idParams accepts (64 MiB, one pass, one lane):
# about 0.15 s per derivation, so a test pays for one or two.
FAST_KDF = Argon2idParams(memory_kib=65536, iterations=1, lanes=1)
PASSPHRASE = "correct horse battery staple"  # test-only
NEW_PASSPHRASE = "a different passphrase, also fake"  # test-only
CANARY = "FAKE-SECRET-canary-0001"
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def material(n: int = 1, **changes: object) -> KeyMaterial:
    """Obviously fake key material; ``n`` makes the api key and secret distinct."""
    fields: dict[str, object] = {
        "api_key": f"FAKE-APIKEY-{n:04d}-not-real",
        "secret": Secret(f"FAKE-SECRET-canary-{n:04d}"),
    }
    fields.update(changes)
    return KeyMaterial(**fields)
