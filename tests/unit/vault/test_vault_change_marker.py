"""``Vault.change_marker``: what lets the gateway answer from memory between vault commits."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from vault_testkit import PASSPHRASE, material

from keybroker.clock import FixedClock
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import Vault


def test_reads_leave_the_marker_alone(vault: Vault) -> None:
    vault.add("bot1", "binance", material(1))
    before = vault.change_marker()
    vault.credential("bot1")
    vault.policy_document("bot1")
    vault.halted()
    vault.tokens_version()
    assert vault.change_marker() == before


def test_a_write_through_this_vault_moves_it(vault: Vault) -> None:
    vault.add("bot1", "binance", material(1))
    before = vault.change_marker()
    vault.set_policy("bot1", Policy(scopes=("read", "trade")).to_json())
    after_policy = vault.change_marker()
    vault.halt("bot1")
    assert len({before, after_policy, vault.change_marker()}) == 3


def test_a_commit_by_another_connection_or_process_moves_it(
    vault: Vault, vault_path: Path, clock: FixedClock
) -> None:
    vault.add("bot1", "binance", material(1))
    before = vault.change_marker()
    with Vault.open(vault_path, clock=clock) as other:
        other.halt("bot1")
    after_other = vault.change_marker()
    assert after_other != before
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('DELETE FROM halts'); c.commit()"
    )
    subprocess.run([sys.executable, "-c", script, str(vault_path)], check=True)
    assert vault.change_marker() not in (before, after_other)


def test_a_rolled_back_write_elsewhere_does_not_move_it(vault: Vault, vault_path: Path) -> None:
    vault.add("bot1", "binance", material(1))
    before = vault.change_marker()
    conn = sqlite3.connect(vault_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM halts")
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert vault.change_marker() == before


def test_locking_and_unlocking_move_it(vault: Vault) -> None:
    before = vault.change_marker()
    vault.lock()
    locked = vault.change_marker()
    vault.unlock(Secret(PASSPHRASE))
    assert len({before, locked, vault.change_marker()}) == 3
