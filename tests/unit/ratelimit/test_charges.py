"""The profiles' rate-limit tables, and what a request is charged against them."""

from __future__ import annotations

import json

import httpx
import pytest

from keybroker.errors import InvalidInput
from keybroker.exchanges import PROFILES, get_profile
from keybroker.exchanges.base import ExchangeProfile, RateLimit, normalize_path
from keybroker.ratelimit import Charge, charges_for, host_prefix, request_prefix


def _charges(
    exchange: str, method: str, url: str, *, body: bytes = b"", account: str = "main", **kw: object
) -> list[Charge]:
    profile = get_profile(exchange)
    request = httpx.Request(method, url, content=body)
    classified = profile.classify(request)
    intents = kw.pop("intents", None)
    if intents is True:
        kw["intents"] = profile.parse_order(request)
    return charges_for(
        profile,
        classified,
        host=httpx.URL(url).netloc.decode(),
        account=account,
        environment="production",
        **kw,  # type: ignore[arg-type]
    )


def _by_name(charges: list[Charge]) -> dict[str, Charge]:
    return {charge.limit.name: charge for charge in charges}


# -- the tables ---------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", PROFILES.values(), ids=lambda p: p.name)
def test_every_profile_has_limits_and_their_endpoints_exist(profile: ExchangeProfile) -> None:
    assert profile.rate_limits
    catalogued = {f"{method} {pattern}" for method, pattern in profile.catalogue.endpoints}
    for limit in profile.rate_limits:
        named = [*limit.endpoints, *limit.except_endpoints]
        named += [endpoint for endpoint, _ in limit.endpoint_capacities]
        for endpoint in named:
            method, path = endpoint.split(" ", 1)
            # Uncatalogued public paths are matched in their normalised spelling.
            assert endpoint in catalogued or path == normalize_path(path), endpoint
            assert method in {"GET", "POST", "PUT", "DELETE"}
        assert all(capacity > 0 for _, capacity in limit.endpoint_capacities)


@pytest.mark.parametrize("profile", PROFILES.values(), ids=lambda p: p.name)
def test_usage_headers_name_limits_the_profile_has(profile: ExchangeProfile) -> None:
    names = {limit.name for limit in profile.rate_limits}
    if profile.read_usage is None:
        return
    headers = {
        "X-MBX-USED-WEIGHT-1M": "10",
        "X-MBX-ORDER-COUNT-10S": "1",
        "X-MBX-ORDER-COUNT-1D": "1",
        "X-MBX-ORDER-COUNT-1M": "1",
        "X-SAPI-USED-IP-WEIGHT-1M": "1",
        "X-Bapi-Limit": "20",
        "X-Bapi-Limit-Status": "15",
        "x-ratelimit-limit": "30",
        "x-ratelimit-remaining": "20",
    }
    assert set(profile.read_usage(headers)) <= names


def test_binance_spot_weight_defaults_to_seed_001s_1200_a_minute() -> None:
    limits = {(limit.name, limit.paths): limit for limit in get_profile("binance").rate_limits}
    spot = limits[("REQUEST_WEIGHT", ("/api/",))]
    assert (spot.capacity, spot.per_seconds, spot.scope, spot.fixed_window) == (
        1200,
        60,
        "ip",
        True,
    )
    assert limits[("REQUEST_WEIGHT", ("/fapi/", "/futures/"))].capacity == 2400
    assert limits[("ORDERS_10S", ("/api/",))].capacity == 100
    assert limits[("ORDERS_1D", ("/api/",))].capacity == 200_000


def test_rate_limits_refuse_names_that_would_break_keys() -> None:
    with pytest.raises(InvalidInput):
        RateLimit("A:B", 1, 1, "requests", "ip")
    with pytest.raises(InvalidInput):
        RateLimit("A", 0, 1, "requests", "ip")


# -- Binance ------------------------------------------------------------------------------------
def test_a_binance_spot_order_spends_ip_weight_and_the_accounts_order_counts() -> None:
    charges = _charges(
        "binance",
        "POST",
        "https://api.binance.com/api/v3/order",
        body=b"symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1&timeInForce=GTC",
    )
    by_name = _by_name(charges)
    assert set(by_name) == {"REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS_10S", "ORDERS_1D"}
    assert by_name["REQUEST_WEIGHT"].key == "binance:production:api.binance.com:REQUEST_WEIGHT"
    assert by_name["ORDERS_10S"].key == "binance:production:api.binance.com:main:ORDERS_10S"
    assert all(charge.amount == 1 and charge.host == "api.binance.com" for charge in charges)
    assert request_prefix(charges) == "binance:production:api.binance.com:main"
    assert (
        host_prefix("binance", "production", "api.binance.com") == by_name["REQUEST_WEIGHT"].owner
    )


