"""Shortcuts ``judge`` takes on every order, each held equal to the long way it replaces."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import httpx

from keybroker.exchanges import PROFILES, binance, get_profile
from keybroker.exchanges.base import OrderIntent, RateLimit
from keybroker.ratelimit import charges, charges_for

FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_an_intent_with_an_id_is_what_dataclasses_replace_makes() -> None:
    # Every field set to something that is not its default, so a new field cannot be dropped.
    values = {
        "symbol": "BTCUSDT",
        "side": "buy",
        "type": "LIMIT",
        "quantity": Decimal("1.5"),
        "price": Decimal("20000"),
        "quote_quantity": Decimal("30000"),
        "client_order_id": "theirs",
        "reduce_only": True,
        "leverage": Decimal("3"),
    }
    assert set(values) == {field.name for field in dataclasses.fields(OrderIntent)}
    intent = OrderIntent(**values)  # type: ignore[arg-type]
    assert intent.with_client_order_id("kb1") == dataclasses.replace(intent, client_order_id="kb1")
    assert OrderIntent("X").with_client_order_id("kb2") == OrderIntent("X", client_order_id="kb2")


def test_binances_dangerous_families_all_live_under_sapi() -> None:
    # classify looks at them only for /sapi/ paths.
    assert all(pattern.pattern.startswith("^/sapi/") for pattern, _ in binance._DANGEROUS_FAMILIES)
    for path in ("/sapi/v1/giftcard/createCode", "/SAPI/v1/capital/withdraw/apply/"):
        request = httpx.Request("POST", "https://api.binance.com" + path, headers=FORM)
        assert binance.classify(request).kind == "withdraw"


def _order(symbols: list[str]) -> tuple[object, list[OrderIntent]]:
    profile = get_profile("okx")
    request = httpx.Request("POST", "https://www.okx.com/api/v5/trade/batch-orders")
    return profile.classify(request), [OrderIntent(symbol) for symbol in symbols]


def test_charges_worked_out_once_are_those_worked_out_afresh() -> None:
    charges._WORKED_OUT.clear()
    for name, profile in PROFILES.items():
        request = httpx.Request("POST", "https://example.test/api/v5/trade/batch-orders")
        classified = profile.classify(request)
        for intents in ([], [OrderIntent("A")], [OrderIntent("A"), OrderIntent("B")]):
            for host, account in (("h1", "a1"), ("h1", "a2"), ("h2", "a1")):
                args = (profile, classified, host, account, "production", intents, None)
                first = charges_for(
                    profile, classified, host=host, account=account, intents=intents
                )
                again = charges_for(
                    profile, classified, host=host, account=account, intents=intents
                )
                assert first == again == charges._work_out(*args), name
                again.clear()  # a caller's list is its own
                assert (
                    charges_for(profile, classified, host=host, account=account, intents=intents)
                    == first
                )


def test_the_batch_size_and_symbols_are_part_of_what_is_remembered() -> None:
    profile = get_profile("okx")
    classified, one = _order(["BTC-USDT"])
    _, two = _order(["BTC-USDT", "BTC-USDT"])
    _, other = _order(["ETH-USDT", "BTC-USDT"])
    spent = [
        charges_for(profile, classified, host="h", account="a", intents=intents)  # type: ignore[arg-type]
        for intents in (one, two, other)
    ]
    assert spent[0] != spent[1] != spent[2]
    assert {c.key for c in spent[2]} != {c.key for c in spent[1]}


def test_another_profile_of_the_same_name_gets_its_own_charges() -> None:
    profile = get_profile("binance")
    request = httpx.Request("POST", "https://api.binance.com/api/v3/order")
    classified = profile.classify(request)
    mine = charges_for(profile, classified, host="h", account="a")
    tighter = dataclasses.replace(
        profile, rate_limits=(RateLimit("ONLY", 5, 1, "requests", "account"),)
    )
    theirs = charges_for(tighter, classified, host="h", account="a")
    assert [c.limit.name for c in theirs] == ["ONLY"]
    assert charges_for(profile, classified, host="h", account="a") == mine


def test_overrides_are_never_remembered() -> None:
    profile = get_profile("binance")
    request = httpx.Request("POST", "https://api.binance.com/api/v3/order")
    classified = profile.classify(request)
    plain = charges_for(profile, classified, host="h", account="a")
    off = charges_for(profile, classified, host="h", account="a", limit_overrides={"ORDERS_10S": 0})
    assert len(off) == len(plain) - 1
    assert charges_for(profile, classified, host="h", account="a") == plain
