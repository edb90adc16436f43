"""The error tree: every class has a message, an exit code and an HTTP status."""

from __future__ import annotations

import inspect

import pytest

from keybroker import errors

ALL = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.KeybrokerError)
]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_has_one_line_message_and_codes(cls: type[errors.KeybrokerError]) -> None:
    error = cls("something went wrong")
    assert str(error) == "something went wrong"
    assert error.exit_code in (1, 2)
    assert 400 <= error.http_status < 600
    assert cls.__doc__


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_is_drawn_in_the_tree(cls: type[errors.KeybrokerError]) -> None:
    assert cls.__name__ in (errors.__doc__ or "")


def test_usage_errors_exit_1_and_refusals_exit_2() -> None:
    assert errors.InvalidInput("x").exit_code == 1
    assert errors.WrongPassphrase("x").exit_code == 2
    assert errors.PolicyDenied("x").exit_code == 2


def test_upstream_errors_carry_the_venue_code() -> None:
    error = errors.IPBanned("banned", exchange="binance", code=-1003, ban_until_ms=5)
    assert (error.exchange, error.code, error.status, error.ban_until_ms) == (
        "binance",
        -1003,
        418,
        5,
    )
    assert isinstance(error, errors.RateLimitedUpstream)
    assert errors.ExchangeUnavailable("x").retryable
    assert not errors.OrderRejected("x").retryable
