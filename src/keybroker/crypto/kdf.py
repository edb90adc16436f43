"""Argon2id: turns the vault passphrase into the key-encryption key.

    >>> params = Argon2idParams.calibrate(target_seconds=0.5)
    >>> kek = derive_key(b"correct horse battery staple", salt, params)

The parameters are stored in the vault header next to a random salt, so
they can be raised later (``keybroker vault upgrade-kdf``) without breaking
old vaults. Memory is the parameter that hurts an attacker with GPUs or
ASICs: every guess costs ``memory_kib`` of RAM, so it never goes below 64 MiB.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from keybroker.errors import InvalidInput

MIN_MEMORY_KIB = 64 * 1024
MAX_MEMORY_KIB = 4 * 1024 * 1024
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Argon2idParams:
    """Argon2id cost parameters (RFC 9106 names: m in KiB, t passes, p lanes)."""

    memory_kib: int = MIN_MEMORY_KIB
    iterations: int = 3
    lanes: int = 4

    def __post_init__(self) -> None:
        if self.memory_kib < MIN_MEMORY_KIB:
            raise InvalidInput(
                f"Argon2id memory must be at least {MIN_MEMORY_KIB // 1024} MiB "
                f"(got {self.memory_kib // 1024} MiB)"
            )
        if self.memory_kib > MAX_MEMORY_KIB:
            raise InvalidInput(f"Argon2id memory above {MAX_MEMORY_KIB // 1024} MiB is refused")
        if not 1 <= self.iterations <= 64:
            raise InvalidInput("Argon2id iterations must be between 1 and 64")
        if not 1 <= self.lanes <= 16:
            raise InvalidInput("Argon2id lanes must be between 1 and 16")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def is_weaker_than(self, other: Argon2idParams) -> bool:
        """True when ``other`` costs an attacker more per guess in memory or time."""
        return (self.memory_kib, self.iterations) < (other.memory_kib, other.iterations)

    @classmethod
    def calibrate(cls, target_seconds: float = 0.5, lanes: int = 4) -> Argon2idParams:
        """Pick parameters that take about ``target_seconds`` on this machine.

        Memory grows first (it is what costs an attacker), from 64 MiB up to
        1 GiB; passes are added only once memory has stopped growing.
        """
        memory, iterations = MIN_MEMORY_KIB, 2
        salt = os.urandom(SALT_BYTES)
        elapsed = _time_one(salt, memory, iterations, lanes)
        while elapsed * 2 <= target_seconds and memory * 2 <= 1024 * 1024:
            memory *= 2
            elapsed *= 2
        if elapsed < target_seconds:
            per_pass = elapsed / iterations
            iterations = max(iterations, min(16, round(target_seconds / per_pass)))
        return cls(memory_kib=memory, iterations=iterations, lanes=lanes)


def _time_one(salt: bytes, memory: int, iterations: int, lanes: int) -> float:
    start = time.perf_counter()
    Argon2id(
        salt=salt, length=KEY_BYTES, iterations=iterations, lanes=lanes, memory_cost=memory
    ).derive(b"calibration")
    return time.perf_counter() - start


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_key(passphrase: bytes, salt: bytes, params: Argon2idParams) -> bytes:
    """Derive the 256-bit key-encryption key from a passphrase."""
    return Argon2id(
        salt=salt,
        length=KEY_BYTES,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive(passphrase)
