"""After a reset, the gateway looks an order up by the client order id it added; it never resends.

A recording HTTP server on 127.0.0.1 stands in for Bybit and Kraken: it
records every byte, closes the connection without answering when it gets
the order (the order may have arrived: an ambiguous failure), and answers
the lookup. The test reads the server's record: one order, then lookups by
the id the gateway added, and that id inside the bytes the exchange's own
signature rule covers (checked here with that rule, independently of the
signer). An order whose amount keybroker cannot read never leaves at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from gateway_testkit import StartGateway, make_vault, new_token
from recording_server import DROP, Recorded, Reply, recording_server

from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

TRADING = Policy(scopes=("read", "trade"), symbols=("BTCUSDT", "XBTUSD"))
BYBIT_KEY, BYBIT_SECRET = "test-bybit-key-not-real", "test-bybit-secret-not-real"
KRAKEN_KEY = "test-kraken-key-not-real"
KRAKEN_SECRET = "dGVzdC1rcmFrZW4tc2VjcmV0LW5vdC1yZWFsLWxvb2t1cC10ZXN0LTEyMzQ1Ng=="


def header(recorded: Recorded, name: str) -> str:
    return next(v for k, v in recorded.headers.items() if k.lower() == name.lower())


def start(tmp_path: Path, gateway: StartGateway, exchange: str, url: str, material: KeyMaterial):  # type: ignore[no-untyped-def]
    vault = make_vault(tmp_path / "home", {})
    vault.add("x", exchange, material, base_url=url, scopes=("read", "trade"))
    vault.set_policy("x", TRADING.to_json())
    return gateway(vault, new_token(vault, "bot", ["x"]), lookup_pause_s=0.05)


def bybit_upstream(recorded: Recorded) -> Reply:
    path = urlsplit(recorded.path).path
    if path == "/v5/order/create":
        return DROP  # took the order, then the connection went away
    if path == "/v5/order/realtime":
        link = parse_qs(urlsplit(recorded.path).query)["orderLinkId"][0]
        found = {"orderId": "1", "orderLinkId": link, "orderStatus": "New"}
        body = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [found]}}
        return 200, json.dumps(body).encode()
    return None


def test_bybit_order_lost_in_a_reset_is_found_by_its_order_link_id(
    tmp_path: Path, gateway: StartGateway
) -> None:
    with recording_server(bybit_upstream) as upstream:
        running = start(
            tmp_path, gateway, "bybit", upstream.url, KeyMaterial(BYBIT_KEY, Secret(BYBIT_SECRET))
        )
        order = (
            b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
            b'"qty":"0.01","price":"20000"}'
        )
        answer = running.client().post(
            "/x/v5/order/create", content=order, headers={"content-type": "application/json"}
        )
        received = upstream.received()

    assert answer.status_code == 200, answer.text
    assert answer.headers["x-keybroker-order-lookup"] == "found"
    creates = [r for r in received if r.path.startswith("/v5/order/create")]
    lookups = [r for r in received if r.path.startswith("/v5/order/realtime")]
    assert len(creates) == 1 and len(lookups) == 1  # looked up, never resent
    (sent,) = creates
    link_id = json.loads(sent.body)["orderLinkId"]
    assert sent.body == b'{"orderLinkId":"' + link_id.encode() + b'",' + order[1:]
    assert parse_qs(urlsplit(lookups[0].path).query)["orderLinkId"] == [link_id]
    # Bybit's rule: HMAC-SHA256(secret, timestamp + api key + recv window + body), hex.
    signed = (
        header(sent, "X-BAPI-TIMESTAMP") + BYBIT_KEY + header(sent, "X-BAPI-RECV-WINDOW")
    ).encode() + sent.body
    expected = hmac.new(BYBIT_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert header(sent, "X-BAPI-SIGN") == expected
    (result,) = running.rows("result")
    assert result.row.detail == "order lookup: found"


def kraken_upstream(recorded: Recorded) -> Reply:
    if recorded.path == "/0/private/AddOrder":
        return DROP
    if recorded.path == "/0/private/OpenOrders":
        return 200, b'{"error":[],"result":{"open":{}}}'  # not open: filled, or never arrived
    return None


def test_kraken_order_not_found_after_a_reset_is_reported_unknown_and_not_resent(
    tmp_path: Path, gateway: StartGateway
) -> None:
    with recording_server(kraken_upstream) as upstream:
        running = start(
            tmp_path,
            gateway,
            "kraken",
            upstream.url,
            KeyMaterial(KRAKEN_KEY, Secret(KRAKEN_SECRET)),
        )
        order = b"pair=XBTUSD&type=buy&ordertype=limit&price=20000&volume=0.01"
        answer = running.client().post(
            "/x/0/private/AddOrder",
            content=order,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        received = upstream.received()

    assert answer.status_code == 504
    body = answer.json()
    assert body["error"] == "order_outcome_unknown"
    (client_id,) = body["client_order_ids"]
    adds = [r for r in received if r.path == "/0/private/AddOrder"]
    lookups = [r for r in received if r.path == "/0/private/OpenOrders"]
    assert len(adds) == 1  # never resent
    assert len(lookups) == 3  # lookup_attempts, each by the id the gateway added
    assert all(look.form()["cl_ord_id"] == [client_id] for look in lookups)
    (sent,) = adds
    assert sent.form()["cl_ord_id"] == [client_id]
    # Kraken's rule: HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body)), base64.
    nonce = sent.form()["nonce"][0]
    digest = hashlib.sha256(nonce.encode() + sent.body).digest()
    mac = hmac.new(base64.b64decode(KRAKEN_SECRET), b"/0/private/AddOrder" + digest, hashlib.sha512)
    assert header(sent, "API-Sign") == base64.b64encode(mac.digest()).decode()
    (result,) = running.rows("result")
    assert result.row.detail is not None and "order lookup: unknown" in result.row.detail


def test_an_order_whose_amount_cannot_be_read_never_leaves(
    tmp_path: Path, gateway: StartGateway
) -> None:
    with recording_server() as upstream:
        running = start(
            tmp_path, gateway, "bybit", upstream.url, KeyMaterial(BYBIT_KEY, Secret(BYBIT_SECRET))
        )
        client = running.client()
        answers = [
            client.post(
                "/x/v5/order/create",
                content=b'{"category":"linear","symbol":"BTCUSDT","side":"Buy",'
                b'"orderType":"Market","qty":' + qty + b"}",
                headers={"content-type": "application/json"},
            )
            for qty in (b'"1e3"', b"1e3", b'" 1000"', b'"NaN"', b'"-1"')
        ]
        received = upstream.received()

    assert [a.status_code for a in answers] == [400] * 5
    assert {a.json()["error"] for a in answers} == {"unreadable_amount"}
    assert all("qty" in a.json()["detail"] and "1e3" not in a.json()["detail"] for a in answers)
    assert received == []
    denied = running.rows("denied")
    assert [row.row.rule for row in denied] == ["unreadable_amount"] * 5
