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


class TestOpenOrdersAndPositions:
    """The queries and readers behind ``max_open_orders`` and ``max_position_notional``."""

    def test_binance_asks_for_every_open_order_on_the_product_the_order_used(self) -> None:
        binance = tools("binance")
        assert binance.open_orders_request is not None
        spot = httpx.Request("POST", "https://api.binance.com/api/v3/order?symbol=BTCUSDT")
        query = binance.open_orders_request(spot)
        assert query is not None and str(query.url) == "https://api.binance.com/api/v3/openOrders"
        usdm = httpx.Request("POST", "https://fapi.binance.com/fapi/v1/order")
        query = binance.open_orders_request(usdm)
        assert query is not None and query.url.path == "/fapi/v1/openOrders"
        assert get_profile("binance").classify(query).kind == "order_read"
        sapi = httpx.Request("POST", "https://api.binance.com/sapi/v1/margin/order")
        assert binance.open_orders_request(sapi) is None
        assert binance.count_open_orders is not None
        assert binance.count_open_orders(b'[{"orderId": 1}, {"orderId": 2}]') == 2
        assert binance.count_open_orders(b"[]") == 0
        assert binance.count_open_orders(b'{"code": -1021}') is None
        assert binance.count_open_orders(b"<html>") is None

    def test_binance_positions_exist_on_usdm_only_and_both_sides_count(self) -> None:
        binance = tools("binance")
        assert binance.position_request is not None and binance.position_notional is not None
        spot = httpx.Request("POST", "https://api.binance.com/api/v3/order")
        assert binance.position_request(spot, "BTCUSDT") is None
        usdm = httpx.Request("POST", "https://fapi.binance.com/fapi/v1/order")
        query = binance.position_request(usdm, "BTCUSDT")
        assert query is not None and str(query.url).endswith("/fapi/v2/positionRisk?symbol=BTCUSDT")
        hedge = json.dumps(
            [
                {"symbol": "BTCUSDT", "positionSide": "LONG", "notional": "600.5"},
                {"symbol": "BTCUSDT", "positionSide": "SHORT", "notional": "-200"},
                {"symbol": "ETHUSDT", "positionSide": "BOTH", "notional": "999"},
            ]
        ).encode()
        assert binance.position_notional(hedge, "BTCUSDT") == Decimal("800.5")
        assert binance.position_notional(b"[]", "BTCUSDT") == 0
        assert binance.position_notional(b'[{"symbol": "BTCUSDT"}]', "BTCUSDT") is None
        assert binance.position_notional(b'{"code": -2015}', "BTCUSDT") is None

    def test_okx_counts_a_page_of_pending_orders_and_knows_a_full_page_is_not_all(self) -> None:
        okx = tools("okx")
        assert okx.open_orders_request is not None and okx.count_open_orders is not None
        order = httpx.Request("POST", "https://www.okx.com/api/v5/trade/order")
        query = okx.open_orders_request(order)
        assert query is not None
        assert str(query.url) == "https://www.okx.com/api/v5/trade/orders-pending?limit=100"
        page = {"code": "0", "msg": "", "data": [{"ordId": str(i)} for i in range(3)]}
        assert okx.count_open_orders(json.dumps(page).encode()) == 3
        full = {"code": "0", "msg": "", "data": [{"ordId": str(i)} for i in range(100)]}
        assert okx.count_open_orders(json.dumps(full).encode()) is None
        assert okx.count_open_orders(b'{"code": "50011", "data": []}') is None

    def test_okx_positions_exist_on_swaps_and_futures(self) -> None:
        okx = tools("okx")
        assert okx.position_request is not None and okx.position_notional is not None
        order = httpx.Request("POST", "https://www.okx.com/api/v5/trade/order")
        assert okx.position_request(order, "BTC-USDT") is None
        for symbol in ("BTC-USDT-SWAP", "BTC-USD-250328"):
            query = okx.position_request(order, symbol)
            assert query is not None and query.url.params["instId"] == symbol
            assert query.url.path == "/api/v5/account/positions"
        answer = {
            "code": "0",
            "data": [
                {"instId": "BTC-USDT-SWAP", "posSide": "long", "notionalUsd": "1500.25"},
                {"instId": "BTC-USDT-SWAP", "posSide": "short", "notionalUsd": "-100"},
                {"instId": "ETH-USDT-SWAP", "posSide": "net", "notionalUsd": "7"},
            ],
        }
        body = json.dumps(answer).encode()
        assert okx.position_notional(body, "BTC-USDT-SWAP") == Decimal("1600.25")
        assert okx.position_notional(b'{"code": "0", "data": []}', "BTC-USDT-SWAP") == 0
        assert okx.position_notional(b'{"code": "50001", "data": []}', "BTC-USDT-SWAP") is None
