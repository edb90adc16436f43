"""Schema migrations: a vault made by an older keybroker is upgraded in place when opened."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_testkit import FAST_KDF, PASSPHRASE, material

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import Vault, _schema


def schema_objects(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()
    return [(kind, name, " ".join((sql or "").split())) for kind, name, sql in rows]


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def schema1_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A vault written by the schema-1 code (migration 1 only), with one credential."""
    path = tmp_path_factory.mktemp("schema1") / "vault.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:1])
        patch.setattr(_schema, "LATEST_VERSION", 1)
        with Vault.create(path, Secret(PASSPHRASE), kdf=FAST_KDF) as vault:
            vault.add("bot1", "binance", material(1))
    assert user_version(path) == 1
    yield path


@pytest.fixture
def schema1(schema1_template: Path, vault_path: Path) -> Path:
    vault_path.parent.mkdir(mode=0o700)
    shutil.copyfile(schema1_template, vault_path)
    vault_path.chmod(0o600)
    return vault_path


def test_the_latest_schema_is_the_number_of_migrations() -> None:
    assert _schema.LATEST_VERSION == len(_schema.MIGRATIONS) >= 3


def test_a_schema_1_vault_is_upgraded_when_opened(schema1: Path, template: Path) -> None:
    assert "tokens" not in {name for _, name, _ in schema_objects(schema1)}
    with Vault.open(schema1) as vault:
        assert vault.info().schema_version == len(_schema.MIGRATIONS)
        vault.wrong_passphrase_delay = 0.0
        vault.unlock(Secret(PASSPHRASE))
        # The old record still opens, and everything new works at once.
        assert vault.credential("bot1").secret == Secret("FAKE-SECRET-canary-0001")
        vault.set_policy("bot1", b"{}")
        token, _ = vault.create_token("grid", ["bot1"], expires_at=None, max_orders_per_minute=1)
        assert vault.check_token(token.reveal_text()).bot == "grid"
        vault.halt(None)
        assert vault.reserve_nonces("bot1", 5, block=10) == 15
        assert all(result.ok for result in vault.verify())
    assert user_version(schema1) == len(_schema.MIGRATIONS)
    # The same tables, indexes and counters as a vault made new.
    assert schema_objects(schema1) == schema_objects(template)


def test_the_upgrade_happens_while_locked_for_a_read_only_command(schema1: Path) -> None:
    with Vault.open(schema1) as vault:
        assert [record.name for record in vault.list_credentials()] == ["bot1"]
        assert vault.halted() == {} and vault.tokens_version() == 0
    assert user_version(schema1) == len(_schema.MIGRATIONS)


def test_two_processes_opening_an_old_vault_at_once_both_succeed(schema1: Path) -> None:
    opened: list[int] = []
    failures: list[BaseException] = []

    def open_it() -> None:
        try:
            with Vault.open(schema1) as vault:
                opened.append(vault.info().schema_version)
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and opened == [len(_schema.MIGRATIONS)] * 4


def test_an_upgraded_vault_is_refused_by_the_older_keybroker_untouched(
    schema1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Vault.open(schema1).close()
    before = schema1.read_bytes()
    newer = f"schema {len(_schema.MIGRATIONS)}, newer than this keybroker"
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:1])
    monkeypatch.setattr(_schema, "LATEST_VERSION", 1)
    with pytest.raises(errors.VaultError, match=newer):
        Vault.open(schema1)
    assert schema1.read_bytes() == before


def test_a_failed_upgrade_leaves_the_vault_at_schema_1(
    schema1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (*_schema.MIGRATIONS[1][:-1], "INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(_schema, "MIGRATIONS", (_schema.MIGRATIONS[0], broken))
    with pytest.raises(errors.VaultDamaged):
        Vault.open(schema1)
    assert user_version(schema1) == 1
    assert "tokens" not in {name for _, name, _ in schema_objects(schema1)}
    monkeypatch.undo()
    with Vault.open(schema1) as vault:
        assert vault.info().schema_version == len(_schema.MIGRATIONS)
