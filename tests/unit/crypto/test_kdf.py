"""Argon2id parameters: floors, known answers, calibration."""

from __future__ import annotations

import pytest

from keybroker.crypto.kdf import MIN_MEMORY_KIB, Argon2idParams, derive_key
from keybroker.errors import InvalidInput

FAST = Argon2idParams(memory_kib=MIN_MEMORY_KIB, iterations=1, lanes=1)


def test_memory_never_below_64_mib() -> None:
    with pytest.raises(InvalidInput, match="at least 64 MiB"):
        Argon2idParams(memory_kib=MIN_MEMORY_KIB - 1)


@pytest.mark.parametrize("field", ["iterations", "lanes"])
def test_other_parameters_are_bounded(field: str) -> None:
    with pytest.raises(InvalidInput):
        Argon2idParams(**{field: 0})  # type: ignore[arg-type]


def test_derivation_is_deterministic_and_salted() -> None:
    salt = b"\x01" * 16
    assert derive_key(b"passphrase-long", salt, FAST) == derive_key(b"passphrase-long", salt, FAST)
    assert derive_key(b"passphrase-long", salt, FAST) != derive_key(
        b"passphrase-long", b"\x02" * 16, FAST
    )
    assert len(derive_key(b"p", salt, FAST)) == 32


def test_rfc9106_argon2id_test_vector() -> None:
    # RFC 9106 §5.3 uses secret and associated data, which derive_key does not take;
    # check the primitive itself against it so a library change cannot go unnoticed.
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    tag = Argon2id(
        salt=b"\x02" * 16,
        length=32,
        iterations=3,
        lanes=4,
        memory_cost=32,
        ad=b"\x04" * 12,
        secret=b"\x03" * 8,
    ).derive(b"\x01" * 32)
    assert tag.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def test_weaker_comparison() -> None:
    assert FAST.is_weaker_than(Argon2idParams(memory_kib=MIN_MEMORY_KIB * 2, iterations=1))
    assert not Argon2idParams(memory_kib=MIN_MEMORY_KIB * 2).is_weaker_than(FAST)


def test_calibration_respects_the_floor_and_a_short_target() -> None:
    params = Argon2idParams.calibrate(target_seconds=0.05, lanes=1)
    assert params.memory_kib >= MIN_MEMORY_KIB
    assert params.iterations >= 2
