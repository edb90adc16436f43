"""``keybroker tokens create-admin|list-admin|revoke-admin`` end to end, on real vault files."""

from __future__ import annotations

import json
import re

import pytest
from cli_harness import BINANCE_ENV, PASSPHRASE, Kb

from keybroker import errors
from keybroker.secret import Secret
from keybroker.vault import AdminToken, Vault

ADMIN = re.compile(r"kbadm_[A-Za-z0-9_-]{43}")
NO_PASSPHRASE: dict[str, str | None] = {"KEYBROKER_PASSPHRASE": None}


def check(kb: Kb, token: str) -> AdminToken:
    with Vault.open(kb.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        return opened.check_admin_token(token)


def test_create_admin_prints_it_once_and_it_is_no_bot_token(vault: Kb) -> None:
    run = vault("tokens", "create-admin", "alice", "--expires", "12h")
    token = run.stdout.strip()
    assert run.stdout == token + "\n" and ADMIN.fullmatch(token)
    assert token not in run.stderr and "shown this once" in run.stderr
    assert check(vault, token).name == "alice"
    with Vault.open(vault.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        with pytest.raises(errors.BadToken):
            opened.check_token(token)
    # Bot tokens and admin tokens are listed apart; neither list shows a token.
    listed = json.loads(vault("tokens", "list-admin", "--json").stdout)
    assert [(item["name"], item["state"]) for item in listed] == [("alice", "active")]
    assert listed[0]["expires_at"] is not None
    assert json.loads(vault("tokens", "list", "--json").stdout) == []
    table = vault("tokens", "list-admin").stdout
    assert "alice" in table and "active" in table and token not in table


def test_revoke_admin(vault: Kb) -> None:
    vault("keys", "add", "b1", "-e", "binance", "--from-env", env=BINANCE_ENV)
    token = vault("tokens", "create-admin", "alice").stdout.strip()
    run = vault("tokens", "revoke-admin", "nobody", env=NO_PASSPHRASE, expect=1)
    assert "no admin token was made for 'nobody'" in run.stderr
    assert "Revoked the admin token of alice" in vault("tokens", "revoke-admin", "alice").stdout
    with pytest.raises(errors.BadToken, match="revoked"):
        check(vault, token)
    assert "already revoked" in vault("tokens", "revoke-admin", "alice").stdout
    assert json.loads(vault("tokens", "list-admin", "--json").stdout)[0]["state"] == "revoked"


@pytest.mark.parametrize(
    ("args", "message"),
    [(("al ice",), "name must be"), (("alice", "--expires", "soon"), "--expires takes")],
)
def test_bad_create_admin_requests_fail_before_the_passphrase(
    vault: Kb, args: tuple[str, ...], message: str
) -> None:
    run = vault("tokens", "create-admin", *args, env=NO_PASSPHRASE, expect=1)
    assert message in run.stderr and run.stdout == ""
