"""Secret never shows its value unless asked by name."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.secret import Secret

CANARY = "FAKE-canary-secret-0123456789"


@pytest.mark.parametrize(
    "render",
    [repr, str, lambda s: f"{s}", lambda s: f"{s!r}", lambda s: f"{s:>40}", lambda s: "%s" % s],  # noqa: UP031,
    ids=["repr", "str", "fstring", "fstring-r", "format-spec", "percent"],
)
def test_every_textual_form_is_redacted(render: object) -> None:
    text = render(Secret(CANARY))  # type: ignore[operator]
    assert CANARY not in text
    assert "***" in text


def test_repr_inside_containers_and_logs_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(CANARY)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("value %s in %r", secret, {"k": secret})
    assert CANARY not in caplog.text
    assert CANARY not in repr([secret, (secret,)])


def test_reveal_is_the_only_door() -> None:
    assert Secret(CANARY).reveal() == CANARY.encode()
    assert Secret(CANARY.encode()).reveal_text() == CANARY


def test_pickling_and_copying_are_refused() -> None:
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(Secret(CANARY))
    with pytest.raises(TypeError):
        copy.copy(Secret(CANARY))


def test_equality_is_by_value_and_unhashable() -> None:
    assert Secret("abc") == Secret(b"abc")
    assert Secret("abc") != Secret("abd")
    assert Secret("abc") != "abc"
    with pytest.raises(TypeError):
        hash(Secret("abc"))


def test_wipe_zeroes_and_empties() -> None:
    secret = Secret(CANARY)
    buffer = secret._value
    secret.wipe()
    assert bytes(buffer) == b"\x00" * len(CANARY)
    assert secret.reveal() == b""
    assert not secret


def test_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        Secret(12345)  # type: ignore[arg-type]


@given(st.binary(min_size=1))
def test_no_value_shows_in_repr(value: bytes) -> None:
    text = repr(Secret(value)) + str(Secret(value)) + format(Secret(value), "")
    assert text == "Secret('***')" * 3
