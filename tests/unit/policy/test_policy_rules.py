"""evaluate(): every rule, on requests classified and parsed by the real exchange profiles."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import httpx

from keybroker.exchanges import get_profile
from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.policy import (
    DEFAULT_POLICY,
    RULES,
    Decision,
    Policy,
    PolicyContext,
    evaluate,
    order_notional,
)

BINANCE = get_profile("binance")
OKX = get_profile("okx")
SPOT = "https://testnet.binance.vision"
FAPI = "https://testnet.binancefuture.com"
OKX_URL = "https://www.okx.com"

TRADER = Policy(scopes=("read", "trade"), symbols=("BTCUSDT", "ETHUSDT"))
PRICES = {"BTCUSDT": Decimal(30000), "ETHUSDT": Decimal(2000), "BTC-USDT": Decimal(30000)}
TESTNET = PolicyContext(environment="testnet", last_price=PRICES.get)


def binance(method: str, path: str, **params: str) -> httpx.Request:
    return httpx.Request(method, SPOT + path, params=params)


def order(**overrides: str) -> httpx.Request:
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01"}
    params["price"] = "30000"
    params.update(overrides)
    return binance("POST", "/api/v3/order", **{k: v for k, v in params.items() if v})


def decide(
    request: httpx.Request,
    policy: Policy = TRADER,
    context: PolicyContext = TESTNET,
    profile: Any = BINANCE,
) -> Decision:
    return evaluate(policy, profile.classify(request), profile.parse_order(request), context)


def denied_by(decision: Decision) -> str:
    assert not decision.allowed, decision
    assert decision.rule in RULES
    assert decision.detail
    return decision.rule


def with_(policy: Policy = TRADER, **changes: Any) -> Policy:
    return dataclasses.replace(policy, **changes)


def context(**changes: Any) -> PolicyContext:
    return dataclasses.replace(TESTNET, **changes)


# -- what no policy can allow ---------------------------------------------------------------

ALLOW_EVERYTHING = Policy(
    scopes=("read", "trade"),
    symbols=("BTCUSDT", "BTC"),
    allow_transfers=True,
    allow_production=True,
)


def test_withdrawals_are_never_signed() -> None:
    request = binance("POST", "/sapi/v1/capital/withdraw/apply", coin="BTC", amount="1")
    assert denied_by(decide(request, ALLOW_EVERYTHING)) == "never_withdraw"


def test_key_management_is_never_signed() -> None:
    classified = ClassifiedRequest(
        "key_management", "POST", "/api/v5/users/subaccount/apikey", None
    )
    decision = evaluate(ALLOW_EVERYTHING, classified, [], TESTNET)
    assert denied_by(decision) == "never_key_management"


def test_unknown_private_endpoints_are_denied_and_named() -> None:
    decision = decide(binance("POST", "/sapi/v9/something/new"), ALLOW_EVERYTHING)
    assert denied_by(decision) == "unknown_endpoint"
    assert "POST /sapi/v9/something/new" in decision.detail


def test_a_kind_no_profile_has_yet_is_denied_as_unknown() -> None:
    classified = ClassifiedRequest("margin_loan", "POST", "/x", None)  # type: ignore[arg-type]
    assert denied_by(evaluate(ALLOW_EVERYTHING, classified, [], TESTNET)) == "unknown_endpoint"


def test_a_withdrawal_is_refused_even_when_halted_and_in_production() -> None:
    request = binance("POST", "/sapi/v1/capital/withdraw/apply", coin="BTC")
    decision = decide(request, DEFAULT_POLICY, context(environment="production", halted=True))
    assert decision.rule == "never_withdraw"


# -- the credential as a whole ---------------------------------------------------------------


def test_a_production_credential_needs_allow_production() -> None:
    ticker = binance("GET", "/api/v3/ticker/price", symbol="BTCUSDT")
    production = context(environment="production")
    assert denied_by(decide(ticker, TRADER, production)) == "allow_production"
    assert denied_by(decide(order(), TRADER, production)) == "allow_production"
    assert decide(order(), with_(allow_production=True), production).allowed
    assert decide(ticker, TRADER, TESTNET).allowed


def test_an_environment_that_is_not_testnet_counts_as_production() -> None:
    assert denied_by(decide(order(), TRADER, context(environment="demo"))) == "allow_production"


def test_the_kill_switch_stops_orders_but_not_cancels_or_reads() -> None:
    halted = context(halted=True)
    decision = decide(order(), TRADER, halted)
    assert denied_by(decision) == "kill_switch"
    cancel = binance("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId="1")
    assert decide(cancel, TRADER, halted).allowed
    assert decide(binance("GET", "/api/v3/openOrders"), TRADER, halted).allowed
    assert decide(binance("GET", "/api/v3/account"), TRADER, halted).allowed


def test_the_default_policy_reads_but_does_not_trade() -> None:
    assert decide(binance("GET", "/api/v3/account"), DEFAULT_POLICY).allowed
    assert decide(binance("GET", "/api/v3/openOrders"), DEFAULT_POLICY).allowed
    assert decide(binance("GET", "/api/v3/ticker/price"), DEFAULT_POLICY).allowed
    assert denied_by(decide(order(), DEFAULT_POLICY)) == "scope"
    cancel = binance("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId="1")
    assert denied_by(decide(cancel, DEFAULT_POLICY)) == "scope"


def test_reads_need_the_read_scope_and_public_data_needs_none() -> None:
    trade_only = with_(scopes=("trade",))
    assert denied_by(decide(binance("GET", "/api/v3/account"), trade_only)) == "scope"
    assert decide(binance("GET", "/api/v3/ticker/price"), trade_only).allowed
    assert decide(order(), trade_only).allowed


def test_transfers_are_denied_unless_allowed() -> None:
    transfer = binance("POST", "/sapi/v1/asset/transfer", type="MAIN_UMFUTURE", asset="USDT")
    assert BINANCE.classify(transfer).kind == "transfer"
    assert denied_by(decide(transfer, TRADER)) == "transfers"
    assert decide(transfer, with_(allow_transfers=True)).allowed


# -- order rules ------------------------------------------------------------------------------


def test_a_plain_order_within_the_policy_is_allowed() -> None:
    assert decide(order()) == Decision.allow()
    assert Decision.allow().allowed


def test_only_allowlisted_symbols_trade_in_any_case() -> None:
    assert decide(order(symbol="ethusdt")).allowed
    decision = decide(order(symbol="DOGEUSDT"))
    assert denied_by(decision) == "symbols"
    assert "DOGEUSDT" in decision.detail


def test_an_empty_symbol_list_lets_no_symbol_trade() -> None:
    decision = decide(order(), with_(symbols=()))
    assert denied_by(decision) == "symbols"
    assert "no symbol" in decision.detail


def test_an_order_nobody_could_read_is_denied() -> None:
    # Binance's position-mode switch is an order endpoint that carries no order.
    request = httpx.Request("POST", FAPI + "/fapi/v1/positionSide/dual?dualSidePosition=true")
    assert BINANCE.classify(request).kind == "order_place"
    assert BINANCE.parse_order(request) == []
    assert denied_by(decide(request)) == "symbols"


def test_an_order_with_an_empty_symbol_is_denied() -> None:
    classified = ClassifiedRequest("order_place", "POST", "/orders/edit", None)
    decision = evaluate(TRADER, classified, [OrderIntent(symbol="", quantity=Decimal(1))], TESTNET)
    assert denied_by(decision) == "symbols"


def test_cancels_pass_for_any_symbol_so_a_narrowed_policy_strands_no_order() -> None:
    cancel = binance("DELETE", "/api/v3/order", symbol="DOGEUSDT", orderId="7")
    assert decide(cancel).allowed


def test_order_types_are_an_allowlist_in_any_case_when_given() -> None:
    limits_only = with_(order_types=("limit",))
    assert decide(order(), limits_only).allowed
    market = order(type="MARKET", price="")
    decision = decide(market, limits_only)
    assert denied_by(decision) == "order_types"
    assert "MARKET" in decision.detail
    assert decide(market, TRADER).allowed  # empty = any type


def test_order_types_leave_leverage_settings_alone() -> None:
    request = httpx.Request("POST", FAPI + "/fapi/v1/leverage?symbol=BTCUSDT&leverage=5")
    assert decide(request, with_(order_types=("LIMIT",))).allowed


def test_max_notional_prices_limit_orders_at_their_price() -> None:
    capped = with_(max_notional=Decimal(300))
    assert decide(order(quantity="0.01", price="30000"), capped).allowed  # 300
    decision = decide(order(quantity="0.011", price="30000"), capped)  # 330
    assert denied_by(decision) == "max_notional"
    assert "330" in decision.detail and "300" in decision.detail


def test_max_notional_prices_market_orders_from_the_gateways_last_price() -> None:
    capped = with_(max_notional=Decimal(300))
    market = order(type="MARKET", price="", quantity="0.02")  # 600 at 30000
    assert denied_by(decide(market, capped)) == "max_notional"
    cheap = context(last_price={"BTCUSDT": Decimal(10000)}.get)
    assert decide(market, capped, cheap).allowed  # 200


def test_a_market_order_with_no_known_price_is_denied_under_max_notional() -> None:
    capped = with_(max_notional=Decimal(300))
    market = order(type="MARKET", price="")
    decision = decide(market, capped, context(last_price=lambda symbol: None))
    assert denied_by(decision) == "max_notional"
    assert "no last price" in decision.detail
    assert decide(market, TRADER, context(last_price=lambda symbol: None)).allowed


def test_failing_market_data_denies_instead_of_raising() -> None:
    def broken(symbol: str) -> Decimal | None:
        raise RuntimeError("market data down")

    market = order(type="MARKET", price="")
    assert denied_by(decide(market, with_(max_notional=Decimal(1)), context(last_price=broken)))


def test_max_notional_takes_a_quote_sized_order_at_its_size() -> None:
    capped = with_(max_notional=Decimal(100))
    spend_50 = order(type="MARKET", price="", quantity="", quoteOrderQty="50")
    assert decide(spend_50, capped, context(last_price=lambda symbol: None)).allowed
    spend_150 = order(type="MARKET", price="", quantity="", quoteOrderQty="150")
    assert denied_by(decide(spend_150, capped)) == "max_notional"


def test_okx_quote_sized_market_order_under_max_notional() -> None:
    def okx(size: str) -> httpx.Request:
        body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market"}
        body |= {"sz": size, "tgtCcy": "quote_ccy"}
        return httpx.Request("POST", OKX_URL + "/api/v5/trade/order", json=body)

    policy = Policy(scopes=("read", "trade"), symbols=("btc-usdt",), max_notional=Decimal(100))
    assert decide(okx("100"), policy, profile=OKX).allowed
    assert denied_by(decide(okx("100.01"), policy, profile=OKX)) == "max_notional"


def test_an_order_that_does_not_say_its_size_is_denied_under_a_notional_rule() -> None:
    classified = ClassifiedRequest("order_place", "POST", "/api/v3/order", None)
    unsized = [OrderIntent(symbol="BTCUSDT", side="buy", type="MARKET")]
    decision = evaluate(with_(max_notional=Decimal(10**6)), classified, unsized, TESTNET)
    assert denied_by(decision) == "max_notional"
    assert "size" in decision.detail


def test_a_batch_is_refused_when_any_of_its_orders_is() -> None:
    def batch(*orders: dict[str, str]) -> httpx.Request:
        return httpx.Request(
            "POST", FAPI + "/fapi/v1/batchOrders", data={"batchOrders": json.dumps(list(orders))}
        )

    small = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001"}
    small["price"] = "30000"
    large = small | {"quantity": "1"}
    other = small | {"symbol": "XRPUSDT"}
    capped = with_(max_notional=Decimal(100))
    assert decide(batch(small, small), capped).allowed
    assert denied_by(decide(batch(small, large), capped)) == "max_notional"
    assert denied_by(decide(batch(large, other), capped)) == "symbols"


def test_the_price_collar_refuses_fat_fingers_both_ways() -> None:
    collar = with_(price_collar_pct=Decimal(5))
    assert decide(order(price="31500"), collar).allowed  # +5 %
    assert decide(order(price="28500"), collar).allowed  # -5 %
    high = decide(order(price="31501"), collar)
    assert denied_by(high) == "price_collar"
    assert "5%" in high.detail
    assert denied_by(decide(order(price="3000"), collar)) == "price_collar"


def test_the_price_collar_needs_a_last_price_for_priced_orders_only() -> None:
    collar = with_(price_collar_pct=Decimal(5))
    blind = context(last_price=lambda symbol: None)
    assert denied_by(decide(order(), collar, blind)) == "price_collar"
    assert decide(order(type="MARKET", price=""), collar, blind).allowed


def test_daily_notional_counts_what_was_used_today() -> None:
    daily = with_(daily_notional=Decimal(1000))
    assert decide(order(), daily, context(daily_notional_used=Decimal(700))).allowed  # 700+300
    decision = decide(order(), daily, context(daily_notional_used=Decimal(701)))
    assert denied_by(decision) == "daily_notional"
    assert "1001" in decision.detail


def test_orders_per_minute_per_credential_and_per_token() -> None:
    limited = with_(max_orders_per_minute=10)
    assert decide(order(), limited, context(orders_last_minute=9)).allowed
    assert denied_by(decide(order(), limited, context(orders_last_minute=10))) == (
        "max_orders_per_minute"
    )
    token = context(token_orders_last_minute=3, token_max_orders_per_minute=3)
    decision = decide(order(), TRADER, token)
    assert denied_by(decision) == "max_orders_per_minute"
    assert "token" in decision.detail
    assert decide(
        order(), TRADER, context(token_orders_last_minute=2, token_max_orders_per_minute=3)
    ).allowed


def test_max_open_orders_needs_the_count_and_respects_it() -> None:
    limited = with_(max_open_orders=2)
    assert decide(order(), limited, context(open_orders=1)).allowed
    assert denied_by(decide(order(), limited, context(open_orders=2))) == "max_open_orders"
    unknown = decide(order(), limited, context(open_orders=None))
    assert denied_by(unknown) == "max_open_orders"
    assert "unknown" in unknown.detail


def test_max_leverage_applies_to_leverage_settings() -> None:
    def leverage(value: str) -> httpx.Request:
        return httpx.Request("POST", FAPI + f"/fapi/v1/leverage?symbol=BTCUSDT&leverage={value}")

    capped = with_(max_leverage=Decimal(5))
    assert decide(leverage("5"), capped).allowed
    decision = decide(leverage("20"), capped)
    assert denied_by(decision) == "max_leverage"
    assert "20" in decision.detail
    okx = httpx.Request(
        "POST",
        OKX_URL + "/api/v5/account/set-leverage",
        json={"instId": "BTC-USDT-SWAP", "lever": "50", "mgnMode": "cross"},
    )
    swap = Policy(scopes=("trade",), symbols=("BTC-USDT-SWAP",), max_leverage=Decimal(10))
    assert denied_by(decide(okx, swap, profile=OKX)) == "max_leverage"


def test_max_position_notional_adds_the_order_to_the_position() -> None:
    futures = order(type="MARKET", price="", quantity="0.01")  # 300 at 30000
    capped = with_(max_position_notional=Decimal(1000))
    positions = {"BTCUSDT": Decimal(-600)}
    assert decide(futures, capped, context(position_notional=positions.get)).allowed
    positions["BTCUSDT"] = Decimal(-701)
    decision = decide(futures, capped, context(position_notional=positions.get))
    assert denied_by(decision) == "max_position_notional"
    assert "1001" in decision.detail


def test_max_position_notional_lets_reduce_only_orders_pass() -> None:
    closing = order(type="MARKET", price="", quantity="1", reduceOnly="true")
    capped = with_(max_position_notional=Decimal(1000))
    big = context(position_notional=lambda symbol: Decimal(5000))
    assert decide(closing, capped, big).allowed
    assert denied_by(decide(order(), capped, big)) == "max_position_notional"


def test_max_position_notional_needs_the_position() -> None:
    capped = with_(max_position_notional=Decimal(1000))
    decision = decide(order(), capped, context(position_notional=lambda symbol: None))
    assert denied_by(decision) == "max_position_notional"
    assert "unknown" in decision.detail


def test_the_first_rule_in_order_wins() -> None:
    strict = with_(order_types=("LIMIT",), max_notional=Decimal(1))
    request = order(symbol="DOGEUSDT", type="MARKET")
    assert decide(request, strict).rule == "symbols"
    assert decide(order(type="MARKET"), strict).rule == "order_types"


def test_hostile_amounts_deny_instead_of_raising() -> None:
    classified = ClassifiedRequest("order_place", "POST", "/api/v3/order", None)
    every_rule = with_(
        order_types=("LIMIT",),
        max_notional=Decimal(100),
        price_collar_pct=Decimal(5),
        daily_notional=Decimal(100),
        max_leverage=Decimal(2),
        max_position_notional=Decimal(100),
        max_open_orders=5,
    )
    huge = Decimal("1E+999999")
    for intent in (
        OrderIntent("BTCUSDT", "buy", "LIMIT", quantity=huge, price=huge),
        OrderIntent("BTCUSDT", "buy", "LIMIT", quantity=Decimal("NaN"), price=Decimal(30000)),
        OrderIntent("BTCUSDT", "buy", "LIMIT", quantity=Decimal(1), price=Decimal("sNaN")),
        OrderIntent("BTCUSDT", "buy", "LIMIT", quantity=Decimal(1), price=Decimal("-Infinity")),
        OrderIntent("BTCUSDT", leverage=Decimal("NaN")),
        OrderIntent("BTCUSDT", "buy", "LIMIT", quantity=Decimal(-5), price=Decimal(-30000)),
    ):
        decision = evaluate(every_rule, classified, [intent], context(open_orders=0))
        assert not decision.allowed, intent
        assert decision.rule in RULES


def test_details_show_request_text_short_and_printable() -> None:
    decision = decide(order(symbol="X" * 500 + "\x1b[2J"))
    assert denied_by(decision) == "symbols"
    assert "\x1b" not in decision.detail
    assert len(decision.detail) < 150


def test_rules_lists_every_rule_once() -> None:
    assert len(set(RULES)) == len(RULES)


def test_order_notional_values_orders_the_way_the_rules_do() -> None:
    last = {"BTCUSDT": Decimal(30000)}.get
    limit = OrderIntent("BTCUSDT", "buy", "LIMIT", quantity=Decimal("0.5"), price=Decimal(20000))
    market = OrderIntent("BTCUSDT", "sell", "MARKET", quantity=Decimal("0.5"))
    quote = OrderIntent("BTCUSDT", "buy", "MARKET", quote_quantity=Decimal(75))
    assert order_notional(limit, last) == Decimal(10000)
    assert order_notional(market, last) == Decimal(15000)
    assert order_notional(market) is None
    assert order_notional(quote) == Decimal(75)
    assert order_notional(OrderIntent("BTCUSDT", leverage=Decimal(5)), last) is None
    huge = OrderIntent("BTCUSDT", "buy", "LIMIT", Decimal("1E+999999"), Decimal("1E+999999"))
    assert order_notional(huge) == Decimal("Infinity")
