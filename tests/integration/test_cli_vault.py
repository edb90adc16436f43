"""``keybroker init`` and ``keybroker vault …`` end to end, on real vault files."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from cli_harness import BINANCE_ENV, OKX_ENV, PASSPHRASE, SMALL_KDF, Kb

NEW_PASSPHRASE = "a new test passphrase, not real"


def test_init_creates_a_private_vault_and_says_which_kdf(kb: Kb) -> None:
    run = kb("init", *SMALL_KDF)
    assert "Argon2id, 64 MiB, 1 pass, 1 lane" in run.stdout
    assert "as given" in run.stdout
    assert kb.vault_path.stat().st_mode & 0o777 == 0o600
    assert kb.home.stat().st_mode & 0o777 == 0o700


def test_init_without_kdf_options_calibrates(kb: Kb) -> None:
    run = kb("init")
    assert "calibrated" in run.stdout
    info = json.loads(kb("vault", "info", "--json").stdout)
    assert info["kdf"]["memory_kib"] >= 64 * 1024


def test_init_refuses_an_existing_vault_and_leaves_it_alone(vault: Kb) -> None:
    before = vault.vault_path.read_bytes()
    run = vault("init", *SMALL_KDF, expect=2)
    assert (
        run.stderr.strip() == f"keybroker: a vault already exists at {vault.vault_path}; "
        "nothing was changed"
    )
    assert vault.vault_path.read_bytes() == before


def test_init_prompts_twice_for_the_passphrase(kb: Kb) -> None:
    run = kb(
        "init",
        *SMALL_KDF,
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
        env={"KEYBROKER_PASSPHRASE": None},
    )
    assert "Repeat for confirmation" in run.stderr
    kb("vault", "verify")  # the passphrase from the environment opens it


def test_init_asks_again_for_a_short_passphrase_then_gives_up(kb: Kb) -> None:
    short = "short\nshort\n"
    run = kb("init", *SMALL_KDF, input=short * 3, env={"KEYBROKER_PASSPHRASE": None}, expect=1)
    assert run.stderr.count("Too short") == 3
    assert run.stderr.strip().splitlines()[-1] == (
        "keybroker: the passphrase must have at least 12 characters"
    )
    assert not kb.vault_path.exists()


def test_a_short_passphrase_from_the_environment_is_a_usage_error(kb: Kb) -> None:
    run = kb("init", *SMALL_KDF, env={"KEYBROKER_PASSPHRASE": "too short"}, expect=1)
    assert run.stderr == "keybroker: the passphrase must have at least 12 characters\n"


def test_passphrase_file_readable_by_others_is_refused_with_the_fix(
    kb: Kb, passphrase_file: Path
) -> None:
    passphrase_file.chmod(0o644)
    run = kb("init", *SMALL_KDF, "--passphrase-file", str(passphrase_file), expect=2)
    assert f"chmod 600 {passphrase_file}" in run.stderr
    assert len(run.stderr.splitlines()) == 1
    passphrase_file.chmod(0o600)
    kb("init", *SMALL_KDF, "--passphrase-file", str(passphrase_file))


def test_passphrase_file_wins_over_the_environment(vault: Kb, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    wrong.chmod(0o600)
    run = vault("vault", "verify", "--passphrase-file", str(wrong), expect=2)
    assert run.stderr == "keybroker: wrong passphrase\n"


def test_wrong_passphrase_exits_2_after_the_delay_without_traceback(vault: Kb) -> None:
    started = time.monotonic()
    run = vault.subprocess(
        "vault", "verify", env={"KEYBROKER_PASSPHRASE": "wrong passphrase here"}, expect=2
    )
    assert time.monotonic() - started >= 1.0  # the vault's pause against guessing
    assert run.stderr == "keybroker: wrong passphrase\n"
    assert "Traceback" not in run.stderr


def test_debug_shows_the_traceback(vault: Kb) -> None:
    run = vault(
        "--debug", "vault", "verify", env={"KEYBROKER_PASSPHRASE": "wrong one here"}, expect=2
    )
    assert "Traceback" in run.stderr
    assert run.stderr.rstrip().endswith("keybroker: wrong passphrase")


def test_no_vault_says_how_to_make_one(kb: Kb) -> None:
    run = kb("keys", "list", expect=2)
    assert run.stderr == f"keybroker: no vault at {kb.vault_path}; run `keybroker init`\n"


def test_home_comes_from_keybroker_home_when_not_given(kb: Kb, tmp_path: Path) -> None:
    other = tmp_path / "other-home"
    result = kb.subprocess("--version")
    assert result.stdout.startswith("keybroker ")
    from typer.testing import CliRunner

    from keybroker.cli import app

    done = CliRunner().invoke(
        app,
        ["init", *SMALL_KDF],
        env={"KEYBROKER_HOME": str(other), "KEYBROKER_PASSPHRASE": PASSPHRASE},
    )
    assert done.exit_code == 0, done.stderr
    assert (other / "vault.db").exists()


def test_info_needs_no_passphrase_and_shows_modes_and_kdf(vault: Kb) -> None:
    vault("keys", "add", "b", "--exchange", "binance", "--from-env", env=BINANCE_ENV)
    run = vault("vault", "info", "--json", env={"KEYBROKER_PASSPHRASE": None})
    info = json.loads(run.stdout)
    assert info["kdf"] == {
        "algorithm": "argon2id",
        "memory_kib": 65536,
        "iterations": 1,
        "lanes": 1,
    }
    assert (info["record_count"], info["file_mode"], info["dir_mode"]) == (1, "0600", "0700")
    assert info["path"] == str(vault.vault_path)
    assert info["warnings"] == []
    table = vault("vault", "info", env={"KEYBROKER_PASSPHRASE": None}).stdout
    assert "Argon2id, 64 MiB, 1 pass, 1 lane" in table


def test_readable_vault_warns_one_line_each_on_stderr(vault: Kb) -> None:
    vault.vault_path.chmod(0o640)
    vault.home.chmod(0o750)
    run = vault("vault", "info", "--json")
    warnings = run.stderr.splitlines()
    assert len(warnings) == 2
    assert all(line.startswith("keybroker: warning: vault ") for line in warnings)
    assert "chmod 600" in run.stderr and "chmod 700" in run.stderr
    assert len(json.loads(run.stdout)["warnings"]) == 2


def test_vault_writable_by_others_is_refused(vault: Kb) -> None:
    vault.vault_path.chmod(0o622)
    run = vault("keys", "list", expect=2)
    assert "writable by group or others" in run.stderr
    assert len(run.stderr.splitlines()) == 1


def test_verify_catches_an_edited_record_and_exits_2(vault: Kb) -> None:
    vault("keys", "add", "b", "--exchange", "binance", "--from-env", env=BINANCE_ENV)
    vault("keys", "add", "o", "--exchange", "okx", "--from-env", env=OKX_ENV)
    ok = vault("vault", "verify", "--json")
    assert json.loads(ok.stdout) == [
        {"name": "(header)", "ok": True},
        {"name": "b", "ok": True},
        {"name": "o", "ok": True},
    ]
    with closing(sqlite3.connect(vault.vault_path)) as conn, conn:
        conn.execute("UPDATE credentials SET environment = 'production' WHERE name = 'o'")
    run = vault("vault", "verify", expect=2)
    assert "TAMPERED" in run.stdout
    assert run.stderr == (
        "keybroker: 1 of 3 vault records failed authentication (changed outside keybroker?): o\n"
    )


def test_passwd_changes_the_passphrase(vault: Kb, tmp_path: Path) -> None:
    vault("keys", "add", "b", "--exchange", "binance", "--from-env", env=BINANCE_ENV)
    new_file = tmp_path / "new"
    new_file.write_text(NEW_PASSPHRASE)
    new_file.chmod(0o600)
    vault("vault", "passwd", "--new-passphrase-file", str(new_file))
    run = vault("vault", "verify", expect=2)
    assert run.stderr == "keybroker: wrong passphrase\n"
    vault("vault", "verify", env={"KEYBROKER_PASSPHRASE": NEW_PASSPHRASE})


def test_passwd_prompts_for_the_new_passphrase_twice(vault: Kb) -> None:
    vault("vault", "passwd", input=f"{NEW_PASSPHRASE}\n{NEW_PASSPHRASE}\n")
    vault("vault", "verify", env={"KEYBROKER_PASSPHRASE": NEW_PASSPHRASE})


def test_passwd_without_a_terminal_names_new_passphrase_file(vault: Kb) -> None:
    # $KEYBROKER_PASSPHRASE holds the current passphrase here, never the new one:
    # the hint must not send a script there.
    run = vault.subprocess("vault", "passwd", input="", expect=1)
    assert run.stderr.splitlines()[-1] == (
        "keybroker: nothing was entered; without a terminal, give the new passphrase with "
        "--new-passphrase-file"
    )
    vault("vault", "verify")  # unchanged


def test_upgrade_kdf_raises_the_cost_and_refuses_to_lower_it(vault: Kb) -> None:
    run = vault(
        "vault",
        "upgrade-kdf",
        "--kdf-memory-mib",
        "64",
        "--kdf-iterations",
        "2",
        "--kdf-lanes",
        "1",
    )
    assert "now: Argon2id, 64 MiB, 2 passes, 1 lane" in run.stdout
    info = json.loads(vault("vault", "info", "--json").stdout)
    assert info["kdf"]["iterations"] == 2
    vault("vault", "verify")
    lower = vault("vault", "upgrade-kdf", "--kdf-iterations", "1", "--kdf-lanes", "1", expect=1)
    assert "refusing weaker KDF parameters" in lower.stderr


def test_usage_errors_exit_1_with_one_line(vault: Kb) -> None:
    for args in (
        ("keys", "add", "x"),  # --exchange missing
        ("keys", "list", "--no-such-option"),
        ("vault", "no-such-command"),
        ("keys", "copy", "x", "--clear-after", "0"),
    ):
        run = vault(*args, expect=1)
        assert run.stdout == ""
        assert len(run.stderr.splitlines()) == 1, run
        assert run.stderr.startswith("keybroker: ")
        assert "--help" in run.stderr


@pytest.mark.parametrize(
    "command",
    [
        ("init",),
        ("demo",),
        ("keys", "add"),
        ("keys", "list"),
        ("keys", "show"),
        ("keys", "rotate"),
        ("keys", "remove"),
        ("keys", "copy"),
        ("keys", "import-env"),
        ("vault", "info"),
        ("vault", "verify"),
        ("vault", "passwd"),
        ("vault", "upgrade-kdf"),
    ],
    ids=" ".join,
)
def test_every_command_has_help_with_an_example(kb: Kb, command: tuple[str, ...]) -> None:
    run = kb(*command, "--help")
    assert "Example:" in run.stdout
    assert "Usage: keybroker" in run.stdout


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("halt",), "$KEYBROKER_REDIS_URL"),
        (("resume",), "$KEYBROKER_REDIS_URL"),
        (("serve",), "$KEYBROKER_REDIS_URL"),
        (("serve",), "gateway.sock"),
        (("keys", "add"), "openbao.json"),
        (("openbao", "setup"), "openbao.json"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else value,
)
def test_help_shows_the_defaults_written_in_brackets(
    kb: Kb, command: tuple[str, ...], shown: str
) -> None:
    # Rich reads "[default: ...]" as a markup tag and drops it unless escaped.
    assert shown in kb(*command, "--help").stdout


def test_groups_without_a_command_show_their_help(kb: Kb) -> None:
    assert "import-env" in kb("keys").stdout
    assert "upgrade-kdf" in kb("vault").stdout
    assert "demo" in kb().stdout


def test_version(kb: Kb) -> None:
    from keybroker import __version__

    assert kb("--version").stdout == f"keybroker {__version__}\n"
