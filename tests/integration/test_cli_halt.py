"""``keybroker halt`` and ``keybroker resume`` end to end, across real processes."""

from __future__ import annotations

import json

import pytest
from cli_harness import BINANCE_ENV, OKX_ENV, PASSPHRASE, Kb

from keybroker.secret import Secret
from keybroker.vault import Vault

NO_PASSPHRASE: dict[str, str | None] = {"KEYBROKER_PASSPHRASE": None}


@pytest.fixture
def kb(vault: Kb) -> Kb:
    """An empty vault holding b1 (binance) and o1 (okx)."""
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    vault("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX_ENV)
    return vault


def halted(kb: Kb) -> set[str]:
    with Vault.open(kb.vault_path) as opened:
        return set(opened.halted())


def test_halt_needs_no_passphrase(kb: Kb) -> None:
    run = kb("halt", "b1", "--reason", "runaway grid bot", env=NO_PASSPHRASE)
    assert run.stdout == (
        "Halted b1: gateways using this vault refuse new orders within a second; cancels and "
        "reads still pass.\nLift it with: keybroker resume b1\n"
    )
    assert halted(kb) == {"b1"}
    with Vault.open(kb.vault_path) as opened:
        assert opened.list_halts()[0].reason == "runaway grid bot"


def test_halt_all_and_json(kb: Kb) -> None:
    assert "Halted every credential" in kb("halt", "--all", env=NO_PASSPHRASE).stdout
    listed = json.loads(kb("halt", "o1", "--json", env=NO_PASSPHRASE).stdout)
    assert [(entry["name"], entry["reason"]) for entry in listed] == [("*", ""), ("o1", "")]
    assert "already halted" in kb("halt", "--all").stdout


@pytest.mark.parametrize("args", [(), ("b1", "--all")])
def test_a_name_or_all_exactly(kb: Kb, args: tuple[str, ...]) -> None:
    for command in ("halt", "resume"):
        run = kb(command, *args, expect=1)
        assert run.stderr == (
            f"keybroker: give a credential NAME or --all (see: keybroker {command} --help)\n"
        )
    assert halted(kb) == set()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("ghost",), 2, "no credential named 'ghost'"),
        (("*",), 1, "credential name must be"),
        (("b1", "--reason", "two\nlines"), 1, "one line of printable text"),
    ],
)
def test_bad_halts(kb: Kb, args: tuple[str, ...], code: int, message: str) -> None:
    run = kb("halt", *args, expect=code)
    assert message in run.stderr
    assert halted(kb) == set()


def test_resume_asks_for_the_passphrase(kb: Kb) -> None:
    kb("halt", "b1")
    run = kb("resume", "b1", env=NO_PASSPHRASE, expect=1)
    assert "nothing was entered" in run.stderr
    run = kb("resume", "b1", env={"KEYBROKER_PASSPHRASE": "not the passphrase"}, expect=2)
    assert run.stderr == "keybroker: wrong passphrase\n"
    assert halted(kb) == {"b1"}
    assert kb("resume", "b1").stdout == "Resumed b1.\n"
    assert halted(kb) == set()
    assert kb("resume", "b1").stdout == "b1 was not halted.\n"


def test_resume_one_under_halt_all_warns_and_resume_all_lifts_everything(kb: Kb) -> None:
    kb("halt", "b1")
    kb("halt", "--all")
    run = kb("resume", "b1")
    assert "b1 is still halted by `keybroker halt --all`" in run.stderr
    assert halted(kb) == {"*"}
    kb("halt", "o1")
    assert json.loads(kb("resume", "--all", "--json").stdout) == []
    assert halted(kb) == set()
    assert kb("resume", "--all").stdout == "Nothing was halted.\n"


def test_halt_and_resume_across_processes_and_restarts(kb: Kb) -> None:
    # A long-running reader, as a gateway is: opened and unlocked before the halt.
    gateway = Vault.open(kb.vault_path)
    try:
        gateway.unlock(Secret(PASSPHRASE))
        assert gateway.halted() == {}
        kb.subprocess("halt", "b1", "--reason", "from another terminal", env=NO_PASSPHRASE)
        assert set(gateway.halted()) == {"b1"}  # seen on the next poll, no reopen
        kb.subprocess("halt", "--all", env=NO_PASSPHRASE)
        assert set(gateway.halted()) == {"*", "b1"}
    finally:
        gateway.close()
    # A restart: the halts are still there.
    assert halted(kb) == {"*", "b1"}
    restarted = Vault.open(kb.vault_path)
    try:
        run = kb.subprocess("resume", "b1")
        assert "still halted by `keybroker halt --all`" in run.stderr
        assert set(restarted.halted()) == {"*"}
        kb.subprocess("resume", "--all")
        assert restarted.halted() == {}
    finally:
        restarted.close()


def test_a_redis_that_does_not_answer_says_the_vault_halt_holds(kb: Kb) -> None:
    # An emergency halt with --redis: the error must not read as "nothing was halted".
    kb("keys", "add", "bn", "-e", "binance", "--from-env", env=BINANCE_ENV)
    down = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    run = kb("halt", "bn", "--redis", down, expect=2, env={"KEYBROKER_PASSPHRASE": None})
    assert "bn is halted in this vault" in run.stderr and "not in Redis" in run.stderr
    assert [h["name"] for h in json.loads(kb("halt", "bn", "--json").stdout)] == ["bn"]
    run = kb("resume", "bn", "--redis", down, expect=2)
    assert "lifted in this vault, but not in Redis" in run.stderr
    assert "keybroker resume bn --redis URL" in run.stderr
