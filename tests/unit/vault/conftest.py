"""Fixtures for the vault tests: real SQLite files in tmp_path, cheap KDF parameters.

Argon2id at the smallest allowed cost still takes ~0.15 s, and most tests
need an unlocked vault. So each test gets a byte copy of one vault made per
session, and ``derive_key`` is memoised: it is a pure function, so the same
passphrase, salt and parameters give the same key whether computed or
remembered. A different passphrase or a fresh salt is computed for real.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vault_testkit import FAST_KDF, PASSPHRASE, START_MS

from keybroker.clock import FixedClock
from keybroker.crypto import kdf
from keybroker.secret import Secret
from keybroker.vault import Vault, store

remembered_derive_key = functools.lru_cache(maxsize=64)(kdf.derive_key)


@pytest.fixture(autouse=True)
def _remembered_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "derive_key", remembered_derive_key)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One empty vault (passphrase PASSPHRASE, FAST_KDF), copied for each test."""
    path = tmp_path_factory.mktemp("template") / "vault.db"
    Vault.create(path, Secret(PASSPHRASE), kdf=FAST_KDF).close()
    return path


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "vault.db"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_MS)


@pytest.fixture
def vault(template: Path, vault_path: Path, clock: FixedClock) -> Iterator[Vault]:
    """An unlocked vault with no credentials, in a 0700 home, file 0600."""
    vault_path.parent.mkdir(mode=0o700)
    shutil.copyfile(template, vault_path)
    vault_path.chmod(0o600)
    with Vault.open(vault_path, clock=clock) as opened:
        opened.wrong_passphrase_delay = 0.0
        opened.unlock(Secret(PASSPHRASE))
        yield opened


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
