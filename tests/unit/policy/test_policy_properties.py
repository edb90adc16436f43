"""Invariants of evaluate() over any policy, any request, any intents and any context."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.exchanges import PROFILES
from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.policy import DEFAULT_POLICY, RULES, Policy, PolicyContext, evaluate

NEVER = {"withdraw": "never_withdraw", "key_management": "never_key_management"}
NEVER["unknown_private"] = "unknown_endpoint"
KINDS = [
    "public",
    "account_read",
    "order_read",
    "order_place",
    "order_cancel",
    "transfer",
    "withdraw",
    "key_management",
    "unknown_private",
]

_symbol = st.sampled_from(["BTCUSDT", "ETHUSDT", "BTC-USDT", "btcusdt", "", "XBT/USD"])
_amount = (
    st.none()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.decimals(min_value=Decimal("0.00000001"), max_value=10**7, places=8)
)
_limit = st.none() | st.decimals(min_value=0, max_value=10**9, places=4)
_count = st.none() | st.integers(min_value=0, max_value=1000)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    values: dict[str, Any] = {
        "scopes": tuple(draw(st.lists(st.sampled_from(["read", "trade"]), max_size=2))),
        "symbols": tuple(draw(st.lists(_symbol.filter(bool), max_size=3))),
        "order_types": tuple(draw(st.lists(st.sampled_from(["LIMIT", "market"]), max_size=2))),
        "max_notional": draw(_limit),
        "max_open_orders": draw(_count),
        "max_orders_per_minute": draw(_count),
        "price_collar_pct": draw(_limit),
        "daily_notional": draw(_limit),
        "max_leverage": draw(st.none() | st.decimals(min_value=1, max_value=125, places=1)),
        "max_position_notional": draw(_limit),
        "allow_transfers": draw(st.booleans()),
        "allow_production": draw(st.booleans()),
    }
    return Policy(**values)


_intent = st.builds(
    OrderIntent,
    symbol=_symbol,
    side=st.none() | st.sampled_from(["buy", "SELL"]),
    type=st.none() | st.sampled_from(["LIMIT", "MARKET", "set_leverage"]),
    quantity=_amount,
    price=_amount,
    quote_quantity=_amount,
    reduce_only=st.none() | st.booleans(),
    leverage=_amount,
)


def _lookup(prices: dict[str, Decimal | None]) -> Any:
    return lambda symbol: prices.get(symbol)


_contexts = st.builds(
    PolicyContext,
    environment=st.sampled_from(["testnet", "production", "demo"]),
    halted=st.booleans(),
    last_price=st.dictionaries(_symbol, _amount).map(_lookup),
    orders_last_minute=st.integers(min_value=0, max_value=100),
    token_orders_last_minute=st.integers(min_value=0, max_value=100),
    token_max_orders_per_minute=_count,
    open_orders=_count,
    daily_notional_used=st.decimals(allow_nan=False),
    position_notional=st.dictionaries(_symbol, _amount).map(_lookup),
)


def _request(kind: str) -> ClassifiedRequest:
    return ClassifiedRequest(kind, "POST", "/some/path", None)  # type: ignore[arg-type]


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    kind=st.sampled_from(sorted(NEVER)),
    intents=st.lists(_intent, max_size=3),
    context=_contexts,
)
def test_withdrawals_key_management_and_unknown_endpoints_are_never_allowed(
    policy: Policy, kind: str, intents: list[OrderIntent], context: PolicyContext
) -> None:
    decision = evaluate(policy, _request(kind), intents, context)
    assert not decision.allowed
    assert decision.rule == NEVER[kind]


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    kind=st.sampled_from(KINDS),
    intents=st.lists(_intent, max_size=3),
    context=_contexts,
)
def test_evaluate_always_answers_with_a_known_rule(
    policy: Policy, kind: str, intents: list[OrderIntent], context: PolicyContext
) -> None:
    decision = evaluate(policy, _request(kind), intents, context)
    if decision.allowed:
        assert (decision.rule, decision.detail) == ("", "")
        assert kind not in NEVER
        assert context.environment == "testnet" or policy.allow_production
        if kind == "order_place":
            assert intents and not context.halted and policy.allows_trading
    else:
        assert decision.rule in RULES
        assert decision.detail


@settings(deadline=None, max_examples=60)
@given(intents=st.lists(_intent, max_size=3), context=_contexts)
def test_the_default_policy_never_allows_an_order(
    intents: list[OrderIntent], context: PolicyContext
) -> None:
    assert not evaluate(DEFAULT_POLICY, _request("order_place"), intents, context).allowed


def _dangerous_endpoints() -> list[tuple[str, str, str]]:
    found = []
    for name, profile in PROFILES.items():
        for (method, pattern), endpoint in profile.catalogue.endpoints.items():
            if endpoint.kind in NEVER:
                found.append((name, method, pattern.replace("{", "").replace("}", "")))
    return found


DANGEROUS = _dangerous_endpoints()


def test_every_profile_lists_some_dangerous_endpoints() -> None:
    assert {name for name, _, _ in DANGEROUS} >= {"binance", "okx", "kraken", "bybit"}


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=st.sampled_from(DANGEROUS),
    policy=policies(),
    context=_contexts,
    spelling=st.sampled_from(["{}", "{}/", "/{}", "{}?x=1", "/./{}", "{}/../{}"]),
)
def test_no_catalogued_withdrawal_or_key_call_passes_through_a_real_profile(
    endpoint: tuple[str, str, str], policy: Policy, context: PolicyContext, spelling: str
) -> None:
    name, method, path = endpoint
    profile = PROFILES[name]
    last = path.rsplit("/", 1)[-1]
    spelled = spelling.format(path, last) if "../" in spelling else spelling.format(path)
    request = httpx.Request(method, "https://exchange.invalid" + spelled.replace("//", "/"))
    classified = profile.classify(request)
    try:
        intents = profile.parse_order(request)
    except Exception:
        intents = []
    decision = evaluate(policy, classified, intents, context)
    assert not decision.allowed, (name, method, spelled, classified)
