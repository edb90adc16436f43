"""Policy as a value and as stored JSON: defaults, round trips, and strict reading."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.errors import InvalidInput
from keybroker.policy import DEFAULT_POLICY, Policy

FULL = Policy(
    scopes=("read", "trade"),
    symbols=("BTCUSDT", "ETHUSDT"),
    order_types=("LIMIT", "MARKET"),
    max_notional=Decimal("500.5"),
    max_open_orders=10,
    max_orders_per_minute=30,
    price_collar_pct=Decimal(5),
    daily_notional=Decimal(10000),
    max_leverage=Decimal(3),
    max_position_notional=Decimal(2000),
    allow_transfers=True,
    allow_production=True,
)


def test_a_new_credential_may_read_and_nothing_else() -> None:
    assert Policy() == DEFAULT_POLICY
    assert DEFAULT_POLICY.scopes == ("read",)
    assert DEFAULT_POLICY.symbols == ()
    assert not DEFAULT_POLICY.allow_transfers
    assert not DEFAULT_POLICY.allow_production
    assert not DEFAULT_POLICY.allows_trading


def test_every_field_round_trips_through_json() -> None:
    assert Policy.from_json(FULL.to_json()) == FULL
    assert Policy.from_json(DEFAULT_POLICY.to_json()) == DEFAULT_POLICY


def test_the_stored_form_is_canonical_and_keeps_decimals_exact() -> None:
    data = FULL.to_json()
    parsed = json.loads(data)
    assert list(parsed) == sorted(parsed)
    assert b" " not in data
    assert parsed["max_notional"] == "500.5"
    assert parsed["price_collar_pct"] == "5"
    assert parsed["max_open_orders"] == 10
    # One value, one spelling: equal policies store equal bytes.
    same = dataclasses.replace(FULL, max_notional=Decimal("500.50"), daily_notional=Decimal("1E+4"))
    assert same.to_json() == data


def test_missing_keys_take_their_defaults() -> None:
    assert Policy.from_json(b"{}") == DEFAULT_POLICY
    policy = Policy.from_json(b'{"scopes": ["trade", "read"], "symbols": ["BTCUSDT"]}')
    assert policy.scopes == ("read", "trade")
    assert policy.allows_trading


def test_numbers_may_be_json_numbers_or_strings_and_stay_exact() -> None:
    policy = Policy.from_json(b'{"max_notional": 0.1, "daily_notional": "1000.25"}')
    assert policy.max_notional == Decimal("0.1")
    assert policy.daily_notional == Decimal("1000.25")


def test_an_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="unknown key 'max_notionl'"):
        Policy.from_json(b'{"max_notionl": "100"}')


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (b"[]", "JSON object"),
        (b"not json", "not JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"scopes": "read"}', "scopes"),
        (b'{"scopes": ["admin"]}', "unknown scope 'admin'"),
        (b'{"symbols": ["BTC USDT"]}', "symbols"),
        (b'{"symbols": [""]}', "symbols"),
        (b'{"symbols": [1]}', "symbols"),
        (b'{"order_types": ["LIM\\tIT"]}', "order_types"),
        (b'{"max_notional": -1}', "max_notional must not be negative"),
        (b'{"max_notional": "lots"}', "max_notional must be a number"),
        (b'{"max_notional": true}', "max_notional"),
        (b'{"max_notional": NaN}', "NaN"),
        (b'{"max_notional": Infinity}', "Infinity"),
        (b'{"max_notional": "Infinity"}', "finite"),
        (b'{"max_notional": "1e99"}', "too large"),
        (b'{"max_leverage": 0}', "max_leverage must be more than 0"),
        (b'{"max_open_orders": 1.5}', "max_open_orders must be a whole number"),
        (b'{"max_open_orders": -2}', "max_open_orders must not be negative"),
        (b'{"max_open_orders": "3"}', "max_open_orders"),
        (b'{"allow_production": "yes"}', "allow_production must be true or false"),
        (b'{"allow_transfers": 1}', "allow_transfers"),
        (b'{"max_notional": "1", "max_notional": "1000"}', "'max_notional' twice"),
    ],
)
def test_malformed_documents_are_refused_naming_the_key(document: bytes, named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        Policy.from_json(document)


def test_construction_checks_like_reading_does() -> None:
    with pytest.raises(InvalidInput, match="float"):
        Policy(max_notional=0.1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown scope"):
        Policy(scopes=("withdraw",))
    with pytest.raises(InvalidInput, match="list of strings"):
        Policy(symbols="BTCUSDT")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="must not be negative"):
        dataclasses.replace(FULL, daily_notional=Decimal(-5))
    assert Policy(max_notional=100).max_notional == Decimal(100)  # type: ignore[arg-type]


def test_names_are_stripped_and_kept_once_whatever_their_case() -> None:
    policy = Policy(symbols=(" BTCUSDT", "btcusdt", "ETHUSDT"), scopes=("trade", "read", "read"))
    assert policy.symbols == ("BTCUSDT", "ETHUSDT")
    assert policy.scopes == ("read", "trade")


def test_a_malformed_key_is_shown_short_and_printable() -> None:
    with pytest.raises(InvalidInput) as caught:
        Policy.from_dict({"x\x1b[31m" + "y" * 500: 1})
    message = str(caught.value)
    assert "\x1b" not in message
    assert len(message) < 120


_names = st.lists(st.from_regex(r"[A-Z0-9][A-Z0-9\-_/]{0,15}", fullmatch=True), max_size=5)
_limits = st.none() | st.decimals(min_value=0, max_value=10**12, allow_nan=False, places=6)
_counts = st.none() | st.integers(min_value=0, max_value=10**6)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    values: dict[str, Any] = {
        "scopes": tuple(draw(st.lists(st.sampled_from(["read", "trade"]), max_size=2))),
        "symbols": tuple(draw(_names)),
        "order_types": tuple(draw(_names)),
        "max_notional": draw(_limits),
        "max_open_orders": draw(_counts),
        "max_orders_per_minute": draw(_counts),
        "price_collar_pct": draw(_limits),
        "daily_notional": draw(_limits),
        "max_leverage": draw(st.none() | st.decimals(min_value=1, max_value=125, places=1)),
        "max_position_notional": draw(_limits),
        "allow_transfers": draw(st.booleans()),
        "allow_production": draw(st.booleans()),
    }
    return Policy(**values)


@settings(deadline=None)
@given(policies())
def test_any_policy_round_trips_to_identical_bytes(policy: Policy) -> None:
    again = Policy.from_json(policy.to_json())
    assert again == policy
    assert again.to_json() == policy.to_json()