def test_binance_weights_that_depend_on_parameters_are_charged() -> None:
    depth = _charges(
        "binance", "GET", "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5000"
    )
    assert _by_name(depth)["REQUEST_WEIGHT"].amount == 250
    # A read spends no order count, and other accounts share the IP's weight.
    other = _charges("binance", "GET", "https://api.binance.com/api/v3/account", account="other")
    assert set(_by_name(other)) == {"REQUEST_WEIGHT", "RAW_REQUESTS"}
    assert _by_name(other)["REQUEST_WEIGHT"].key == _by_name(depth)["REQUEST_WEIGHT"].key


def test_a_binance_futures_order_spends_order_counts_only() -> None:
    charges = _charges(
        "binance",
        "POST",
        "https://fapi.binance.com/fapi/v1/order",
        body=b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1",
    )
    by_name = _by_name(charges)
    assert set(by_name) == {"ORDERS_10S", "ORDERS_1M"}  # a new order weighs 0 there
    assert by_name["ORDERS_10S"].limit.capacity == 300
    batch = _charges(
        "binance",
        "POST",
        "https://fapi.binance.com/fapi/v1/batchOrders",
        body=b"batchOrders="
        + json.dumps(
            [{"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}] * 3
        ).encode(),
        intents=True,
    )
    assert _by_name(batch)["ORDERS_10S"].amount == 3
    assert _by_name(batch)["REQUEST_WEIGHT"].limit.capacity == 2400


def test_a_heavy_sapi_read_is_a_uid_endpoint_with_its_own_budget() -> None:
    charges = _charges("binance", "GET", "https://api.binance.com/sapi/v1/capital/withdraw/history")
    (sapi,) = charges
    assert sapi.amount == 18_000
    assert sapi.limit.capacity == 180_000
    assert sapi.key.endswith(":main:GET /sapi/v1/capital/withdraw/history:SAPI_WEIGHT")
    (light,) = _charges("binance", "GET", "https://api.binance.com/sapi/v1/account/apiRestrictions")
    assert light.limit.capacity == 12_000


def test_overrides_replace_capacities_the_most_specific_winning() -> None:
    url = "https://api.binance.com/api/v3/ticker/price?symbol=BTCUSDT"
    key = "binance:production:api.binance.com:REQUEST_WEIGHT"
    for overrides, expected in [
        ({"REQUEST_WEIGHT": 6000}, 6000),
        ({"binance:REQUEST_WEIGHT": 5000, "REQUEST_WEIGHT": 6000}, 5000),
        ({key: 4000, "binance:REQUEST_WEIGHT": 5000}, 4000),
        ({"okx:REQUEST_WEIGHT": 1}, 1200),
    ]:
        charges = _charges("binance", "GET", url, limit_overrides=overrides)
        assert _by_name(charges)["REQUEST_WEIGHT"].limit.capacity == expected
    # A capacity of zero switches the budget off.
    charges = _charges("binance", "GET", url, limit_overrides={"RAW_REQUESTS": 0})
    assert set(_by_name(charges)) == {"REQUEST_WEIGHT"}


# -- OKX ----------------------------------------------------------------------------------------
def test_okx_orders_are_limited_per_instrument_and_batches_count_orders() -> None:
    orders = [
        {
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "sz": "1",
            "px": "1",
        },
        {
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "sz": "1",
            "px": "2",
        },
        {
            "instId": "ETH-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "sz": "1",
            "px": "1",
        },
    ]
    charges = _charges(
        "okx",
        "POST",
        "https://www.okx.com/api/v5/trade/batch-orders",
        body=json.dumps(orders).encode(),
        intents=True,
    )
    instrument = {c.key: c for c in charges if c.limit.name == "INSTRUMENT"}
    base = "okx:production:www.okx.com:main:POST /api/v5/trade/batch-orders"
    assert {key: c.amount for key, c in instrument.items()} == {
        f"{base}:BTC-USDT:INSTRUMENT": 2,
        f"{base}:ETH-USDT:INSTRUMENT": 1,
    }
    assert all(c.limit.capacity == 300 for c in instrument.values())
    assert _by_name(charges)["SUB_ACCOUNT_ORDERS"].amount == 3
    assert "ENDPOINT" not in _by_name(charges)


def test_okx_reads_are_limited_per_endpoint_private_per_user_public_per_ip() -> None:
    (balance,) = _charges("okx", "GET", "https://www.okx.com/api/v5/account/balance")
    assert balance.limit.capacity == 10
    assert balance.key == "okx:production:www.okx.com:main:GET /api/v5/account/balance:ENDPOINT"
    (ticker,) = _charges("okx", "GET", "https://www.okx.com/api/v5/market/ticker?instId=BTC-USDT")
    assert ticker.limit.capacity == 20
    assert ticker.key == "okx:production:www.okx.com:GET /api/v5/market/ticker:ENDPOINT"
    (other,) = _charges("okx", "GET", "https://www.okx.com/api/v5/market/ticker", account="b")
    assert other.key == ticker.key
    (unlisted,) = _charges("okx", "GET", "https://www.okx.com/api/v5/market/platform-24-volume")
    assert unlisted.limit.capacity == 5


# -- Kraken, Bybit, Coinbase and the rest -------------------------------------------------------
def test_kraken_orders_spend_the_pairs_trading_counter_not_the_call_counter() -> None:
    order = _charges(
        "kraken",
        "POST",
        "https://api.kraken.com/0/private/AddOrder",
        body=b"nonce=1&ordertype=limit&type=buy&volume=1&pair=XBTUSD&price=1",
        intents=True,
    )
    (trading,) = order
    assert trading.limit.name == "TRADING" and trading.limit.decaying
    assert trading.key == "kraken:production:api.kraken.com:main:XBTUSD:TRADING"
    (ledger,) = _charges(
        "kraken", "POST", "https://api.kraken.com/0/private/Ledgers", body=b"nonce=1"
    )
    assert (ledger.limit.name, ledger.amount, ledger.limit.capacity) == ("CALLS", 2, 15)
    assert _charges("kraken", "GET", "https://api.kraken.com/0/public/Ticker?pair=XBTUSD") == []


def test_bybit_counts_private_endpoints_per_second_and_every_request_per_ip() -> None:
    charges = _charges(
        "bybit",
        "POST",
        "https://api.bybit.com/v5/order/create",
        body=b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"1"}',
    )
    by_name = _by_name(charges)
    assert (by_name["ENDPOINT"].limit.capacity, by_name["ENDPOINT"].limit.per_seconds) == (10, 1)
    assert (by_name["IP"].limit.capacity, by_name["IP"].limit.per_seconds) == (600, 5)
    public = _charges("bybit", "GET", "https://api.bybit.com/v5/market/tickers?category=spot")
    assert set(_by_name(public)) == {"IP"}


def test_coinbase_tells_private_public_and_retail_budgets_apart() -> None:
    private = _charges("coinbase", "GET", "https://api.coinbase.com/api/v3/brokerage/accounts")
    public = _charges(
        "coinbase", "GET", "https://api.coinbase.com/api/v3/brokerage/market/products"
    )
    retail = _charges("coinbase", "GET", "https://api.coinbase.com/v2/accounts")
    assert set(_by_name(private)) == {"PRIVATE"}
    assert set(_by_name(public)) == {"PUBLIC"}
    assert set(_by_name(retail)) == {"RETAIL"}
    assert _by_name(retail)["RETAIL"].limit.per_seconds == 3600


@pytest.mark.parametrize(
    "exchange, url, body, name",
    [
        ("coinbase-exchange", "https://api.exchange.coinbase.com/accounts", b"", "PRIVATE"),
        ("bitfinex", "https://api.bitfinex.com/v2/auth/r/wallets", b"{}", "REQUESTS"),
        ("poloniex", "https://api.poloniex.com/accounts/balances", b"", "REQUEST_WEIGHT"),
        ("bittrex", "https://api.bittrex.com/v3/balances", b"", "REQUESTS"),
    ],
)
def test_the_other_exchanges_charge_their_one_private_budget(
    exchange: str, url: str, body: bytes, name: str
) -> None:
    method = "POST" if exchange == "bitfinex" else "GET"
    assert set(_by_name(_charges(exchange, method, url, body=body))) == {name}


# -- usage headers ------------------------------------------------------------------------------
def test_binance_usage_headers_are_read_in_any_case_and_garbage_is_skipped() -> None:
    read = get_profile("binance").read_usage
    assert read is not None
    assert read({"x-mbx-used-weight-1m": "37", "X-MBX-ORDER-COUNT-10S": "3"}) == {
        "REQUEST_WEIGHT": 37.0,
        "ORDERS_10S": 3.0,
    }
    assert read(httpx.Headers({"X-MBX-USED-WEIGHT-1M": "12"})) == {"REQUEST_WEIGHT": 12.0}
    for bad in ("", "nan", "-3", "inf", "lots"):
        assert read({"X-MBX-USED-WEIGHT-1M": bad}) == {}
    assert read({"X-MBX-USED-WEIGHT-1S": "5", "Content-Type": "application/json"}) == {}


def test_bybit_and_coinbase_usage_is_the_limit_minus_what_is_left() -> None:
    bybit, coinbase = get_profile("bybit").read_usage, get_profile("coinbase").read_usage
    assert bybit is not None and coinbase is not None
    assert bybit({"X-Bapi-Limit": "20", "X-Bapi-Limit-Status": "15"}) == {"ENDPOINT": 5.0}
    assert bybit({"X-Bapi-Limit": "20"}) == {}
    assert coinbase({"x-ratelimit-limit": "30", "x-ratelimit-remaining": "29"}) == {"PRIVATE": 1.0}
    assert coinbase({"x-ratelimit-limit": "10000", "x-ratelimit-remaining": "9990"}) == {
        "RETAIL": 10.0
    }
