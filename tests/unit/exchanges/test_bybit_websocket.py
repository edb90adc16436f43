"""Bybit's WebSocket section (profile section 9): auth frame, trade frames, refusals, routing.

The auth signature is recomputed here with hashlib/hmac from Bybit's documented rule
(hex HMAC-SHA256 of "GET/realtime" + expires), not with keybroker's signer.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from keybroker.errors import InvalidInput
from keybroker.exchanges import bybit, okx
from keybroker.exchanges.base import RestTwin, WsCall
from keybroker.model import Credential
from keybroker.secret import Secret

SECRET = "test-bybit-ws-secret-not-real"
CREDENTIAL = Credential(
    name="bb", exchange="bybit", api_key="test-bybit-ws-key", secret=Secret(SECRET)
)
NOW = 1_795_000_000_000
BASE = "https://api-demo.bybit.com"  # the REST host a twin is judged on
ORDER = {
    "category": "spot",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "orderType": "Limit",
    "qty": "0.001",
    "price": "50000",
}
SUPPORT = bybit.WEBSOCKET


def trade(op: str = "order.create", **extra: object) -> str:
    frame = {
        "reqId": "r1",
        "header": {"X-BAPI-TIMESTAMP": "1", "X-BAPI-RECV-WINDOW": "8000"},
        "op": op,
        "args": [ORDER],
        **extra,
    }
    return json.dumps(frame)


def test_the_auth_frame_signs_get_realtime_and_expires_with_the_secret() -> None:
    frame = json.loads(bybit.ws_auth(CREDENTIAL, NOW))
    api_key, expires, signature = frame["args"]
    assert frame["op"] == "auth" and api_key == "test-bybit-ws-key"
    assert expires == NOW + 10_000  # in the future, as Bybit requires (ccxt: now + 10 s)
    message = f"GET/realtime{expires}".encode()
    assert signature == hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()


def test_auth_answers_of_both_streams_are_read() -> None:
    assert bybit.ws_auth_answer('{"success":true,"ret_msg":"","op":"auth","conn_id":"x"}')
    assert bybit.ws_auth_answer('{"retCode":0,"retMsg":"OK","op":"auth","connId":"x"}')
    assert bybit.ws_auth_answer('{"retCode":10004,"retMsg":"bad","op":"auth"}') is False
    assert bybit.ws_auth_answer('{"success":false,"ret_msg":"x","op":"auth"}') is False
    assert bybit.ws_auth_answer('{"topic":"order","data":[]}') is None


def test_a_trade_op_reads_as_its_rest_twin_and_is_rebuilt_from_the_judged_body() -> None:
    call = bybit.ws_read_call(trade())
    assert call.request_id == "r1" and call.method == "order.create"
    assert (call.rest.method, call.rest.path) == ("POST", "/v5/order/create")
    twin = call.rest.request(BASE)
    assert bybit.classify(twin).kind == "order_place"
    judged = RestTwin.of(bybit.add_client_order_id(twin, lambda: "kbGATEWAYID"))
    sent = json.loads(
        bybit.ws_sign_call(
            WsCall(call.request_id, call.method, {}, judged, call.frame), CREDENTIAL, NOW
        )
    )
    assert sent["reqId"] == "r1" and sent["op"] == "order.create"
    assert sent["header"] == {"X-BAPI-TIMESTAMP": str(NOW), "X-BAPI-RECV-WINDOW": "8000"}
    assert sent["args"] == [{"orderLinkId": "kbGATEWAYID", **ORDER}]
    assert SECRET not in json.dumps(sent) and CREDENTIAL.api_key not in json.dumps(sent)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (trade(args=[ORDER, ORDER]), "exactly one"),
        (trade(header={"X-BAPI-RECV-WINDOW": "1e9"}), "RECV-WINDOW"),
        (trade(op="order.create-batch"), "not catalogued"),
        (json.dumps({"op": "subscribe", "args": ["greeks"]}), "not catalogued"),
        (json.dumps({"op": "subscribe", "args": [{"topic": "order"}]}), "topic"),
        ("not json", "JSON object"),
    ],
)
def test_frames_the_profile_cannot_read_are_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        bybit.ws_read_call(text)


def test_a_private_subscription_reads_the_account_it_streams() -> None:
    text = json.dumps({"req_id": 7, "op": "subscribe", "args": ["order.spot", "execution"]})
    call = bybit.ws_read_call(text)
    assert call.request_id == "7"  # one text form, whatever the upstream echoes
    assert bybit.classify(call.rest.request(BASE)).kind == "order_read"
    sent = json.loads(bybit.ws_sign_call(call, CREDENTIAL, NOW))
    assert sent == {"op": "subscribe", "args": ["order.spot", "execution"], "req_id": "7"}


def test_refusals_take_the_shape_of_the_stream_they_answer() -> None:
    assert SUPPORT.refusal is bybit.ws_refusal
    trade_refusal = json.loads(bybit.ws_refusal(trade(), "r1", 403, "policy_denied", "no"))
    assert trade_refusal == {"reqId": "r1", "retCode": 10005, "retMsg": "no", "op": "order.create"}
    limited = json.loads(bybit.ws_refusal(trade(), "r1", 429, "rate_limited", "slow"))
    assert limited["retCode"] == 10006
    private = json.loads(
        bybit.ws_refusal('{"req_id":"s","op":"subscribe","args":["x"]}', "s", 400, "bad", "no")
    )
    assert private == {
        "success": False,
        "ret_msg": "no",
        "conn_id": "keybroker",
        "req_id": "s",
        "op": "subscribe",
    }


def test_answers_are_matched_by_req_id_and_topic_data_is_not_an_answer() -> None:
    assert bybit.ws_response_id('{"reqId":"r1","retCode":0,"op":"order.create"}') == "r1"
    assert bybit.ws_response_id('{"success":true,"req_id":3,"op":"subscribe"}') == "3"
    assert bybit.ws_response_id('{"id":"e1","topic":"order","data":[]}') is None
    assert bybit.ws_answer_status('{"reqId":"r1","retCode":170131,"op":"order.create"}') == (
        None,
        "170131",
    )


def test_a_bots_own_auth_and_pings_are_answered_locally() -> None:
    auth = json.loads(bybit.ws_local_answer('{"op":"auth","args":["k",1,"s"],"reqId":"a"}') or "")
    assert auth["success"] is True and auth["retCode"] == 0 and auth["reqId"] == "a"
    pong = json.loads(bybit.ws_local_answer('{"op":"ping","req_id":"p"}') or "")
    assert pong["ret_msg"] == "pong" and pong["req_id"] == "p"
    assert bybit.ws_local_answer(trade()) is None


def test_routing_kinds_hosts_and_topics_per_category() -> None:
    paths = ("/v5/public/linear", "/v5/private?max_active_time=1m", "/v5/trade", "/v5/x", "/ws")
    assert [bybit.ws_kind(p) for p in paths] == ["public", "api", "api", None, None]
    assert bybit.ws_url("/v5/trade", "testnet") == "wss://stream-testnet.bybit.com/v5/trade"
    assert (
        bybit.ws_override_url("https://api-demo.bybit.com", "/v5/private")
        == "wss://stream-demo.bybit.com/v5/private"
    )
    assert bybit.ws_override_url("http://127.0.0.1:9", "/v5/trade") == "ws://127.0.0.1:9/v5/trade"
    name = bybit.ws_stream_in("/v5/public/linear", "tickers.BTCUSDT")
    assert name != bybit.ws_stream_in("/v5/public/spot", "tickers.BTCUSDT")
    assert bybit.ws_stream_path(name) == "/v5/public/linear"
    assert json.loads(bybit.ws_stream_subscribe(name)) == {
        "op": "subscribe",
        "args": ["tickers.BTCUSDT"],
    }
    assert bybit.ws_is_data('{"topic":"tickers.BTCUSDT","data":{}}')
    assert not bybit.ws_is_data('{"success":true,"op":"subscribe"}')


def test_upstream_url_of_a_credential_with_a_rest_override_goes_to_its_stream_host() -> None:
    from keybroker.gateway.websocket import upstream_url

    demo = Credential(
        name="d",
        exchange="bybit",
        api_key="k",
        secret=Secret(SECRET),
        base_url="https://api-demo.bybit.com",
    )
    assert upstream_url(demo, SUPPORT, "/v5/private") == "wss://stream-demo.bybit.com/v5/private"
    request = httpx.Request("GET", "https://api-demo.bybit.com/v5/order/realtime")
    assert bybit.classify(request).kind == "order_read"


def test_numbers_in_a_frame_reach_the_policy_and_the_exchange_as_the_same_text() -> None:
    """A bot may write amounts as JSON numbers; the twin (judged) and the frame (sent)
    carry the same digits, as the strings both exchanges document; an exponent that
    does not reduce to plain digits is refused as an amount."""
    order = {**ORDER, "qty": 0.001, "price": 50000.5, "positionIdx": 0}
    text = json.dumps({"reqId": "n", "op": "order.create", "args": [order]})
    call = bybit.ws_read_call(text)
    (intent,) = bybit.parse_order(call.rest.request(BASE))
    assert (str(intent.quantity), str(intent.price)) == ("0.001", "50000.5")
    sent = bybit.ws_sign_call(call, CREDENTIAL, NOW)
    assert sent.endswith(',"args":[' + call.rest.content.decode() + "]}")
    assert json.loads(sent)["args"][0]["positionIdx"] == 0
    huge = bybit.ws_read_call(text.replace("0.001", "1e3"))
    with pytest.raises(InvalidInput):
        bybit.parse_order(huge.rest.request(BASE))
    okx_text = '{"id":"1","op":"order","args":[{"instId":"BTC-USDT","sz":0.5}]}'
    assert okx.ws_read_call(okx_text).rest.content == (b'{"instId":"BTC-USDT","sz":"0.5"}')


def test_demo_keys_stream_but_get_no_trade_stream_which_bybit_does_not_offer() -> None:
    assert bybit.ws_url("/v5/private", "demo") == "wss://stream-demo.bybit.com/v5/private"
    with pytest.raises(InvalidInput, match="demo"):
        bybit.ws_url("/v5/trade", "demo")
    with pytest.raises(InvalidInput, match="demo"):
        bybit.ws_override_url("https://api-demo.bybit.com", "/v5/trade")
