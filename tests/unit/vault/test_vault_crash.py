"""Killed processes and concurrent writers: the vault is never left between two states.

Every test here runs real second processes (``vault_child.py``) on a real file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_testkit import NEW_PASSPHRASE, PASSPHRASE, material

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import Vault

CHILD = Path(__file__).with_name("vault_child.py")
OTHER = {PASSPHRASE: NEW_PASSPHRASE, NEW_PASSPHRASE: PASSPHRASE}
KILLED = -9


class PasswdProcesses:
    """Drives ``vault_child.py serve``: one forked passwd process at a time."""

    def __init__(self) -> None:
        self._server = subprocess.Popen(
            [sys.executable, str(CHILD), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _say(self, line: str) -> str:
        assert self._server.stdin is not None and self._server.stdout is not None
        self._server.stdin.write(line + "\n")
        self._server.stdin.flush()
        return self._server.stdout.readline().strip()

    def start(self, path: Path, old: str, new: str, exit_at: int = 0) -> None:
        """Return once the process has unlocked and is calling change_passphrase."""
        request = {"path": str(path), "old": old, "new": new, "exit_at": exit_at}
        assert self._say(json.dumps(request)) == "ready"

    def kill(self) -> int:
        """SIGKILL it now (if it is still running); its exit code."""
        return int(self._say("kill").split()[1])

    def wait(self) -> int:
        return int(self._say("wait").split()[1])

    def close(self) -> None:
        self._server.communicate(timeout=30)  # closes its stdin: the server ends


@pytest.fixture
def passwd_processes() -> Iterator[PasswdProcesses]:
    processes = PasswdProcesses()
    yield processes
    processes.close()


@pytest.fixture
def closed_vault(vault: Vault, vault_path: Path) -> Path:
    vault.add("bot1", "binance", material())
    vault.close()
    return vault_path


def wrapped_key(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    try:
        value = conn.execute("SELECT wrapped_key FROM header").fetchone()[0]
    finally:
        conn.close()
    assert isinstance(value, bytes)
    return value


def passphrase_that_opens(path: Path, likely: str) -> str:
    """Which of the two passphrases unlocks the vault now; fails the test if neither does.

    ``likely`` is tried first only to save a key derivation; both are tried.
    The vault must also still verify and decrypt its credential.
    """
    with Vault.open(path) as vault:
        vault.wrong_passphrase_delay = 0.0
        for candidate in (likely, OTHER[likely]):
            try:
                vault.unlock(Secret(candidate))
            except errors.WrongPassphrase:
                continue
            assert all(result.ok for result in vault.verify())
            assert vault.credential("bot1").secret == Secret("FAKE-SECRET-canary-0001")
            return candidate
    pytest.fail("the vault opens with neither the old nor the new passphrase")


def outcome(path: Path, before: bytes, current: str) -> str:
    # A changed header suggests the new passphrase; passphrase_that_opens proves it.
    return passphrase_that_opens(path, OTHER[current] if wrapped_key(path) != before else current)


@pytest.mark.slow
def test_passwd_killed_at_any_moment_leaves_the_old_or_the_new_passphrase(
    closed_vault: Path, passwd_processes: PasswdProcesses
) -> None:
    # How long change_passphrase takes here, from "ready" to its exit (the
    # slowest of three: other processes may be competing for the CPU).
    current, work = PASSPHRASE, 0.0
    for _ in range(3):
        passwd_processes.start(closed_vault, current, OTHER[current])
        started = time.perf_counter()
        assert passwd_processes.wait() == 0
        work = max(work, time.perf_counter() - started)
        current = passphrase_that_opens(closed_vault, OTHER[current])

    def kill_after(delay: float) -> str:
        nonlocal current
        before = wrapped_key(closed_vault)
        passwd_processes.start(closed_vault, current, OTHER[current])
        time.sleep(delay)
        assert passwd_processes.kill() in (KILLED, 0)
        now = outcome(closed_vault, before, current)
        changed, current = now != current, now
        return "new" if changed else "old"

    # SIGKILL at 24 moments spread from "ready" to 2.5 times the work.
    delays = [work * 2.5 * step / 23 for step in range(24)]
    outcomes = [kill_after(delay) for delay in delays]
    # The kills must span the operation: some before it took effect, some
    # after. Under heavy load it can outlast the estimate: wait longer.
    for extra in range(1, 9):
        if "new" in outcomes:
            break
        delays.append(work * 2.5 * 1.5**extra)
        outcomes.append(kill_after(delays[-1]))
    assert {"old", "new"} <= set(outcomes), list(zip(delays, outcomes, strict=True))


@pytest.mark.slow
def test_passwd_dying_before_any_one_of_its_sql_statements_leaves_old_or_new(
    closed_vault: Path, passwd_processes: PasswdProcesses
) -> None:
    current, outcomes = PASSPHRASE, []
    for statement in range(1, 50):
        before = wrapped_key(closed_vault)
        passwd_processes.start(closed_vault, current, OTHER[current], exit_at=statement)
        code = passwd_processes.wait()
        now = outcome(closed_vault, before, current)
        if code == 0:  # it ran past its last statement
            assert now == OTHER[current]
            break
        assert code == 17
        outcomes.append("new" if now != current else "old")
        current = now
    else:
        pytest.fail("change_passphrase ran more than 49 statements")
    # At least BEGIN, read header, UPDATE, COMMIT, checkpoint; dying before
    # COMMIT keeps the old passphrase, dying after it (at the checkpoint) the new.
    assert len(outcomes) >= 5
    assert outcomes[0] == "old" and outcomes[-1] == "new", outcomes


@pytest.mark.slow
def test_two_processes_adding_at_once_lose_nothing(closed_vault: Path) -> None:
    children = []
    for prefix in ("left", "right"):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "add", str(closed_vault), PASSPHRASE, prefix, "50"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        children.append(child)
    for child in children:  # both are unlocked and waiting: start them together
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert (child.returncode, out) == (0, "done\n")

    with Vault.open(closed_vault) as vault:
        vault.unlock(Secret(PASSPHRASE))
        expected = sorted(f"{side}-{i:03d}" for side in ("left", "right") for i in range(50))
        assert [record.name for record in vault.list_credentials()] == ["bot1", *expected]
        for name in expected:
            assert vault.credential(name).secret == Secret(f"FAKE-SECRET-{name}")
        assert all(result.ok for result in vault.verify())
