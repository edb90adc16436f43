"""Fixtures for the doctor's checks: real files, real git repos, real vaults with a cheap KDF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_testkit import START_MS

from keybroker.clock import FixedClock
from keybroker.crypto.kdf import Argon2idParams
from keybroker.secret import Secret
from keybroker.vault import Vault

FAST_KDF = Argon2idParams(memory_kib=65536, iterations=1, lanes=1)
PASSPHRASE = "doctor test passphrase, not real"


@pytest.fixture(scope="session")
def template_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("doctor-template") / "vault.db"
    Vault.create(path, Secret(PASSPHRASE), kdf=FAST_KDF, clock=FixedClock(START_MS)).close()
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def vault(home: Path, template_vault: Path) -> Iterator[Vault]:
    """An unlocked copy of the template vault in ``home`` (0600), on a clock at START."""
    target = home / "vault.db"
    target.write_bytes(template_vault.read_bytes())
    target.chmod(0o600)
    opened = Vault.open(target, clock=FixedClock(START_MS))
    opened.unlock(Secret(PASSPHRASE))
    yield opened
    opened.close()
