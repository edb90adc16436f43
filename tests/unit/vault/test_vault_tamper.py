"""Edits to the SQLite file made outside keybroker are caught on the record's next use."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vault_testkit import FAST_KDF, PASSPHRASE, material

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import Vault, VerifyResult
from keybroker.vault.records import COLUMNS


def edit(path: Path, sql: str, *params: object) -> None:
    """Change the file the way an attacker or a stray tool would: plain sqlite3."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def fetch(path: Path, sql: str, *params: object) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def two(vault: Vault) -> Vault:
    vault.add("bot1", "binance", material(1), scopes=["read"])
    vault.add("bot2", "okx", material(2, passphrase=Secret("FAKE-okx-pass")))
    return vault


# One plausible edit per bound column, each something keybroker itself could
# have written, so only the associated data can tell that it was not.
COLUMN_EDITS = {
    "name": "bot9",
    "exchange": "bybit",
    "environment": "production",
    "scopes": "read,trade",
    "key_type": "rsa",
    "key_id": "EVIL…0000",
    "created_at": "2020-01-01T00:00:00.000000+00:00",
    "rotated_at": "2026-01-02T00:00:00.000000+00:00",
    "key_history": '[["FAKE…0000", "2026-01-02T00:00:00.000000+00:00"]]',
    "base_url": "https://attacker.example",
    "notes": "edited",
    "version": 2,
}


def test_every_bound_column_has_an_edit_here() -> None:
    assert set(COLUMN_EDITS) == set(COLUMNS)


@pytest.mark.parametrize("column", [*COLUMNS, "id"])
def test_editing_a_bound_column_fails_that_record_only(
    two: Vault, vault_path: Path, column: str
) -> None:
    value = COLUMN_EDITS.get(column, 12345)
    sql = f"UPDATE credentials SET {column} = ? WHERE name = 'bot1'"  # noqa: S608 - our names
    edit(vault_path, sql, value)
    name = "bot9" if column == "name" else "bot1"
    with pytest.raises(errors.RecordTampered) as caught:
        two.credential(name)
    assert "FAKE" not in str(caught.value)
    assert two.credential("bot2").secret == Secret("FAKE-SECRET-canary-0002")
    results = two.verify()
    assert VerifyResult(name, False) in results
    assert VerifyResult("bot2", True) in results
    assert VerifyResult("(header)", True) in results


def test_an_intact_vault_verifies(two: Vault) -> None:
    assert two.verify() == [
        VerifyResult("(header)", True),
        VerifyResult("bot1", True),
        VerifyResult("bot2", True),
    ]


def test_swapping_two_ciphertexts_fails_both(two: Vault, vault_path: Path) -> None:
    first = fetch(vault_path, "SELECT sealed FROM credentials WHERE name = 'bot1'")
    second = fetch(vault_path, "SELECT sealed FROM credentials WHERE name = 'bot2'")
    edit(vault_path, "UPDATE credentials SET sealed = ? WHERE name = 'bot1'", second)
    edit(vault_path, "UPDATE credentials SET sealed = ? WHERE name = 'bot2'", first)
    for name in ("bot1", "bot2"):
        with pytest.raises(errors.RecordTampered):
            two.credential(name)
    assert [result.ok for result in two.verify()] == [True, False, False]


def test_a_whole_row_copied_from_another_vault_fails(
    two: Vault, vault_path: Path, tmp_path: Path
) -> None:
    other_path = tmp_path / "other" / "vault.db"
    with Vault.create(other_path, Secret(PASSPHRASE), kdf=FAST_KDF) as other:
        other.add("bot3", "binance", material(3))
    conn = sqlite3.connect(vault_path)
    with conn:
        conn.execute("ATTACH DATABASE ? AS other", (str(other_path),))
        conn.execute("INSERT INTO credentials SELECT * FROM other.credentials")
    conn.close()
    with pytest.raises(errors.RecordTampered):
        two.credential("bot3")


def test_a_record_cannot_be_laundered_by_rotating_it(two: Vault, vault_path: Path) -> None:
    edit(vault_path, "UPDATE credentials SET environment = 'production' WHERE name = 'bot1'")
    with pytest.raises(errors.RecordTampered):
        two.rotate("bot1", material(5))
    with pytest.raises(errors.RecordTampered):
        two.credential("bot1")


def test_unparsable_clear_columns_fail_as_tampered_even_while_locked(
    two: Vault, vault_path: Path
) -> None:
    edit(vault_path, "UPDATE credentials SET created_at = 'yesterday' WHERE name = 'bot1'")
    two.lock()
    with pytest.raises(errors.RecordTampered, match="bot1"):
        two.record("bot1")
    assert two.record("bot2").name == "bot2"


# One vault for all examples (a new one per example would pay the KDF each
# time): each example restores the ciphertext it flipped.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_flipping_any_bit_of_a_ciphertext_fails(
    two: Vault, vault_path: Path, position: int, bit: int
) -> None:
    # Read it once intact first, so the in-memory answer for the row exists
    # and must not be what answers for the flipped row.
    assert two.credential("bot2").api_key == "FAKE-APIKEY-0002-not-real"
    sealed = fetch(vault_path, "SELECT sealed FROM credentials WHERE name = 'bot2'")
    assert isinstance(sealed, bytes)
    index = position % len(sealed)
    flipped = bytearray(sealed)
    flipped[index] ^= 1 << bit
    edit(vault_path, "UPDATE credentials SET sealed = ? WHERE name = 'bot2'", bytes(flipped))
    try:
        with pytest.raises(errors.RecordTampered):
            two.credential("bot2")
    finally:
        edit(vault_path, "UPDATE credentials SET sealed = ? WHERE name = 'bot2'", sealed)


# -- the header ------------------------------------------------------------------------

HEADER_EDITS: dict[str, Callable[[object], object]] = {
    "vault_id": lambda value: "0" * 32,
    "kdf_iterations": lambda value: 2,
    "kdf_lanes": lambda value: 2,
    "kdf_salt": lambda value: bytes(16),
    "wrapped_key": lambda value: bytes(b ^ 1 for b in value) if isinstance(value, bytes) else b"",
}


@pytest.mark.parametrize("column", sorted(HEADER_EDITS))
def test_an_edited_header_does_not_unlock(
    two: Vault, vault_path: Path, reopen: Callable[[], Vault], column: str
) -> None:
    old = fetch(vault_path, f"SELECT {column} FROM header")  # noqa: S608 - our names
    edit(vault_path, f"UPDATE header SET {column} = ?", HEADER_EDITS[column](old))  # noqa: S608
    with pytest.raises(errors.WrongPassphrase):
        reopen().unlock(Secret(PASSPHRASE))
    # A vault unlocked before the edit notices it in verify().
    assert two.verify()[0] == VerifyResult("(header)", False)


def test_kdf_parameters_below_the_floor_are_damage(
    two: Vault, vault_path: Path, reopen: Callable[[], Vault]
) -> None:
    edit(vault_path, "UPDATE header SET kdf_memory_kib = 8")
    with pytest.raises(errors.VaultDamaged, match="KDF"):
        reopen()


def test_a_trigger_planted_in_the_file_is_refused(two: Vault, vault_path: Path) -> None:
    edit(
        vault_path,
        "CREATE TRIGGER keep_copies AFTER UPDATE ON header "
        "BEGIN INSERT INTO credentials (name) VALUES ('x'); END",
    )
    with pytest.raises(errors.VaultDamaged, match="keep_copies"):
        Vault.open(vault_path)
