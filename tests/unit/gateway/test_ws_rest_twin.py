"""A WebSocket frame's REST twin, carried as parts: the gateway builds from them the very
request that ``httpx`` built from the twin's URL before, so what is judged is unchanged;
and the frame signed is rebuilt from the judged request, the bot's params intact."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, quote

import httpx
import pytest

from keybroker.exchanges import binance, bybit, okx
from keybroker.exchanges.base import RestTwin, WebSocketSupport
from keybroker.gateway.outgoing import request_for
from keybroker.gateway.websocket import Signed, id_key, judged_call, masked_frame, query_params
from keybroker.model import Credential
from keybroker.secret import Secret

CREDENTIAL = Credential(
    "okx-test", "okx", "fake-okx-key", Secret("FAKE-okx-secret"), Secret("FAKE-pass")
)
AWKWARD = "a b+c&d=e%f/g:h?i#j\u00fc\u20ac"  # every character a query must escape, and more
ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": 0.001,
    "price": "20000",
    "newClientOrderId": "my.bot:1/a_b-c",
    "selfTradePreventionMode": AWKWARD,
    "strategyType": "",
    "newOrderRespType": True,
}
FRAMES: list[tuple[WebSocketSupport, str, str]] = [
    (
        binance.WEBSOCKET,
        "https://api.binance.com",
        json.dumps({"id": "o1", "method": "order.place", "params": ORDER}),
    ),
    (
        binance.WEBSOCKET,
        "http://127.0.0.1:8080/",
        '{"id":2,"method":"order.cancel","params":{"symbol":"BTCUSDT","orderId":12}}',
    ),
    (binance.WEBSOCKET, "https://api.binance.com", '{"id":3,"method":"ping"}'),
    (
        okx.WEBSOCKET,
        "https://www.okx.com",
        '{"id":"4","op":"order","args":[{"instId":"BTC-USDT","sz":0.5,"clOrdId":"'
        + AWKWARD
        + '"}]}',
    ),
    (okx.WEBSOCKET, "https://www.okx.com", '{"op":"subscribe","args":[{"channel":"orders"}]}'),
    (
        bybit.WEBSOCKET,
        "https://api-demo.bybit.com",
        '{"reqId":"5","op":"order.create","args":[{"category":"spot","symbol":"BTCUSDT",'
        '"side":"Buy","orderType":"Limit","qty":"0.001","price":"20000"}]}',
    ),
    (bybit.WEBSOCKET, "https://api-demo.bybit.com", '{"op":"subscribe","args":["order"]}'),
]


def judged(twin: RestTwin, base: str) -> httpx.Request:
    """What the pipeline builds from the twin (``outgoing_request``, as for REST)."""
    headers = [("content-type", twin.content_type)] if twin.content_type else []
    return request_for(twin.method, base.rstrip("/"), twin.path, twin.query, headers, twin.content)


def seen(request: httpx.Request) -> tuple[object, ...]:
    return (
        request.method,
        str(request.url),
        request.url.raw_path,
        request.content,
        request.headers.get("content-type"),
    )


@pytest.mark.parametrize(("support", "base", "text"), FRAMES)
def test_the_twin_builds_the_request_httpx_builds_from_its_url(
    support: WebSocketSupport, base: str, text: str
) -> None:
    twin = support.read_call(text).rest
    assert twin.path.startswith("/") and twin.path.isascii() and twin.query.isascii()
    assert seen(judged(twin, base)) == seen(twin.request(base))
    assert RestTwin.of(twin.request(base)) == twin


def test_the_signed_call_carries_the_bots_params_and_the_gateways_client_order_id() -> None:
    params = {k: v for k, v in ORDER.items() if k != "newClientOrderId"}
    call = binance.ws_read_call(json.dumps({"id": "o1", "method": "order.place", "params": params}))
    request = judged(call.rest, "https://api.binance.com")
    with_id = binance.add_client_order_id(request, lambda: "kbGATEWAYID")
    signed = judged_call(call, with_id)
    assert signed.params == {**call.params, "newClientOrderId": "kbGATEWAYID"}
    assert signed.params["selfTradePreventionMode"] == AWKWARD
    assert signed.params["strategyType"] == "" and signed.params["quantity"] == "0.001"
    assert (signed.request_id, signed.method) == ("o1", "order.place")
    cancel = binance.ws_read_call(FRAMES[1][2])
    assert judged_call(cancel, judged(cancel.rest, "https://x.test")).params == cancel.params
    ping = binance.ws_read_call(FRAMES[2][2])
    assert judged_call(ping, judged(ping.rest, "https://x.test")).params == {}


def test_a_body_twin_is_signed_from_the_judged_body() -> None:
    call = okx.ws_read_call(FRAMES[3][2])
    request = judged(call.rest, "https://www.okx.com")
    signed = json.loads(okx.ws_sign_call(judged_call(call, request), CREDENTIAL, 0))
    assert signed == {"op": "order", "id": "4", "args": [json.loads(call.rest.content)]}
    assert signed["args"][0]["clOrdId"] == AWKWARD and signed["args"][0]["sz"] == "0.5"


QUERIES = [
    "",
    "a=1",
    "a",
    "a=",
    "=x",
    "a==b",
    "&&a=1&&b=2&",
    "a=1&a=2",
    "a=1;b=2",
    "symbol=BTCUSDT&price=20000&newClientOrderId=kb0123",
    "a=b+c&d=%26%3D",
    "k%20ey=v%2Fal&x=%zz",
    "a=%C3%BC%E2%82%AC+%2B",
]


@pytest.mark.parametrize("query", QUERIES)
def test_query_params_read_a_query_exactly_as_parse_qsl_does(query: str) -> None:
    assert query_params(query) == dict(parse_qsl(query, keep_blank_values=True))


def test_a_binance_twins_query_escapes_each_value_as_quote_does() -> None:
    """Values with nothing to escape are taken as they are; every other is quoted."""
    values = ["BTCUSDT", "0.001", "a_b-c.d~e", "", AWKWARD, "a+b", "100%", "x y", "ü"]
    params = {f"p{i}": value for i, value in enumerate(values)}
    call = binance.ws_read_call(json.dumps({"id": 1, "method": "order.place", "params": params}))
    expected = "&".join(f"{name}={quote(value, safe='')}" for name, value in params.items())
    assert call.rest.query == expected
    assert query_params(call.rest.query) == params


def test_answers_are_matched_by_equal_ids_and_never_across_json_types() -> None:
    ids: list[object] = [1, "1", 1.5, True, None, "true", {"a": 1, "b": [2]}, [1, "1"], 0, ""]
    keys = [id_key(value) for value in ids]
    assert len(set(map(repr, keys))) == len(ids)  # each id its own key
    for value, key in zip(ids, keys, strict=True):
        assert id_key(json.loads(json.dumps(value))) == key  # the same id read back
    assert id_key({"b": [2], "a": 1}) == id_key({"a": 1, "b": [2]})
    assert len({id_key(1), id_key("1"), id_key(True), id_key(1.0)}) == 4


def test_a_signed_frame_shows_no_signature_in_its_repr() -> None:
    call = binance.ws_read_call(FRAMES[0][2])
    binance_key = Credential("bn", "binance", "FAKE-api-key-123", Secret("FAKE-secret-456"))
    signed = Signed(text := binance.ws_sign_call(call, binance_key, 0), masked_frame(text))
    signature = json.loads(signed.text)["params"]["signature"]
    shown = repr(signed) + str(signed)
    assert signature not in shown and "FAKE-api-key-123" not in shown
