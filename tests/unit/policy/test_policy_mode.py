"""The policy's mode: live or paper; documents written before modes existed still read."""

from __future__ import annotations

import pytest

from keybroker.errors import InvalidInput
from keybroker.policy import DEFAULT_POLICY, Policy

# A document as keybroker stored it before the mode existed (every field, sorted, compact).
OLD = (
    b'{"allow_production":false,"allow_transfers":false,"daily_notional":null,'
    b'"max_leverage":null,"max_notional":"500","max_open_orders":null,'
    b'"max_orders_per_minute":null,"max_position_notional":null,"order_types":[],'
    b'"price_collar_pct":null,"scopes":["read","trade"],"symbols":["BTCUSDT"]}'
)


def test_an_old_document_reads_as_live_and_a_live_policy_stores_as_before() -> None:
    policy = Policy.from_json(OLD)
    assert policy.mode == "live" and not policy.is_paper
    assert policy.to_json() == OLD
    assert DEFAULT_POLICY.mode == "live"


def test_paper_round_trips_and_nothing_else_is_a_mode() -> None:
    paper = Policy(mode="paper")
    assert paper.is_paper and b'"mode":"paper"' in paper.to_json()
    assert Policy.from_json(paper.to_json()) == paper
    with pytest.raises(InvalidInput, match="policy mode must be one of: live, paper"):
        Policy.from_json(OLD[:-1] + b',"mode":"demo"}')
