"""``keybroker tokens create|list|revoke`` end to end, on real vault files."""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from cli_harness import BINANCE_ENV, OKX_ENV, PASSPHRASE, Kb

from keybroker import errors
from keybroker.cli.token_commands import parse_duration
from keybroker.secret import Secret
from keybroker.vault import BotToken, Vault

TOKEN = re.compile(r"kb_[A-Za-z0-9_-]{43}")
NO_PASSPHRASE: dict[str, str | None] = {"KEYBROKER_PASSPHRASE": None}


@pytest.fixture
def kb(vault: Kb) -> Kb:
    """An empty vault holding b1 (binance) and o1 (okx)."""
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    vault("keys", "add", "o1", "-e", "okx", "--from-env", env=OKX_ENV)
    return vault


def check(kb: Kb, token: str) -> BotToken:
    with Vault.open(kb.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        return opened.check_token(token)


def created(kb: Kb, *args: str) -> str:
    run = kb("tokens", "create", *args)
    assert TOKEN.fullmatch(run.stdout.strip()), run
    return run.stdout.strip()


def test_create_prints_the_token_once_on_stdout_alone(kb: Kb) -> None:
    run = kb(
        *("tokens", "create", "grid", "--credential", "b1", "-c", "o1"),
        *("--expires", "30d", "--max-orders-per-minute", "20"),
    )
    token = run.stdout.strip()
    assert run.stdout == token + "\n" and TOKEN.fullmatch(token)
    assert token not in run.stderr
    assert "shown this once and cannot be shown again" in run.stderr
    assert "credentials b1, o1" in run.stderr and "at most 20 orders per minute" in run.stderr
    record = check(kb, token)
    assert (record.bot, record.credentials, record.max_orders_per_minute) == (
        "grid",
        ("b1", "o1"),
        20,
    )
    assert record.expires_at is not None
    assert abs(record.expires_at - datetime.now(UTC) - timedelta(days=30)) < timedelta(minutes=1)


def test_create_json(kb: Kb) -> None:
    document = json.loads(kb("tokens", "create", "grid", "-c", "b1", "--json").stdout)
    assert TOKEN.fullmatch(document.pop("token"))
    assert document == {
        "bot": "grid",
        "state": "active",
        "credentials": ["b1"],
        "created_at": document["created_at"],
        "expires_at": None,
        "max_orders_per_minute": None,
        "revoked_at": None,
        "last_used_at": None,
    }


def test_list_shows_tokens_without_the_passphrase_and_never_a_token(kb: Kb) -> None:
    first = created(kb, "grid", "-c", "b1")
    second = created(kb, "arb", "-c", "b1", "-c", "o1", "--expires", "2w")
    table = kb("tokens", "list", env=NO_PASSPHRASE).stdout
    assert "grid" in table and "arb" in table and "active" in table and "b1,o1" in table
    listed = json.loads(kb("tokens", "list", "--json", env=NO_PASSPHRASE).stdout)
    assert [(entry["bot"], entry["state"]) for entry in listed] == [
        ("arb", "active"),
        ("grid", "active"),
    ]
    for text in (table, json.dumps(listed)):
        assert first not in text and second not in text


def test_no_tokens_yet(kb: Kb) -> None:
    assert "No bot tokens yet" in kb("tokens", "list").stdout
    assert json.loads(kb("tokens", "list", "--json").stdout) == []


def test_revoke(kb: Kb) -> None:
    token = created(kb, "grid", "-c", "b1")
    assert "Revoked the token of grid" in kb("tokens", "revoke", "grid").stdout
    with pytest.raises(errors.BadToken, match="revoked"):
        check(kb, token)
    assert json.loads(kb("tokens", "list", "--json").stdout)[0]["state"] == "revoked"
    assert "already revoked" in kb("tokens", "revoke", "grid").stdout
    # A new token for the bot, and the old one stays dead.
    fresh = created(kb, "grid", "-c", "b1")
    assert check(kb, fresh).bot == "grid"
    with pytest.raises(errors.BadToken):
        check(kb, token)


def test_revoke_asks_for_the_passphrase_and_an_unknown_bot_before_it(kb: Kb) -> None:
    created(kb, "grid", "-c", "b1")
    run = kb("tokens", "revoke", "nobody", env=NO_PASSPHRASE, expect=1)
    assert run.stderr == (
        "keybroker: no token was made for bot 'nobody'; see: keybroker tokens list\n"
    )
    run = kb("tokens", "revoke", "grid", env=NO_PASSPHRASE, expect=1)
    assert "nothing was entered" in run.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("grid", "-c", "ghost"), 2, "no credential named 'ghost'"),
        (("bad bot", "-c", "b1"), 1, "bot name must be"),
        (("grid", "-c", "b 1"), 1, "credential name must be"),
        (("grid", "-c", "b1", "--expires", "soon"), 1, "--expires takes a number and a unit"),
        (("grid", "-c", "b1", "--expires", "0d"), 1, "more than 0"),
        (("grid", "-c", "b1", "--max-orders-per-minute", "0"), 1, "greater than or equal to 1"),
        (("grid",), 1, "--credential"),
    ],
)
def test_bad_create_requests_fail_before_the_passphrase(
    kb: Kb, args: tuple[str, ...], code: int, message: str
) -> None:
    run = kb("tokens", "create", *args, env=NO_PASSPHRASE, expect=code)
    assert message in run.stderr and run.stdout == ""


