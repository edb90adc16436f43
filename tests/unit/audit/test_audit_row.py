"""What a row may hold: types checked, secrets masked, text cut, columns round-trip."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from http import HTTPStatus

import pytest
from audit_testkit import intent, result
from hypothesis import given
from hypothesis import strategies as st

from keybroker.audit import AuditRow
from keybroker.audit.chain import canonical
from keybroker.audit.row import MAX_TEXT, check_row, from_columns, mask_secrets, to_columns
from keybroker.errors import InvalidInput

TOKEN = "kb_FAKEtokenNotReal0000000000000000000000000001"


@pytest.mark.parametrize(
    "row",
    [
        AuditRow("order"),
        AuditRow("intent", bot=5),  # type: ignore[arg-type]
        AuditRow("result", status=True),
        AuditRow("result", status="200"),  # type: ignore[arg-type]
        AuditRow("result", intent_id=1.0),  # type: ignore[arg-type]
        AuditRow("result", latency_ms=float("nan")),
        AuditRow("result", latency_ms="5"),  # type: ignore[arg-type]
        AuditRow("intent", order={"quantity": 1}),  # type: ignore[dict-item]
        AuditRow("intent", paper=1),  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_malformed_rows_are_refused_naming_the_field(row: AuditRow) -> None:
    with pytest.raises(InvalidInput):
        check_row(row)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {TOKEN} used", "token kb_*** used"),
        (
            "/api/v3/order?symbol=BTCUSDT&signature=abc123&timestamp=1",
            "/api/v3/order?symbol=BTCUSDT&signature=***&timestamp=1",
        ),
        ("/x?apiKey=FAKEKEY&recvWindow=5000", "/x?apiKey=***&recvWindow=5000"),
        ("/x?api_secret=FAKE;sign=FAKE2", "/x?api_secret=***;sign=***"),
        ("/api/v3/order?symbol=BTCUSDT&side=BUY", "/api/v3/order?symbol=BTCUSDT&side=BUY"),
        ("designation=fine", "designation=fine"),
    ],
)
def test_secret_looking_values_are_masked(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected
    checked = check_row(AuditRow("denied", path=text, detail=text, order={"note": text}))
    assert (checked.path, checked.detail, dict(checked.order or {})) == (
        expected,
        expected,
        {"note": expected},
    )


def test_long_text_is_cut_and_numbers_become_floats() -> None:
    checked = check_row(AuditRow("result", detail="x" * (MAX_TEXT + 10), latency_ms=7))
    assert checked.detail is not None and len(checked.detail) == MAX_TEXT
    assert checked.detail.endswith("…")
    assert checked.latency_ms == 7.0 and isinstance(checked.latency_ms, float)


def test_a_clean_row_is_unchanged() -> None:
    row = intent(3)
    assert check_row(row) == row
    assert check_row(AuditRow("event", detail="started")) == AuditRow("event", detail="started")


@given(
    n=st.integers(0, 500),
    detail=st.one_of(st.none(), st.text(max_size=50)),
    latency=st.one_of(st.none(), st.floats(0, 1e6)),
)
def test_columns_read_back_as_the_row_that_was_written(
    n: int, detail: str | None, latency: float | None
) -> None:
    row = check_row(replace(result(n, 1), detail=detail, latency_ms=latency))
    values = to_columns(row, id=9, ts_ms=1_700_000_000_123)
    stored = from_columns(values, "0" * 64)
    assert (stored.id, stored.ts_ms, stored.row) == (9, 1_700_000_000_123, row)
    assert stored.to_dict()["time"] == "2023-11-14T22:13:20.123Z"


class Side(StrEnum):
    BUY = "BUY"


def test_enum_members_are_stored_as_the_plain_values_sqlite_gives_back() -> None:
    # An enum member would hash as itself but read back as str/int: the chain would
    # break on the next verify. check_row hands the writer exact types only.
    row = AuditRow(
        "intent",
        method=Side.BUY,
        status=HTTPStatus.OK,
        order={Side.BUY: Side.BUY},
    )
    checked = check_row(row)
    assert type(checked.method) is str and type(checked.status) is int
    assert [type(x) for pair in (checked.order or {}).items() for x in pair] == [str, str]
    canonical(to_columns(checked, id=1, ts_ms=1))  # no ValueError
