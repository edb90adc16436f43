"""The hash chain: a canonical encoding of each row, and SHA-256 over it and the row before.

    >>> values = {"id": 1, "ts_ms": 1_700_000_000_000, "kind": "event", "detail": "started"}
    >>> canonical(values)
    b'{"detail":"started","id":1,"kind":"event","ts_ms":1700000000000}'
    >>> link(GENESIS, values) == hashlib.sha256(bytes(32) + canonical(values)).hexdigest()
    True

``hash(row n) = SHA-256(hash(row n-1) as 32 raw bytes || canonical(row n))``,
with 32 zero bytes before row 1. The canonical encoding is compact JSON with
sorted keys of every stored column (id and timestamp included, ``hash``
excluded), ASCII only, of the values exactly as SQLite gives them back:
text, integers, finite floats and NULL. Nothing is normalised on the way
to the hash (a stored ``"200"`` is not ``200``, ``1.0`` is not ``1``), so
any change to any stored value changes the hash.

Editing a row breaks its own hash; recomputing that hash breaks the next
row's link; so rewriting history means rewriting every later row. Cutting
rows off the *end* leaves a shorter valid chain: keep ``head`` (the last
hash, which ``keybroker audit verify`` prints) somewhere else to catch that.

Everything here is pure: no files, no clock.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GENESIS = "0" * 64
"""The "previous hash" of row 1."""

# Built once: json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What ``verify_chain`` found: ``first_broken`` is the id of the first row that fails."""

    ok: bool
    rows: int
    first_broken: int | None
    reason: str
    head: str | None = None
    """The last row's hash when the chain holds: note it elsewhere to detect a cut-off tail."""


def canonical(values: Mapping[str, object]) -> bytes:
    """Compact sorted-key JSON of the stored values; ValueError for a value of another type."""
    for name, value in values.items():
        kind = type(value)
        if kind is str or kind is int or value is None:
            continue
        if kind is not float:  # bool, bytes, subclasses: not what SQLite gives back
            raise ValueError(f"column {name} holds a {kind.__name__}")
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValueError(f"column {name} holds a non-finite number")
    return _ENCODER.encode(values).encode("ascii")


def link(previous: str, values: Mapping[str, object]) -> str:
    """The hash of a row (hex) whose predecessor's hash is ``previous`` (hex)."""
    return hashlib.sha256(bytes.fromhex(previous) + canonical(values)).hexdigest()


def is_hash(value: object) -> bool:
    """64 lowercase hex digits, as ``link`` writes them."""
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def verify_rows(rows: Iterable[tuple[Mapping[str, object], object]]) -> ChainReport:
    """Check (values, stored hash) pairs in id order: ids 1, 2, 3 ... each linking to the last.

    Reading continues past the first break only to count the rows.
    """
    previous, expected_id, count = GENESIS, 1, 0
    broken: tuple[int, str] | None = None
    for values, stored in rows:
        count += 1
        if broken is not None:
            continue
        row_id = values.get("id")
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            broken = (expected_id, f"row {expected_id} is missing or its id was changed")
            continue
        if row_id != expected_id:
            broken = (expected_id, f"row {expected_id} is missing (the next row is {row_id})")
            continue
        try:
            computed = link(previous, values)
        except ValueError as exc:
            broken = (row_id, f"row {row_id} was changed: {exc}")
            continue
        if not is_hash(stored) or computed != stored:
            broken = (row_id, f"row {row_id} does not match its hash (it or its hash was edited)")
            continue
        previous, expected_id = computed, expected_id + 1
    if broken is not None:
        return ChainReport(False, count, broken[0], broken[1])
    head = previous if count else None
    reason = f"{count} rows, chain intact" if count else "the log is empty"
    return ChainReport(True, count, None, reason, head)