def test_a_second_active_token_for_a_bot_is_refused(kb: Kb) -> None:
    created(kb, "grid", "-c", "b1")
    run = kb("tokens", "create", "grid", "-c", "o1", expect=1)
    assert "keybroker tokens revoke grid" in run.stderr and run.stdout == ""


def test_wrong_passphrase(kb: Kb) -> None:
    run = kb("tokens", "create", "grid", "-c", "b1", env={"KEYBROKER_PASSPHRASE": "wrong" * 4},
             expect=2)  # fmt: skip
    assert run.stderr == "keybroker: wrong passphrase\n"


def test_an_edited_token_row_fails_verify_and_the_check(kb: Kb) -> None:
    token = created(kb, "grid", "-c", "b1")
    with closing(sqlite3.connect(kb.vault_path)) as conn, conn:
        conn.execute("""UPDATE tokens SET credentials = '["b1", "o1"]'""")
    run = kb("vault", "verify", "--json", expect=2)
    assert {"name": "token:grid", "ok": False} in json.loads(run.stdout)
    with pytest.raises(errors.RecordTampered):
        check(kb, token)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 2592000), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_the_help_lists_the_commands(kb: Kb) -> None:
    text = kb("tokens").stdout
    assert all(command in text for command in ("create", "list", "revoke"))


# -- the canary: a token is printed once by create, and nowhere else ever ---------------


def _forms(token: str) -> list[bytes]:
    raw = token.encode()
    return [raw, raw[3:], base64.b64encode(raw), raw.hex().encode(), token.encode("utf-16-le")]


def test_a_created_token_is_never_in_the_vault_file_logs_or_listings(
    kb: Kb, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    runs_before = len(kb.runs)
    first = kb("--debug", "tokens", "create", "grid", "-c", "b1", "--expires", "1d")
    second = kb.subprocess("--debug", "tokens", "create", "arb", "-c", "o1", "--json")
    tokens = [first.stdout.strip(), json.loads(second.stdout)["token"]]
    creating = kb.runs[runs_before:]
    # Everything else that could show a token: listings, revocation, verify, errors.
    kb("--debug", "tokens", "list")
    kb("--debug", "tokens", "list", "--json")
    kb.subprocess("--debug", "tokens", "list")
    kb("--debug", "tokens", "revoke", "grid")
    kb.subprocess("--debug", "tokens", "revoke", "arb")
    kb("tokens", "list")
    kb("vault", "verify")
    kb("--debug", "tokens", "create", "arb", "-c", "ghost", expect=2)
    kb.subprocess("--debug", "tokens", "create", "x y", "-c", "b1", expect=1)
    for token in tokens:
        assert TOKEN.fullmatch(token)
        with pytest.raises(errors.BadToken):
            check(kb, token)
    for token in tokens:
        # Printed once: on stdout, by its own create, and in no other run or stream.
        showing = [run for run in kb.runs if token in run.text]
        assert len(showing) == 1 and showing[0] in creating, [run.args for run in showing]
        assert token not in showing[0].stderr
    for record in caplog.records:
        for token in tokens:
            assert token not in record.getMessage() and token not in repr(record.args)
    stored = sorted(kb.home.glob("vault.db*"))
    assert stored
    for path in stored:
        data = path.read_bytes()
        for token in tokens:
            for form in _forms(token):
                assert form not in data, f"a token is in {path.name}"
