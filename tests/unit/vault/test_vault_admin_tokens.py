"""Admin tokens: a kind apart from bot tokens; issued once, stored hashed, expired, revoked."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vault_testkit import START_MS, material

from keybroker import errors
from keybroker.clock import FixedClock
from keybroker.vault import Vault, VerifyResult

START = datetime.fromtimestamp(START_MS / 1000, tz=UTC)


def edit(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


@pytest.fixture
def one(vault: Vault) -> Vault:
    vault.add("bot1", "binance", material(1))
    return vault


def test_an_admin_token_is_kbadm_and_256_random_bits(one: Vault) -> None:
    secret, record = one.create_admin_token("alice", expires_at=None)
    token = secret.reveal_text()
    assert re.fullmatch(r"kbadm_[A-Za-z0-9_-]{43}", token)
    assert len(base64.urlsafe_b64decode(token[6:] + "=")) == 32
    assert record.name == "alice" and record.created_at == START
    assert one.check_admin_token(token).name == "alice"
    # Only the hash is stored: the file holds no copy of the token text.
    assert token.encode() not in one.path.read_bytes()
    conn = sqlite3.connect(one.path)
    try:
        stored = conn.execute("SELECT token_hash FROM admin_tokens").fetchone()[0]
    finally:
        conn.close()
    assert stored == hashlib.sha256(token.encode()).digest()


def test_a_bot_token_cannot_open_the_dashboard_and_an_admin_token_cannot_sign(
    one: Vault,
) -> None:
    bot, _ = one.create_token("grid", ["bot1"], expires_at=None, max_orders_per_minute=None)
    admin, _ = one.create_admin_token("alice", expires_at=None)
    with pytest.raises(errors.BadToken, match="a bot token cannot open the dashboard"):
        one.check_admin_token(bot.reveal_text())
    with pytest.raises(errors.BadToken, match="unknown bot token"):
        one.check_token(admin.reveal_text())
    # The same 32 bytes under the other prefix are no token of either kind.
    forged = "kb_" + admin.reveal_text()[len("kbadm_") :]
    with pytest.raises(errors.BadToken):
        one.check_token(forged)


def test_expiry_and_revocation_apply_to_the_next_check(one: Vault, clock: FixedClock) -> None:
    secret, _ = one.create_admin_token("alice", expires_at=START + timedelta(minutes=5))
    digest = hashlib.sha256(secret.reveal_text().encode()).digest()
    assert one.check_admin_digest(digest).name == "alice"
    clock.advance(5 * 60_000)
    with pytest.raises(errors.BadToken, match="expired"):
        one.check_admin_digest(digest)
    again, _ = one.create_admin_token("alice", expires_at=None)  # an expired one is no obstacle
    one.revoke_admin_token("alice")
    with pytest.raises(errors.BadToken, match="revoked"):
        one.check_admin_token(again.reveal_text())
    # Revoking ends every row of the name, the expired one too (history stays listed).
    assert [token.revoked_at is not None for token in one.list_admin_tokens()] == [True, True]


def test_one_active_admin_token_per_name(one: Vault) -> None:
    one.create_admin_token("alice", expires_at=None)
    with pytest.raises(errors.InvalidInput, match="revoke-admin alice"):
        one.create_admin_token("alice", expires_at=None)
    with pytest.raises(errors.InvalidInput, match="no admin token was made"):
        one.revoke_admin_token("bob")


def test_bad_names_and_expiries_are_refused(one: Vault) -> None:
    with pytest.raises(errors.InvalidInput):
        one.create_admin_token("al ice", expires_at=None)
    with pytest.raises(errors.InvalidInput, match="not in the future"):
        one.create_admin_token("alice", expires_at=START)
    with pytest.raises(errors.InvalidInput, match="time zone"):
        one.create_admin_token("alice", expires_at=datetime(2999, 1, 1))


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("UPDATE admin_tokens SET revoked_at = NULL", "un-revoked"),
        ("UPDATE admin_tokens SET expires_at = NULL", "expiry removed"),
        ("UPDATE admin_tokens SET name = 'mallory'", "renamed"),
    ],
)
def test_a_row_edited_in_sqlite_fails_authentication(
    one: Vault, clock: FixedClock, sql: str, what: str
) -> None:
    secret, _ = one.create_admin_token("alice", expires_at=START + timedelta(minutes=5))
    one.revoke_admin_token("alice")
    edit(one.path, sql)
    with pytest.raises((errors.RecordTampered, errors.BadToken)) as caught:
        one.check_admin_token(secret.reveal_text())
    if what == "un-revoked":
        assert isinstance(caught.value, errors.RecordTampered)
    assert VerifyResult("admin-token:alice", False) in one.verify() or what == "renamed"
    assert any(not result.ok for result in one.verify())


def test_checking_needs_the_vault_unlocked_and_listing_does_not(one: Vault) -> None:
    secret, _ = one.create_admin_token("alice", expires_at=None)
    one.lock()
    with pytest.raises(errors.VaultLocked):
        one.check_admin_token(secret.reveal_text())
    assert [token.name for token in one.list_admin_tokens()] == ["alice"]


def test_touch_records_last_use_at_most_once_a_minute(one: Vault, clock: FixedClock) -> None:
    one.create_admin_token("alice", expires_at=None)
    one.touch_admin_token("alice")
    assert one.list_admin_tokens()[0].last_used_at == START
    clock.advance(30_000)
    one.touch_admin_token("alice")
    assert one.list_admin_tokens()[0].last_used_at == START
    clock.advance(30_000)
    one.touch_admin_token("alice")
    assert one.list_admin_tokens()[0].last_used_at == START + timedelta(minutes=1)
    assert all(result.ok for result in one.verify())  # last_used_at is outside the MAC
