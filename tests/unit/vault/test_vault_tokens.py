"""Bot tokens: issued once, stored hashed, checked, expired, revoked; any row edit is caught."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vault_testkit import PASSPHRASE, START_MS, material

from keybroker import errors
from keybroker.clock import FixedClock
from keybroker.secret import Secret
from keybroker.vault import BotToken, Vault, VerifyResult
from keybroker.vault.tokens import TOUCH_INTERVAL_MS

START = datetime.fromtimestamp(START_MS / 1000, tz=UTC)


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


def create(vault: Vault, bot: str = "grid", **changes: object) -> tuple[str, BotToken]:
    options: dict[str, object] = {
        "credentials": ["bot1"],
        "expires_at": None,
        "max_orders_per_minute": None,
    }
    options.update(changes)
    token, record = vault.create_token(bot, **options)  # type: ignore[arg-type]
    return token.reveal_text(), record


# -- issuing -----------------------------------------------------------------------------


def test_a_token_is_kb_and_256_random_bits(two: Vault) -> None:
    token, record = create(two)
    assert re.fullmatch(r"kb_[A-Za-z0-9_-]{43}", token)
    assert len(base64.urlsafe_b64decode(token[3:] + "=")) == 32
    other, _ = create(two, "other")
    assert other != token
    assert record == BotToken("grid", ("bot1",), START, None, None, None, None)


def test_the_created_token_checks_and_lists(two: Vault) -> None:
    expires = START + timedelta(days=30)
    token, record = create(
        two, credentials=["bot2", "bot1", "bot2"], expires_at=expires, max_orders_per_minute=30
    )
    assert record.credentials == ("bot2", "bot1")
    assert record.expires_at == expires and record.max_orders_per_minute == 30
    assert two.check_token(token) == record
    assert two.list_tokens() == [record]
    assert record.allows("bot1") and not record.allows("bot3")


def test_the_secret_returned_is_redacted(two: Vault) -> None:
    secret, record = two.create_token("grid", ["bot1"], expires_at=None, max_orders_per_minute=None)
    token = secret.reveal_text()
    for text in (repr(secret), str(secret), f"{secret}", repr(record), str(record)):
        assert token not in text and token[3:20] not in text


def test_only_the_hash_is_stored(two: Vault, vault_path: Path) -> None:
    token, _ = create(two)
    two.close()
    digest = hashlib.sha256(token.encode()).digest()
    conn = sqlite3.connect(vault_path)
    try:
        assert conn.execute("SELECT token_hash FROM tokens").fetchone() == (digest,)
    finally:
        conn.close()
    raw = token.encode()
    forms = [raw, raw[3:], base64.b64encode(raw), raw.hex().encode(), token.encode("utf-16-le")]
    for path in vault_path.parent.glob("vault.db*"):
        data = path.read_bytes()
        for form in forms:
            assert form not in data


@pytest.mark.parametrize(
    ("bot", "credentials", "expires", "limit", "message"),
    [
        ("has space", ["bot1"], None, None, "bot name"),
        ("", ["bot1"], None, None, "bot name"),
        ("grid", [], None, None, "at least one credential"),
        ("grid", "bot1", None, None, "at least one credential"),
        ("grid", ["bad name"], None, None, "credential name"),
        ("grid", ["bot1"], START, None, "not in the future"),
        ("grid", ["bot1"], START - timedelta(days=1), None, "not in the future"),
        ("grid", ["bot1"], datetime(2030, 1, 1), None, "time zone"),
        ("grid", ["bot1"], None, 0, "at least 1"),
        ("grid", ["bot1"], None, True, "at least 1"),
    ],
)
def test_bad_requests_are_refused(
    two: Vault, bot: str, credentials: object, expires: object, limit: object, message: str
) -> None:
    with pytest.raises(errors.InvalidInput, match=message):
        two.create_token(bot, credentials, expires_at=expires, max_orders_per_minute=limit)  # type: ignore[arg-type]
    assert two.list_tokens() == []


def test_every_credential_must_exist(two: Vault) -> None:
    with pytest.raises(errors.CredentialNotFound):
        create(two, credentials=["bot1", "ghost"])
    assert two.list_tokens() == []


def test_one_active_token_per_bot(two: Vault) -> None:
    create(two)
    with pytest.raises(errors.InvalidInput, match="tokens revoke grid"):
        create(two)
    two.revoke_token("grid")
    create(two)
    assert [t.revoked_at is None for t in two.list_tokens()] == [False, True]


def test_an_expired_token_can_be_replaced_without_revoking(two: Vault, clock: FixedClock) -> None:
    create(two, expires_at=START + timedelta(hours=1))
    clock.advance(3_600_000)
    create(two)


def test_issuing_and_checking_need_the_passphrase(two: Vault, reopen: Callable[[], Vault]) -> None:
    token, _ = create(two)
    locked = reopen()
    with pytest.raises(errors.VaultLocked):
        create(locked, "other")
    with pytest.raises(errors.VaultLocked):
        locked.check_token(token)
    with pytest.raises(errors.VaultLocked):
        locked.revoke_token("grid")
    assert [t.bot for t in locked.list_tokens()] == ["grid"]  # listing does not


# -- checking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "no bot token was given"),
        ("kb_" + "A" * 43, "unknown bot token"),
        ("kb_short", "unknown bot token"),
        ("Bearer kb_" + "A" * 43, "unknown bot token"),
        ("kb_" + "é" * 43, "unknown bot token"),
        ("kb_\udcff" + "A" * 42, "unknown bot token"),
    ],
)
def test_missing_or_unknown_tokens_are_bad(two: Vault, token: str, message: str) -> None:
    create(two)
    with pytest.raises(errors.BadToken) as caught:
        two.check_token(token)
    assert str(caught.value) == message
    assert caught.value.http_status == 401


def test_a_token_with_one_character_changed_is_unknown(two: Vault) -> None:
    token, _ = create(two)
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(errors.BadToken, match="unknown"):
        two.check_token(changed)


def test_expiry(two: Vault, clock: FixedClock) -> None:
    token, _ = create(two, expires_at=START + timedelta(minutes=5))
    clock.advance(5 * 60_000 - 1)
    assert two.check_token(token).bot == "grid"
    clock.advance(1)
    with pytest.raises(errors.BadToken) as caught:
        two.check_token(token)
    assert str(caught.value) == "the token of bot 'grid' has expired"
    assert token not in str(caught.value)
    assert two.list_tokens()[0].state(START + timedelta(minutes=5)) == "expired"


def test_revocation_applies_to_the_next_check_in_another_process(
    two: Vault, reopen: Callable[[], Vault]
) -> None:
    token, _ = create(two)
    gateway = reopen()
    gateway.unlock(Secret(PASSPHRASE))
    before = gateway.tokens_version()
    assert gateway.check_token(token).bot == "grid"
    two.revoke_token("grid")
    assert gateway.tokens_version() == before + 1
    with pytest.raises(errors.BadToken) as caught:
        gateway.check_token(token)
    assert str(caught.value) == "the token of bot 'grid' was revoked"
    assert gateway.list_tokens()[0].state(START) == "revoked"


def test_revoking_twice_changes_nothing_and_an_unknown_bot_is_an_error(two: Vault) -> None:
    create(two)
    two.revoke_token("grid")
    version, listed = two.tokens_version(), two.list_tokens()
    two.revoke_token("grid")
    assert (two.tokens_version(), two.list_tokens()) == (version, listed)
    with pytest.raises(errors.InvalidInput, match="no token was made for bot 'nobody'"):
        two.revoke_token("nobody")


def test_tokens_version_counts_creations_and_revocations_and_works_locked(
    two: Vault, reopen: Callable[[], Vault]
) -> None:
    locked = reopen()
    assert locked.tokens_version() == 0
    create(two)
    create(two, "other")
    two.revoke_token("grid")
    assert locked.tokens_version() == 3
    with pytest.raises(errors.InvalidInput):
        create(two, "other")
    assert locked.tokens_version() == 3  # a refused create changes nothing


def test_touch_records_last_use_rarely_and_without_the_passphrase(
    two: Vault, clock: FixedClock
) -> None:
    create(two)
    locked = Vault.open(two.path, clock=clock)
    try:
        locked.touch_token("grid")
        assert two.list_tokens()[0].last_used_at == START
        clock.advance(TOUCH_INTERVAL_MS - 1)
        locked.touch_token("grid")
        assert two.list_tokens()[0].last_used_at == START  # not yet again
        clock.advance(1)
        locked.touch_token("grid")
        assert two.list_tokens()[0].last_used_at == START + timedelta(milliseconds=60_000)
        locked.touch_token("nobody")  # best effort: nothing to touch is no error
    finally:
        locked.close()


# -- tampering ---------------------------------------------------------------------------

TOKEN_EDITS = {
    "bot": "evil",
    "credentials": '["bot1", "bot2"]',
    "created_at": "2020-01-01T00:00:00.000000+00:00",
    "expires_at": "2099-01-01T00:00:00.000000+00:00",
    "max_orders_per_minute": 1000,
    "id": 12345,
}


@pytest.mark.parametrize("column", list(TOKEN_EDITS))
def test_an_edited_token_row_fails(two: Vault, vault_path: Path, column: str) -> None:
    token, _ = create(two, expires_at=START + timedelta(days=1), max_orders_per_minute=5)
    edit(vault_path, f"UPDATE tokens SET {column} = ?", TOKEN_EDITS[column])  # noqa: S608
    with pytest.raises(errors.RecordTampered) as caught:
        two.check_token(token)
    assert token not in str(caught.value)
    assert not all(result.ok for result in two.verify())


def test_an_undone_revocation_fails(two: Vault, vault_path: Path) -> None:
    token, _ = create(two)
    two.revoke_token("grid")
    edit(vault_path, "UPDATE tokens SET revoked_at = NULL")
    with pytest.raises(errors.RecordTampered):
        two.check_token(token)


def test_a_hash_swapped_in_fails(two: Vault, vault_path: Path) -> None:
    create(two)
    mine = "kb_" + "M" * 43  # a token the attacker knows, never issued
    digest = hashlib.sha256(mine.encode()).digest()
    edit(vault_path, "UPDATE tokens SET token_hash = ?", digest)
    with pytest.raises(errors.RecordTampered):
        two.check_token(mine)


def test_a_row_copied_from_another_vault_fails(
    two: Vault, vault_path: Path, tmp_path: Path
) -> None:
    from vault_testkit import FAST_KDF

    other_path = tmp_path / "other" / "vault.db"
    other = Vault.create(other_path, Secret(PASSPHRASE), kdf=FAST_KDF)
    other.add("bot1", "binance", material(1))
    token, _ = create(other)
    other.close()
    conn = sqlite3.connect(other_path)
    try:
        row = conn.execute("SELECT * FROM tokens").fetchone()
    finally:
        conn.close()
    edit(vault_path, f"INSERT INTO tokens VALUES ({', '.join('?' * len(row))})", *row)  # noqa: S608
    with pytest.raises(errors.RecordTampered):
        two.check_token(token)


def test_last_used_at_is_not_authenticated_on_purpose(two: Vault, vault_path: Path) -> None:
    token, _ = create(two)
    edit(vault_path, "UPDATE tokens SET last_used_at = '2026-01-01T00:00:00.000000+00:00'")
    assert two.check_token(token).last_used_at == START


def test_revoking_leaves_a_tampered_row_alone(two: Vault, vault_path: Path) -> None:
    token, _ = create(two)
    edit(vault_path, "UPDATE tokens SET credentials = '[\"bot2\"]'")
    two.revoke_token("grid")
    assert VerifyResult("token:grid", False) in two.verify()
    with pytest.raises(errors.RecordTampered):
        two.check_token(token)


def test_verify_lists_tokens_last(two: Vault) -> None:
    create(two, "b")
    create(two, "a")
    two.revoke_token("a")
    names = [result.name for result in two.verify()]
    assert names == ["(header)", "bot1", "bot2", "token:a", "token:b"]
    assert all(result.ok for result in two.verify())
