"""Policy documents: sealed per credential, read back afresh, and any edit is caught."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from vault_testkit import PASSPHRASE, material

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import Vault, VerifyResult

DOCUMENT = b'{"scopes":["read","trade"],"symbols":["BTCUSDT"]}'
CANARY_POLICY = b'{"symbols":["CANARYPOLICYSYMBOL"]}'


def edit(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


@pytest.fixture
def two(vault: Vault) -> Vault:
    vault.add("bot1", "binance", material(1))
    vault.add("bot2", "okx", material(2, passphrase=Secret("FAKE-okx-pass")))
    return vault


def test_a_new_credential_has_no_policy_document(two: Vault) -> None:
    assert two.policy_document("bot1") is None


def test_set_then_read_back(two: Vault) -> None:
    two.set_policy("bot1", DOCUMENT)
    assert two.policy_document("bot1") == DOCUMENT
    assert two.policy_document("bot2") is None


def test_setting_again_replaces_and_bumps_the_version(two: Vault, vault_path: Path) -> None:
    two.set_policy("bot1", DOCUMENT)
    two.set_policy("bot1", b"{}")
    assert two.policy_document("bot1") == b"{}"
    conn = sqlite3.connect(vault_path)
    try:
        assert conn.execute("SELECT version FROM policies WHERE name = 'bot1'").fetchone() == (2,)
    finally:
        conn.close()


def test_another_process_sees_a_new_policy_at_once(two: Vault, reopen: Callable[[], Vault]) -> None:
    other = reopen()
    other.unlock(Secret(PASSPHRASE))
    assert other.policy_document("bot1") is None
    two.set_policy("bot1", DOCUMENT)
    assert other.policy_document("bot1") == DOCUMENT


def test_reading_and_writing_need_the_passphrase(two: Vault, reopen: Callable[[], Vault]) -> None:
    locked = reopen()
    with pytest.raises(errors.VaultLocked):
        locked.set_policy("bot1", DOCUMENT)
    with pytest.raises(errors.VaultLocked):
        locked.policy_document("bot1")


def test_unknown_credential(two: Vault) -> None:
    with pytest.raises(errors.CredentialNotFound):
        two.set_policy("nobody", DOCUMENT)
    with pytest.raises(errors.CredentialNotFound):
        two.policy_document("nobody")


@pytest.mark.parametrize("document", ["text, not bytes", b"x" * (64 * 1024 + 1)])
def test_bad_documents_are_refused(two: Vault, document: object) -> None:
    with pytest.raises(errors.InvalidInput):
        two.set_policy("bot1", document)  # type: ignore[arg-type]


def test_the_document_is_not_in_the_file_in_clear(two: Vault, vault_path: Path) -> None:
    two.set_policy("bot1", CANARY_POLICY)
    two.close()
    for path in vault_path.parent.glob("vault.db*"):
        assert b"CANARYPOLICYSYMBOL" not in path.read_bytes()


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("UPDATE policies SET version = version + 1", ()),
        ("UPDATE policies SET updated_at = ?", ("2020-01-01T00:00:00.000000+00:00",)),
        ("UPDATE policies SET sealed = CAST(zeroblob(12) || substr(sealed, 13) AS BLOB)", ()),
        ("UPDATE policies SET version = 'one'", ()),
    ],
)
def test_an_edited_policy_row_fails(two: Vault, vault_path: Path, sql: str, params: tuple) -> None:
    two.set_policy("bot1", DOCUMENT)
    edit(vault_path, sql, *params)
    with pytest.raises(errors.RecordTampered) as caught:
        two.policy_document("bot1")
    assert str(caught.value) == "the policy of credential 'bot1' failed authentication"
    assert VerifyResult("policy:bot1", False) in two.verify()


def test_a_policy_moved_to_another_credential_fails(two: Vault, vault_path: Path) -> None:
    two.set_policy("bot1", DOCUMENT)
    edit(vault_path, "UPDATE policies SET name = 'bot2' WHERE name = 'bot1'")
    with pytest.raises(errors.RecordTampered):
        two.policy_document("bot2")
    assert two.policy_document("bot1") is None  # deleting a policy fails safe: the default


def test_a_left_over_policy_never_applies_to_a_new_credential_of_the_same_name(
    two: Vault, vault_path: Path
) -> None:
    two.set_policy("bot1", DOCUMENT)
    conn = sqlite3.connect(vault_path)
    try:
        saved = conn.execute("SELECT * FROM policies").fetchone()
    finally:
        conn.close()
    two.remove("bot1")
    two.add("bot1", "binance", material(3))
    assert two.policy_document("bot1") is None  # remove took the policy with it
    edit(vault_path, "INSERT INTO policies VALUES (?, ?, ?, ?)", *saved)
    with pytest.raises(errors.RecordTampered):
        two.policy_document("bot1")  # bound to the old credential's row id


def test_verify_lists_policies_after_credentials(two: Vault) -> None:
    two.set_policy("bot2", DOCUMENT)
    two.set_policy("bot1", DOCUMENT)
    assert [result.name for result in two.verify()] == [
        "(header)",
        "bot1",
        "bot2",
        "policy:bot1",
        "policy:bot2",
    ]
    assert all(result.ok for result in two.verify())


def test_a_policy_row_without_its_credential_fails_verify(two: Vault, vault_path: Path) -> None:
    two.set_policy("bot1", DOCUMENT)
    edit(vault_path, "DELETE FROM credentials WHERE name = 'bot1'")
    assert VerifyResult("policy:bot1", False) in two.verify()
