"""The kill switch in the vault: halting works locked, resuming needs the passphrase."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vault_testkit import PASSPHRASE, START_MS, material

from keybroker import errors
from keybroker.clock import FixedClock
from keybroker.secret import Secret
from keybroker.vault import Halt, Vault

START = datetime.fromtimestamp(START_MS / 1000, tz=UTC)


@pytest.fixture
def two(vault: Vault) -> Vault:
    vault.add("bot1", "binance", material(1))
    vault.add("bot2", "okx", material(2, passphrase=Secret("FAKE-okx-pass")))
    return vault


def test_nothing_is_halted_at_first(two: Vault) -> None:
    assert two.halted() == {} and two.list_halts() == []


def test_halt_one_and_all_while_locked(two: Vault, vault_path: Path, clock: FixedClock) -> None:
    with Vault.open(vault_path, clock=clock) as locked:
        locked.halt("bot1", reason="runaway grid bot")
        clock.advance(1000)
        locked.halt(None)
        assert not locked.is_unlocked
    assert two.halted() == {"*": START + timedelta(seconds=1), "bot1": START}
    assert two.list_halts() == [
        Halt("*", START + timedelta(seconds=1), ""),
        Halt("bot1", START, "runaway grid bot"),
    ]


def test_halting_again_keeps_the_first_time_and_reason(two: Vault, clock: FixedClock) -> None:
    two.halt("bot1", "first")
    clock.advance(5000)
    two.halt("bot1", "second")
    assert two.list_halts() == [Halt("bot1", START, "first")]


def test_halting_an_unknown_credential_is_an_error_not_a_silent_no_op(two: Vault) -> None:
    with pytest.raises(errors.CredentialNotFound):
        two.halt("bot3")
    with pytest.raises(errors.InvalidInput):
        two.halt("*")  # "all" is spelled None, never as a name
    assert two.halted() == {}


@pytest.mark.parametrize("reason", ["two\nlines", "bell\a", "x" * 501, 42])
def test_bad_reasons_are_refused(two: Vault, reason: object) -> None:
    with pytest.raises(errors.InvalidInput):
        two.halt("bot1", reason)  # type: ignore[arg-type]


def test_resume_needs_the_passphrase(two: Vault, reopen: Callable[[], Vault]) -> None:
    two.halt("bot1")
    locked = reopen()
    with pytest.raises(errors.VaultLocked):
        locked.resume("bot1")
    assert "bot1" in locked.halted()
    locked.unlock(Secret(PASSPHRASE))
    locked.resume("bot1")
    assert two.halted() == {}


def test_resume_one_leaves_the_others_and_resume_all_lifts_everything(two: Vault) -> None:
    two.halt("bot1")
    two.halt("bot2")
    two.halt(None)
    two.resume("bot1")
    assert set(two.halted()) == {"*", "bot2"}
    two.resume("bot1")  # not halted: nothing happens
    two.resume(None)
    assert two.halted() == {}


def test_removing_a_credential_keeps_its_halt(two: Vault) -> None:
    two.halt("bot1")
    two.remove("bot1")
    assert set(two.halted()) == {"bot1"}


def test_a_halt_from_another_process_is_seen_at_once_and_after_reopening(
    two: Vault, vault_path: Path, reopen: Callable[[], Vault]
) -> None:
    script = (
        "import sys; from pathlib import Path; from keybroker.vault import Vault\n"
        "with Vault.open(Path(sys.argv[1])) as v: v.halt('bot2', reason='from elsewhere')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(vault_path)], check=True, timeout=30)
    assert set(two.halted()) == {"bot2"}
    two.close()
    assert reopen().list_halts()[0].reason == "from elsewhere"


def test_an_unreadable_halt_time_still_halts(two: Vault, vault_path: Path) -> None:
    import sqlite3

    two.halt("bot1")
    conn = sqlite3.connect(vault_path)
    try:
        with conn:
            conn.execute("UPDATE halts SET halted_at = 'garbage'")
    finally:
        conn.close()
    assert set(two.halted()) == {"bot1"}
