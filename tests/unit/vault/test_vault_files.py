"""The file on disk: permissions are checked, and damaged files are reported, never touched."""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from vault_testkit import FAST_KDF, PASSPHRASE, material

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import Vault

# -- permissions -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_can_read_opens_with_a_warning(
    vault: Vault, vault_path: Path, reopen: Callable[[], Vault], mode: int
) -> None:
    vault_path.chmod(mode)
    again = reopen()
    assert len(again.warnings) == 1
    assert "readable by group or others" in again.warnings[0]
    assert again.warnings[0].endswith(f"fix it with: chmod 600 {vault_path}")
    assert again.info().file_mode == mode
    assert again.info().warnings == tuple(again.warnings)


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602, 0o660])
def test_a_file_others_can_write_is_refused(vault: Vault, vault_path: Path, mode: int) -> None:
    vault_path.chmod(mode)
    with pytest.raises(errors.InsecurePermissions) as caught:
        Vault.open(vault_path)
    assert "writable by group or others" in str(caught.value)
    assert str(caught.value).endswith(f"fix it with: chmod 600 {vault_path}")


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o711])
def test_a_directory_others_can_enter_opens_with_a_warning(
    vault: Vault, vault_path: Path, reopen: Callable[[], Vault], mode: int
) -> None:
    vault_path.parent.chmod(mode)
    again = reopen()
    assert again.warnings == [
        f"vault directory {vault_path.parent} is readable by group or others "
        f"(mode {mode:04o}); fix it with: chmod 700 {vault_path.parent}"
    ]
    assert again.info().dir_mode == mode


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o730, 0o1777])
def test_a_directory_others_can_write_is_refused(vault: Vault, vault_path: Path, mode: int) -> None:
    vault_path.parent.chmod(mode)
    with pytest.raises(errors.InsecurePermissions, match=f"chmod 700 {vault_path.parent}$"):
        Vault.open(vault_path)


def test_a_private_vault_has_no_warnings(reopen: Callable[[], Vault]) -> None:
    assert reopen().warnings == []


# -- damaged and foreign files ---------------------------------------------------------


def snapshot(path: Path) -> tuple[bytes, int, list[str]]:
    """Bytes, mtime and the directory listing: everything 'untouched' means."""
    return path.read_bytes(), path.stat().st_mtime_ns, sorted(os.listdir(path.parent))


def make_damaged_file(kind: str, path: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(random.Random(7).randbytes(8192))
    elif kind == "text":
        path.write_text("BINANCE_API_KEY=FAKE\n")
    elif kind == "foreign sqlite database":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()
    else:
        Vault.create(path, Secret(PASSPHRASE), kdf=FAST_KDF).close()
        size = path.stat().st_size
        if kind == "truncated to half":
            os.truncate(path, size // 2)
        elif kind == "truncated inside the header":
            os.truncate(path, 50)
        elif kind == "truncated by one byte":
            os.truncate(path, size - 1)
        elif kind == "scribbled over a page":
            with path.open("r+b") as file:
                file.seek(4096 + 8)  # second page, past its page header
                file.write(b"\xff" * 512)
        else:
            raise AssertionError(kind)
    path.chmod(0o600)


DAMAGE = [
    "empty",
    "garbage",
    "text",
    "foreign sqlite database",
    "truncated to half",
    "truncated inside the header",
    "truncated by one byte",
    "scribbled over a page",
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_file_is_reported_and_left_untouched(tmp_path: Path, kind: str) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "vault.db"
    make_damaged_file(kind, path)
    before = snapshot(path)
    with pytest.raises(errors.VaultDamaged) as caught:
        Vault.open(path)
    assert str(caught.value).startswith("vault file is damaged: ")
    assert "\n" not in str(caught.value)
    assert snapshot(path) == before
    # `init` does not "repair" it by starting over either.
    with pytest.raises(errors.VaultExists):
        Vault.create(path, Secret(PASSPHRASE))
    assert snapshot(path) == before


def test_a_directory_in_the_vaults_place_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    path.mkdir()
    with pytest.raises(errors.VaultDamaged, match="not a regular file"):
        Vault.open(path)


def test_an_empty_header_table_is_damage(vault: Vault, vault_path: Path) -> None:
    vault.add("bot1", "binance", material())
    vault.close()
    conn = sqlite3.connect(vault_path)
    with conn:
        conn.execute("DELETE FROM header")
    conn.close()
    with pytest.raises(errors.VaultDamaged, match="header row is missing"):
        Vault.open(vault_path)
