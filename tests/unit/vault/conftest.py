"""Fixtures for the vault tests: real SQLite files in tmp_path, cheap KDF parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vault_testkit import FAST_KDF, PASSPHRASE, START_MS

from keybroker.clock import FixedClock
from keybroker.secret import Secret
from keybroker.vault import Vault


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "vault.db"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_MS)


@pytest.fixture
def vault(vault_path: Path, clock: FixedClock) -> Iterator[Vault]:
    """A new, unlocked vault with no credentials."""
    with Vault.create(vault_path, Secret(PASSPHRASE), kdf=FAST_KDF, clock=clock) as created:
        created.wrong_passphrase_delay = 0.0
        yield created


@pytest.fixture
def reopen(vault: Vault, vault_path: Path) -> Iterator[Callable[[], Vault]]:
    """Open the vault file again (locked), as another command would; closed at teardown."""
    opened: list[Vault] = []

    def _open() -> Vault:
        fresh = Vault.open(vault_path)
        fresh.wrong_passphrase_delay = 0.0
        opened.append(fresh)
        return fresh

    yield _open
    for each in opened:
        each.close()
