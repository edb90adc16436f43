"""Rotation status: trading keys warn after 30 days and are due after 60; read-only 60 and 90."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.vault import CredentialRecord, RotationStatus, rotation_status

ADDED = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = {"ok": 0, "warn": 1, "due": 2}


def record(scopes: tuple[str, ...], rotated_at: datetime | None = None) -> CredentialRecord:
    return CredentialRecord(
        name="bot1",
        exchange="binance",
        environment="testnet",
        scopes=scopes,
        key_type="hmac",
        key_id="FAKE…0001",
        created_at=ADDED,
        rotated_at=rotated_at,
        key_history=(),
        base_url=None,
        notes="",
        version=1,
    )


TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("scopes", "age", "expected"),
    [
        (("read", "trade"), timedelta(0), "ok"),
        (("read", "trade"), timedelta(days=30), "ok"),
        (("read", "trade"), timedelta(days=30) + TICK, "warn"),
        (("read", "trade"), timedelta(days=60), "warn"),
        (("read", "trade"), timedelta(days=60) + TICK, "due"),
        (("trade",), timedelta(days=45), "warn"),
        (("read",), timedelta(days=30) + TICK, "ok"),
        (("read",), timedelta(days=60), "ok"),
        (("read",), timedelta(days=60) + TICK, "warn"),
        (("read",), timedelta(days=90), "warn"),
        (("read",), timedelta(days=90) + TICK, "due"),
        (("read",), timedelta(days=400), "due"),
    ],
)
def test_boundaries(scopes: tuple[str, ...], age: timedelta, expected: RotationStatus) -> None:
    assert rotation_status(record(scopes), ADDED + age) == expected


def test_age_counts_from_the_last_rotation() -> None:
    rotated = ADDED + timedelta(days=100)
    assert rotation_status(record(("read",)), rotated) == "due"
    assert rotation_status(record(("read",), rotated_at=rotated), rotated) == "ok"
    assert rotation_status(record(("read",), rotated_at=rotated), rotated + timedelta(61)) == "warn"


@given(
    scopes=st.sampled_from([("read",), ("trade",), ("read", "trade")]),
    younger=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=500)),
    extra=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=500)),
)
def test_a_key_never_gets_fresher_by_ageing(
    scopes: tuple[str, ...], younger: timedelta, extra: timedelta
) -> None:
    earlier = rotation_status(record(scopes), ADDED + younger)
    later = rotation_status(record(scopes), ADDED + younger + extra)
    assert ORDER[later] >= ORDER[earlier]


@given(age=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=500)))
def test_a_trading_key_is_never_in_better_standing_than_a_read_only_one(age: timedelta) -> None:
    trade = rotation_status(record(("read", "trade")), ADDED + age)
    read = rotation_status(record(("read",)), ADDED + age)
    assert ORDER[trade] >= ORDER[read]
