"""OrderTools of Binance and OKX: client order ids added byte-exactly, lookups, last prices."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from keybroker.errors import InvalidInput
from keybroker.exchanges import get_profile
from keybroker.exchanges.base import OrderIntent, OrderTools

FORM = {"content-type": "application/x-www-form-urlencoded"}


def tools(name: str) -> OrderTools:
    found = get_profile(name).orders
    assert found is not None
    return found


def ids(*values: str):  # type: ignore[no-untyped-def]
    return iter(values).__next__


class TestBinance:
    def test_an_id_is_appended_to_the_form_body(self) -> None:
        body = b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.1"
        request = httpx.Request(
            "POST", "https://api.binance.com/api/v3/order", content=body, headers=FORM
        )
        added = tools("binance").add_client_order_id(request, ids("kbabc"))
        assert added.read() == body + b"&newClientOrderId=kbabc"
        assert added.headers["content-length"] == str(len(body) + len(b"&newClientOrderId=kbabc"))
        assert get_profile("binance").parse_order(added)[0].client_order_id == "kbabc"

    def test_an_id_goes_in_the_query_when_the_parameters_are_there(self) -> None:
        url = (
            "https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&side=SELL&type=MARKET&quantity=1"
        )
        added = tools("binance").add_client_order_id(httpx.Request("POST", url), ids("kb1"))
        assert added.url.query.endswith(b"&newClientOrderId=kb1")
        assert added.read() == b""

    def test_an_existing_id_and_other_endpoints_are_left_alone(self) -> None:
        own = httpx.Request(
            "POST",
            "https://api.binance.com/api/v3/order",
            content=b"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&newClientOrderId=mine",
            headers=FORM,
        )
        assert tools("binance").add_client_order_id(own, ids()) is own
        read = httpx.Request("GET", "https://api.binance.com/api/v3/account")
        assert tools("binance").add_client_order_id(read, ids()) is read

    def test_a_repeated_parameter_is_refused(self) -> None:
        request = httpx.Request(
            "POST",
            "https://api.binance.com/api/v3/order",
            content=b"symbol=BTCUSDT&symbol=ETHUSDT&side=BUY&type=MARKET&quantity=1",
            headers=FORM,
        )
        with pytest.raises(InvalidInput):
            tools("binance").add_client_order_id(request, ids("kb1"))

    def test_lookup_and_price_follow_the_product(self) -> None:
        spot = httpx.Request("POST", "https://api.binance.com/api/v3/order")
        futures = httpx.Request("POST", "https://fapi.binance.com/fapi/v1/order")
        intent = OrderIntent("BTCUSDT", client_order_id="kb1")
        assert str(tools("binance").lookup_request(spot, intent).url) == (  # type: ignore[union-attr]
            "https://api.binance.com/api/v3/order?symbol=BTCUSDT&origClientOrderId=kb1"
        )
        assert tools("binance").lookup_request(futures, intent).url.path == "/fapi/v1/order"  # type: ignore[union-attr]
        assert (
            tools("binance").price_request(futures, "BTCUSDT").url.path == "/fapi/v1/ticker/price"
        )  # type: ignore[union-attr]
        assert tools("binance").lookup_request(spot, OrderIntent("BTCUSDT")) is None

    def test_lookup_outcomes_and_prices_are_read(self) -> None:
        binance = tools("binance")
        assert binance.lookup_outcome(200, b'{"orderId": 1}') == "found"
        assert (
            binance.lookup_outcome(400, b'{"code": -2013, "msg": "Order does not exist."}')
            == "absent"
        )
        assert binance.lookup_outcome(503, b"oops") == "unknown"
        assert binance.parse_price(b'{"symbol": "BTCUSDT", "price": "61000.5"}') == Decimal(
            "61000.5"
        )
        assert binance.parse_price(b'{"price": "NaN"}') is None
        assert binance.parse_price(b"<html>") is None


class TestOkx:
    URL = "https://www.okx.com/api/v5/trade/batch-orders"

    def test_ids_are_written_into_each_object_keeping_every_other_byte(self) -> None:
        body = b'[{"instId":"BTC-USDT","sz":1.50, "note":"{x}"}, {"clOrdId":"own","instId":"A"},{}]'
        added = tools("okx").add_client_order_id(
            httpx.Request("POST", self.URL, content=body), ids("a1", "a2")
        )
        assert added.read() == (
            b'[{"clOrdId":"a1","instId":"BTC-USDT","sz":1.50, "note":"{x}"}, '
            b'{"clOrdId":"own","instId":"A"},{"clOrdId":"a2"}]'
        )
        assert [item["clOrdId"] for item in json.loads(added.read())] == ["a1", "own", "a2"]

    def test_an_empty_id_is_not_doubled(self) -> None:
        body = b'{"instId":"BTC-USDT","clOrdId":""}'
        request = httpx.Request("POST", "https://www.okx.com/api/v5/trade/order", content=body)
        assert tools("okx").add_client_order_id(request, ids()) is request

    def test_lookup_outcomes_and_prices(self) -> None:
        okx = tools("okx")
        request = httpx.Request("POST", "https://www.okx.com/api/v5/trade/order")
        lookup = okx.lookup_request(request, OrderIntent("BTC-USDT", client_order_id="kb1"))
        assert lookup is not None and lookup.url.query == b"instId=BTC-USDT&clOrdId=kb1"
        assert okx.lookup_outcome(200, b'{"code":"0","data":[{"ordId":"1"}]}') == "found"
        assert okx.lookup_outcome(200, b'{"code":"51603","data":[]}') == "absent"
        assert okx.lookup_outcome(200, b'{"code":"50001","data":[]}') == "unknown"
        assert okx.parse_price(b'{"code":"0","data":[{"last":"60000.1"}]}') == Decimal("60000.1")
        assert okx.parse_price(b'{"code":"0","data":[]}') is None
