"""Every adapter method on both exchanges, over loopback HTTP against the emulator."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest
from client_testkit import MARKETS, MakeAdapter, SkewedClock, Sleeps, StartEmulator

from keybroker import errors
from keybroker.client import ExchangeError, RetryPolicy
from keybroker.emulator import EmulatorConfig, FaultSpec
from keybroker.exchanges.base import KeyPermissions

EXCHANGES = ["binance", "okx"]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_every_method_answers_with_typed_results(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator(exchange)
    client = adapter(venue)
    symbol, _, quantity, _, resting_price = MARKETS[exchange]

    server_ms = client.server_time()
    assert abs(server_ms - time.time_ns() // 1_000_000) < 5_000

    candles = client.klines(symbol, "1h", limit=5)
    assert len(candles) == 5
    assert [c.open_time_ms for c in candles] == sorted(c.open_time_ms for c in candles)
    assert all(isinstance(c.close, Decimal) and c.low <= c.close <= c.high for c in candles)
    assert candles[-1].close == Decimal("60000") and not candles[-1].is_closed
    assert candles[0].is_closed
    start = candles[1].open_time_ms
    ranged = client.klines(symbol, "1h", limit=2, start=start, end=candles[2].close_time_ms)
    assert [c.open_time_ms for c in ranged] == [start, candles[2].open_time_ms]

    ticker = client.ticker(symbol)
    assert ticker.last == Decimal("60000")
    assert ticker.bid is not None and ticker.ask is not None and ticker.bid < ticker.ask

    book = client.order_book(symbol, depth=5)
    assert len(book.bids) == len(book.asks) == 5
    assert book.bids[0].price < book.asks[0].price
    assert [level.price for level in book.bids] == sorted(
        (lv.price for lv in book.bids), reverse=True
    )

    balances = client.balances()
    assert balances["USDT"].free == Decimal("100000") and balances["BTC"].total == Decimal("1")

    permissions = client.key_permissions()
    assert permissions == KeyPermissions(True, True, False, True)

    resting = client.place_order(symbol, "buy", "limit", quantity, resting_price)
    assert resting.client_order_id.startswith("kb") and resting.status in ("open", "accepted")
    assert (resting.side, resting.type, resting.price) == ("buy", "limit", Decimal(resting_price))
    assert client.balances()["USDT"].locked > 0

    fetched = client.get_order(symbol, client_order_id=resting.client_order_id)
    assert (fetched.order_id, fetched.status, fetched.quantity) == (
        resting.order_id,
        "open",
        Decimal(quantity),
    )
    assert client.get_order(symbol, order_id=resting.order_id) == fetched
    assert [o.order_id for o in client.open_orders(symbol)] == [resting.order_id]
    assert [o.order_id for o in client.open_orders()] == [resting.order_id]

    cancelled = client.cancel_order(symbol, order_id=resting.order_id)
    assert cancelled.status == "canceled" and cancelled.client_order_id == resting.client_order_id
    # Cancelling again: the order is not open, which is what was asked.
    assert client.cancel_order(symbol, client_order_id=resting.client_order_id).status == "canceled"
    assert client.open_orders(symbol) == []

    taken = client.place_order(symbol, "buy", "market", quantity, client_order_id="mine0001")
    filled = client.get_order(symbol, client_order_id="mine0001")
    assert (taken.order_id, filled.status) == (filled.order_id, "filled")
    assert filled.filled_quantity == Decimal(quantity)
    assert filled.average_price is not None and filled.average_price > Decimal("59000")

    with pytest.raises(ExchangeError) as missing:
        client.get_order(symbol, client_order_id="doesnotexist")
    assert missing.value.code == "OrderNotFound"
    with pytest.raises(ExchangeError) as missing_cancel:
        client.cancel_order(symbol, client_order_id="doesnotexist")
    assert missing_cancel.value.code == "OrderNotFound"

    placed = [o["client_order_id"] for o in venue.orders()]
    assert placed == [resting.client_order_id, "mine0001"]


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_unified_symbols_and_refusals_before_sending(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator(exchange)
    client = adapter(venue)
    assert client.ticker("BTC/USDT").last == Decimal("60000")
    before = len(venue.journal())
    for kwargs, words in (
        ({"side": "long", "type": "limit", "price": "1"}, "side"),
        ({"side": "buy", "type": "stop", "price": "1"}, "type"),
        ({"side": "buy", "type": "limit", "price": None}, "needs a price"),
        ({"side": "buy", "type": "market", "price": "1"}, "no price"),
        ({"side": "buy", "type": "limit", "price": "-1"}, "price"),
        ({"side": "buy", "type": "limit", "price": "1", "client_order_id": "x" * 40}, "client"),
    ):
        with pytest.raises(ExchangeError) as caught:
            client.place_order("BTC/USDT", quantity="0.001", **kwargs)  # type: ignore[arg-type]
        assert caught.value.code == "InvalidRequest" and words in str(caught.value)
    with pytest.raises(ExchangeError):
        client.place_order("BTC/USDT", "buy", "limit", float("nan"), "1")
    assert len(venue.journal()) == before  # nothing was sent


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_a_wrong_secret_is_authentication_failed_and_not_retried(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator(exchange)
    client = adapter(venue, secret="wrong-secret-not-real")
    client.server_time()
    before = len(venue.journal())
    with pytest.raises(ExchangeError) as caught:
        client.balances()
    error = caught.value
    assert error.code == "AuthenticationFailed" and not error.retryable
    assert isinstance(error.__cause__, errors.AuthenticationFailed)
    assert error.venue_code in (-1022, "50113")
    assert "wrong-secret" not in str(error)
    assert len(venue.journal()) == before + 1
    with pytest.raises(ExchangeError) as order:
        client.place_order(MARKETS[exchange][0], "buy", "market", MARKETS[exchange][2])
    assert order.value.code == "AuthenticationFailed"
    assert venue.orders() == []


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_a_skewed_local_clock_is_corrected_by_the_offset(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator(exchange)
    client = adapter(venue, clock=SkewedClock(-3_600_000))  # an hour behind
    symbol, _, quantity, _, price = MARKETS[exchange]
    assert client.balances()["USDT"].free == Decimal("100000")
    order = client.place_order(symbol, "buy", "limit", quantity, price)
    assert client.get_order(symbol, order_id=order.order_id).status == "open"
    accepted = [e for e in venue.journal() if e["api_key"] and e["accepted"]]
    assert len(accepted) == 3 and all(e["status"] == 200 for e in accepted)


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_a_clock_that_drifts_later_is_measured_again(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator(exchange)
    client = adapter(venue)
    symbol, _, quantity, _, price = MARKETS[exchange]
    client.balances()
    venue.advance_clock(120_000)  # the exchange's clock moves on; our offset is stale
    assert client.balances()["USDT"].free == Decimal("100000")
    venue.advance_clock(120_000)
    client.place_order(symbol, "buy", "limit", quantity, price, client_order_id="drift1")
    assert [o["client_order_id"] for o in venue.orders()] == ["drift1"]
    refused = [e for e in venue.journal() if e["code"] in ("-1021", "50102")]
    assert len(refused) == 2  # one stale read, one stale order; each re-measured and resent


@pytest.mark.parametrize("exchange", EXCHANGES)
def test_reads_retry_5xx_three_times_with_growing_jittered_waits(
    exchange: str, emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    venue = emulator(exchange, EmulatorConfig(faults=FaultSpec.parse("error5xx=1")))
    sleeps = Sleeps()
    client = adapter(venue, sleep=sleeps, retry=RetryPolicy(backoff=0.2))
    with pytest.raises(ExchangeError) as caught:
        client.ticker(MARKETS[exchange][0])
    assert caught.value.code == "ExchangeUnavailable" and caught.value.retryable
    assert isinstance(caught.value.__cause__, errors.ExchangeUnavailable)
    assert len(venue.journal()) == 3
    assert len(sleeps.waits) == 2
    assert 0.1 <= sleeps.waits[0] <= 0.2 and 0.2 <= sleeps.waits[1] <= 0.4


def test_timeouts_are_network_errors_and_a_hung_order_is_never_duplicated(
    emulator: StartEmulator, adapter: MakeAdapter
) -> None:
    faults = FaultSpec.parse("timeout=1,hang=5s,scope=orders")
    venue = emulator("binance", EmulatorConfig(faults=faults))
    client = adapter(
        venue,
        timeout=0.3,
        request_window_ms=100,
        retry=RetryPolicy(backoff=0.01, settle_margin=0.01),
    )
    with pytest.raises(ExchangeError) as caught:
        client.place_order("BTCUSDT", "buy", "market", "0.0002", client_order_id="hung1")
    error = caught.value
    assert error.code == "NetworkError" and error.retryable and not error.outcome_unknown
    assert error.client_order_id == "hung1" and "not placed after 3 tries" in str(error)
    assert isinstance(error.__cause__, errors.NetworkError)
    entries = venue.journal()
    # (The emulator journals a hung request with kind "public", so match on the path.)
    posts = [e for e in entries if e["method"] == "POST" and e["path"] == "/api/v3/order"]
    assert [e["fault"] for e in posts] == ["timeout"] * 3
    # Each lost order was looked up once before a resend: the 0.3 s timeout outlasted its
    # 100 ms window, so the exchange could no longer act on it and one lookup settles it.
    assert len([e for e in entries if e["path"] == "/api/v3/order" and e["method"] == "GET"]) == 3
    assert venue.orders() == []


def test_signed_urls_in_httpx_log_lines_lose_their_signature(
    emulator: StartEmulator, adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    client = adapter(emulator("binance"))
    client.open_orders("BTCUSDT")  # a signed GET: the signature rides in the query string
    lines = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    signed = [line for line in lines if "openOrders" in line]
    assert signed and all("signature=<redacted>" in line for line in signed)
