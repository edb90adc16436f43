"""The pure chain: canonical encoding, links, and checking a sequence of rows."""

from __future__ import annotations

import hashlib
import json

import pytest
from audit_testkit import intent, result
from hypothesis import given
from hypothesis import strategies as st

from keybroker.audit.chain import GENESIS, canonical, is_hash, link, verify_rows
from keybroker.audit.row import check_row, to_columns


def chain_of(count: int) -> list[tuple[dict[str, object], object]]:
    rows, previous = [], GENESIS
    for n in range(count):
        row = intent(n) if n % 2 == 0 else result(n, n)
        values = to_columns(check_row(row), id=n + 1, ts_ms=1_700_000_000_000 + n)
        previous = link(previous, values)
        rows.append((values, previous))
    return rows


def test_canonical_is_sorted_compact_ascii_json_of_every_column() -> None:
    values = {"ts_ms": 5, "id": 1, "detail": "prix élevé", "latency_ms": 1.5, "bot": None}
    encoded = canonical(values)
    assert (
        encoded
        == b'{"bot":null,"detail":"prix \\u00e9lev\\u00e9","id":1,"latency_ms":1.5,"ts_ms":5}'
    )
    assert json.loads(encoded) == values


def test_a_link_is_sha256_of_the_previous_hash_bytes_and_the_encoding() -> None:
    values = {"id": 1, "kind": "event"}
    first = link(GENESIS, values)
    assert first == hashlib.sha256(bytes(32) + canonical(values)).hexdigest()
    assert (
        link(first, values) == hashlib.sha256(bytes.fromhex(first) + canonical(values)).hexdigest()
    )
    assert is_hash(first) and not is_hash(first.upper()) and not is_hash(first[:-1])


@pytest.mark.parametrize(
    "value", [True, b"bytes", float("nan"), float("inf"), [1], {"a": 1}], ids=repr
)
def test_values_sqlite_would_not_give_back_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        canonical({"id": 1, "detail": value})


def test_types_are_not_normalised_on_the_way_to_the_hash() -> None:
    assert canonical({"status": 200}) != canonical({"status": "200"})
    assert canonical({"latency_ms": 1.0}) != canonical({"latency_ms": 1})


def test_an_intact_chain_verifies_and_reports_its_head() -> None:
    rows = chain_of(6)
    report = verify_rows(rows)
    assert (report.ok, report.rows, report.first_broken, report.head) == (
        True,
        6,
        None,
        rows[-1][1],
    )
    empty = verify_rows([])
    assert (empty.ok, empty.rows, empty.head) == (True, 0, None)


def test_a_missing_row_is_named() -> None:
    rows = chain_of(5)
    del rows[2]
    report = verify_rows(rows)
    assert (report.ok, report.first_broken, report.rows) == (False, 3, 4)
    assert "row 3 is missing" in report.reason


def test_a_row_whose_hash_was_recomputed_breaks_the_next_link() -> None:
    rows = chain_of(4)
    values, _ = rows[1]
    forged = {**values, "status": 201}
    rows[1] = (forged, link(rows[0][1], forged))  # type: ignore[arg-type]
    assert verify_rows(rows).first_broken == 3


@given(
    data=st.data(),
    count=st.integers(min_value=1, max_value=8),
)
def test_changing_any_value_of_any_row_names_that_row(data: st.DataObject, count: int) -> None:
    rows = chain_of(count)
    index = data.draw(st.integers(0, count - 1), label="row")
    values, stored = rows[index]
    names = [*sorted(name for name in values if name != "id"), "hash"]
    name = data.draw(st.sampled_from(names), label="column")
    if name == "hash":
        text = str(stored)
        position = data.draw(st.integers(0, len(text) - 1))
        other = data.draw(st.sampled_from([c for c in "0123456789abcdefX" if c != text[position]]))
        rows[index] = (values, text[:position] + other + text[position + 1 :])
    else:
        old = values[name]
        new = data.draw(
            st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text()).filter(
                lambda v: type(v) is not type(old) or v != old
            ),
            label="new value",
        )
        rows[index] = ({**values, name: new}, stored)
    report = verify_rows(rows)
    assert not report.ok
    assert report.first_broken == index + 1
