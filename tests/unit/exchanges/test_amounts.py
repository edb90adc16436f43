"""One amount rule for every exchange: plain decimal text, int or plain JSON number; never guessed.

An order whose amount keybroker cannot read the one way must be refused
(UnreadableAmount, a 400 the policy never sees), never passed on as a
smaller order: an exchange's own reader may take ``1e3`` as 1000 where a
prefix reader takes 1, or skip the ``_`` in ``1_000``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.errors import InvalidInput, UnreadableAmount
from keybroker.exchanges import get_profile
from keybroker.exchanges._wire import load_json
from keybroker.exchanges.base import OrderIntent, parse_amount

# The rule, written independently of base.py: ASCII digits and at most one point.
ORACLE = re.compile(r"[0-9]*\.?[0-9]*")


def oracle_accepts(text: str, *, signed: bool) -> bool:
    body = text[1:] if signed and text.startswith("-") else text
    return bool(body) and any(c.isdigit() for c in body) and ORACLE.fullmatch(body) is not None


def read(value: object, *, signed: bool = False) -> Decimal | None:
    return parse_amount(value, exchange="test", field="qty", signed=signed)


# -- the rule ------------------------------------------------------------------------------------

AMOUNT_ALPHABET = "0123456789.-+eE _xXnaNIfity\t\n\u0663\u00a0,"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=AMOUNT_ALPHABET, max_size=12), st.booleans())
def test_text_is_accepted_exactly_when_it_is_plain_decimal(text: str, signed: bool) -> None:
    if text == "":
        assert read(text, signed=signed) is None  # absent, like a missing field
        return
    if oracle_accepts(text, signed=signed):
        assert read(text, signed=signed) == Decimal(text)
    else:
        with pytest.raises(UnreadableAmount):
            read(text, signed=signed)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=10), st.booleans())
def test_any_text_is_read_or_refused_never_anything_else(text: str, signed: bool) -> None:
    try:
        result = read(text, signed=signed)
    except UnreadableAmount as refused:
        # The message is built from names only: the value is never echoed.
        assert str(refused) in (
            "test order field qty is not plain decimal text",
            "test order field qty is negative",
        )
        return
    assert result is None or oracle_accepts(text, signed=signed)


@settings(max_examples=200, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=0, max_value=10**9))
def test_what_is_accepted_every_reader_reads_the_same(amount: Decimal) -> None:
    # Plain text: Python's Decimal, float and a C-style prefix reader all agree on it.
    text = format(amount, "f")
    accepted = read(text)
    assert accepted == amount == Decimal(text)
    prefix = re.match(r"[0-9]*\.?[0-9]*", text)
    assert prefix is not None and prefix.group(0) == text
    assert float(text) == float(amount)


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=0, max_value=10**6),
    st.integers(min_value=-8, max_value=8),
    st.sampled_from(["e", "E"]),
)
def test_an_exponent_is_refused_in_text_and_in_json(
    mantissa: Decimal, exponent: int, letter: str
) -> None:
    spelled = f"{format(mantissa, 'f')}{letter}{exponent}"
    with pytest.raises(UnreadableAmount):
        read(spelled)
    parsed = load_json(f'{{"qty": {spelled}}}'.encode())
    with pytest.raises(UnreadableAmount, match="exponent"):
        read(parsed["qty"])


@settings(max_examples=100, deadline=None)
@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=0, max_value=10**9))
def test_sign_is_legal_only_where_the_field_is_signed(amount: Decimal) -> None:
    text = "-" + format(amount, "f")
    assert read(text, signed=True) == -amount
    if amount != 0 or text != "-0":
        with pytest.raises(UnreadableAmount, match="negative"):
            read(text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=" \t\n\r\u00a0\u2003", min_size=1, max_size=3), st.booleans())
def test_whitespace_anywhere_is_refused(space: str, before: bool) -> None:
    with pytest.raises(UnreadableAmount):
        read(space + "1.5" if before else "1.5" + space)


@pytest.mark.parametrize(
    "value",
    [1.5, 0.0, True, False, Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), [1], {}],
    ids=repr,
)
def test_floats_booleans_non_finite_and_containers_are_refused(value: object) -> None:
    with pytest.raises(UnreadableAmount):
        read(value, signed=True)


def test_ints_and_plain_json_numbers_are_read() -> None:
    assert read(3) == Decimal(3)
    body = load_json(b'{"a": 0.25, "b": 7}')
    assert read(body["a"]) == Decimal("0.25") and read(body["b"]) == Decimal(7)
    assert read(None) is None and read("") is None


def test_an_overlong_digit_string_is_refused() -> None:
    assert read("1" * 64) == Decimal("1" * 64)
    with pytest.raises(UnreadableAmount):
        read("1" * 65)


def test_unreadable_amount_is_an_invalid_input_the_gateway_refuses() -> None:
    # The gateway refuses every InvalidInput from parse_order before the policy runs.
    assert issubclass(UnreadableAmount, InvalidInput)


# -- every exchange ---------------------------------------------------------------------------

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}

# How each exchange's order request carries one amount field, as JSON text (a quoted string
# or a bare number) or as a form value.
OrderFor = Callable[[str], httpx.Request]


def _json(url: str, template: str) -> OrderFor:
    return lambda value: httpx.Request(
        "POST", url, content=template.replace("VALUE", value).encode(), headers=JSON
    )


def _form(url: str, template: str) -> OrderFor:
    return lambda value: httpx.Request(
        "POST",
        url,
        content=template.replace(
            "VALUE", quote(json.loads(value) if value.startswith('"') else value, safe="")
        ).encode(),
        headers=FORM,
    )


ORDERS: dict[str, tuple[OrderFor, bool]] = {
    # name: (order with the quantity field set to VALUE, whether the form is JSON)
    "binance": (
        _form(
            "https://api.binance.com/api/v3/order",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&price=1&quantity=VALUE",
        ),
        False,
    ),
    "okx": (
        _json(
            "https://www.okx.com/api/v5/trade/order",
            '{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":VALUE}',
        ),
        True,
    ),
    "bybit": (
        _json(
            "https://api.bybit.com/v5/order/create",
            '{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","price":"1","qty":VALUE}',
        ),
        True,
    ),
    "kraken": (
        _form(
            "https://api.kraken.com/0/private/AddOrder",
            "nonce=1&pair=XBTUSD&type=buy&ordertype=limit&price=1&volume=VALUE",
        ),
        False,
    ),
    "coinbase": (
        _json(
            "https://api.coinbase.com/api/v3/brokerage/orders",
            '{"client_order_id":"c1","product_id":"BTC-USD","side":"BUY",'
            '"order_configuration":{"limit_limit_gtc":{"limit_price":"1","base_size":VALUE}}}',
        ),
        True,
    ),
    "coinbase-exchange": (
        _json(
            "https://api.exchange.coinbase.com/orders",
            '{"product_id":"BTC-USD","side":"buy","type":"limit","price":"1","size":VALUE}',
        ),
        True,
    ),
    "bitfinex": (
        _json(
            "https://api.bitfinex.com/v2/auth/w/order/submit",
            '{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","price":"1","amount":VALUE}',
        ),
        True,
    ),
    "poloniex": (
        _json(
            "https://api.poloniex.com/orders",
            '{"symbol":"BTC_USDT","side":"BUY","type":"LIMIT","price":"1","quantity":VALUE}',
        ),
        True,
    ),
    "bittrex": (
        _json(
            "https://api.bittrex.com/v3/orders",
            '{"marketSymbol":"BTC-USD","direction":"BUY","type":"LIMIT","limit":"1",'
            '"timeInForce":"GOOD_TIL_CANCELLED","quantity":VALUE}',
        ),
        True,
    ),
}

# What every exchange now refuses (before this rule, Coinbase and Kraken read ' 2', '2e3' and
# '1_000'; Binance '2e3' and ' 2'; Bitfinex, Bittrex and Poloniex '2e3', 'NaN'-free exponents
# and JSON 2e3; OKX and Bybit '2e3').
REFUSED_TEXT = [
    '"2e3"',
    '"2E-3"',
    '" 2"',
    '"2 "',
    '"1_000"',
    '"+2"',
    '"0x10"',
    '"NaN"',
    '"Infinity"',
    '"\u0662"',
    '"2,5"',
]
REFUSED_JSON_ONLY = ["2e3", "2.5E-1", "1E+2"]


def quantity(intents: list[OrderIntent]) -> Decimal | None:
    (intent,) = intents
    return intent.quantity if intent.quantity is not None else intent.quote_quantity


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_each_exchange_reads_a_plain_amount(name: str) -> None:
    order, _ = ORDERS[name]
    assert quantity(get_profile(name).parse_order(order('"0.0125"'))) == Decimal("0.0125")


@pytest.mark.parametrize("value", REFUSED_TEXT)
@pytest.mark.parametrize("name", sorted(ORDERS))
def test_each_exchange_refuses_an_unreadable_amount(name: str, value: str) -> None:
    order, _ = ORDERS[name]
    with pytest.raises(UnreadableAmount) as refused:
        get_profile(name).parse_order(order(value))
    assert name in str(refused.value) and json.loads(value) not in str(refused.value)


@pytest.mark.parametrize("value", REFUSED_JSON_ONLY)
@pytest.mark.parametrize("name", sorted(n for n, (_, is_json) in ORDERS.items() if is_json))
def test_each_json_exchange_refuses_a_number_with_an_exponent(name: str, value: str) -> None:
    order, _ = ORDERS[name]
    with pytest.raises(UnreadableAmount):
        get_profile(name).parse_order(order(value))


@pytest.mark.parametrize("name", sorted(set(ORDERS) - {"bitfinex"}))
def test_a_negative_amount_is_refused_where_no_field_is_signed(name: str) -> None:
    order, _ = ORDERS[name]
    with pytest.raises(UnreadableAmount, match="negative"):
        get_profile(name).parse_order(order('"-2"'))


def test_bitfinex_amount_is_signed_by_side() -> None:
    order, _ = ORDERS["bitfinex"]
    (sell,) = get_profile("bitfinex").parse_order(order('"-0.5"'))
    assert (sell.side, sell.quantity) == ("sell", Decimal("0.5"))
    (buy,) = get_profile("bitfinex").parse_order(order("0.5"))
    assert (buy.side, buy.quantity) == ("buy", Decimal("0.5"))
    with pytest.raises(UnreadableAmount):
        get_profile("bitfinex").parse_order(order('"--0.5"'))


def test_okx_order_px_minus_one_means_at_market() -> None:
    request = httpx.Request(
        "POST",
        "https://www.okx.com/api/v5/trade/order-algo",
        content=b'{"instId":"BTC-USDT","tdMode":"cash","side":"sell","ordType":"trigger",'
        b'"sz":"1","triggerPx":"10","orderPx":"-1"}',
        headers=JSON,
    )
    (intent,) = get_profile("okx").parse_order(request)
    assert intent.price is None and intent.quantity == Decimal(1)
    with pytest.raises(UnreadableAmount, match="negative"):
        get_profile("okx").parse_order(
            httpx.Request(
                "POST",
                request.url,
                content=request.read().replace(b'"-1"', b'"1"').replace(b'"sz":"1"', b'"sz":"-1"'),
                headers=JSON,
            )
        )


@pytest.mark.parametrize("name", ["binance", "kraken"])
def test_form_exchanges_refuse_exponents_in_their_text(name: str) -> None:
    order, _ = ORDERS[name]
    for value in ("2e3", "1E2"):
        with pytest.raises(UnreadableAmount):
            get_profile(name).parse_order(order(value))
