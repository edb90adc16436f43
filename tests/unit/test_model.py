"""Credential: validated, frozen, and silent about its secret."""

from __future__ import annotations

import dataclasses

import pytest

from keybroker import Credential, Secret
from keybroker.errors import InvalidInput

CANARY = "FAKE-canary-secret-0123456789"
PASS = "FAKE-canary-passphrase-42"


def make(**changes: object) -> Credential:
    fields: dict[str, object] = {
        "name": "bot1",
        "exchange": "okx",
        "api_key": "FAKEKEY0123456789",
        "secret": Secret(CANARY),
        "passphrase": Secret(PASS),
    }
    fields.update(changes)
    return Credential(**fields)  # type: ignore[arg-type]


def test_defaults_are_testnet_and_hmac() -> None:
    cred = make()
    assert cred.environment == "testnet"
    assert cred.key_type == "hmac"


def test_repr_shows_no_secret_and_masks_the_key() -> None:
    text = repr(make()) + str(make())
    assert CANARY not in text
    assert PASS not in text
    assert "FAKEKEY0123456789" not in text
    assert "FAKE…6789" in text


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        make().name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("exchange", "ftx", "unknown exchange 'ftx'"),
        ("key_type", "dsa", "unknown key type"),
        ("environment", "mainnet", "unknown environment"),
    ],
)
def test_rejects_unknown_choices(field: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        make(**{field: value})


def test_secret_must_be_a_secret() -> None:
    with pytest.raises(TypeError):
        make(secret=CANARY)


def test_equality_ignores_secrets_and_replace_works() -> None:
    assert make() == make(secret=Secret("other"))
    assert make().replace(environment="production").environment == "production"
