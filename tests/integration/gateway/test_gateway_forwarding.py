"""Steps 2-9 on the happy path: routing, signing the emulator verifies, answers passed unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from gateway_testkit import (
    BINANCE_API_KEY,
    LIMIT_BUY,
    OKX_API_KEY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    assert_no_secret,
    make_vault,
    new_token,
)

from keybroker.audit import verify_chain

# What the gateway may change in an answer: hop-by-hop headers and the length it recomputes.
_IGNORED = {"date", "content-length", "connection", "transfer-encoding"}


def _comparable(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _IGNORED}
    return response.status_code, headers, response.content


def test_a_public_answer_is_the_exchanges_own(world: World) -> None:
    path = "/api/v3/depth?symbol=BTCUSDT&limit=5"
    through = world.gateway.client().get(f"/bn{path}")
    direct = httpx.get(world.exchange.url + path)
    status, headers, body = _comparable(through)
    assert status == 200
    assert json.loads(body)["bids"]  # a real order book
    assert headers.keys() == _comparable(direct)[1].keys()
    assert headers["content-type"] == direct.headers["content-type"]
    assert "x-keybroker-error" not in through.headers


def test_an_exchange_error_passes_unchanged(world: World) -> None:
    # The exchange's own 400 and error body, not a gateway translation.
    response = world.gateway.client().get(
        "/bn/api/v3/order", params={"symbol": "BTCUSDT", "origClientOrderId": "nosuchorder"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == -2013
    assert "x-keybroker-error" not in response.headers


def test_private_reads_are_signed_with_the_vaults_key(world: World) -> None:
    response = world.gateway.client().get("/bn/api/v3/account")
    assert response.status_code == 200
    assert "balances" in response.json()
    (entry,) = world.exchange.requests_to("/api/v3/account")
    assert entry["accepted"] and entry["api_key"] == BINANCE_API_KEY


def test_auth_fields_a_bot_sends_are_replaced(world: World) -> None:
    # A ccxt bot configured with placeholder credentials signs with them; the
    # gateway strips its key header, timestamp and signature and signs anew.
    client = world.gateway.client(headers={"X-MBX-APIKEY": "placeholder"})
    response = client.get(
        "/bn/api/v3/account", params={"timestamp": "1", "signature": "f" * 64, "recvWindow": "5000"}
    )
    assert response.status_code == 200, response.text
    (entry,) = world.exchange.requests_to("/api/v3/account")
    assert entry["api_key"] == BINANCE_API_KEY
    assert entry["params"].get("recvWindow") == "5000"


def test_an_order_gets_a_client_order_id_and_is_audited_before_and_after(world: World) -> None:
    response = world.gateway.client().post("/bn/api/v3/order", data=LIMIT_BUY)
    assert response.status_code == 200, response.text
    placed = response.json()
    assert placed["clientOrderId"].startswith("kb") and len(placed["clientOrderId"]) == 32
    (order,) = world.exchange.orders()
    assert order["client_order_id"] == placed["clientOrderId"]

    intent, result = [r for r in world.gateway.audit() if r.row.kind in ("intent", "result")][-2:]
    assert intent.row.kind == "intent" and result.row.kind == "result"
    assert result.row.intent_id == intent.id
    assert intent.row.bot == "bot1" and intent.row.credential == "bn"
    assert intent.row.request_kind == "order_place"
    assert intent.row.client_order_id == placed["clientOrderId"]
    assert intent.row.order is not None and intent.row.order["symbol"] == "BTCUSDT"
    assert result.row.status == 200 and result.row.latency_ms is not None
    assert verify_chain(world.gateway.audit_path).ok


def test_a_bots_own_client_order_id_is_kept(world: World) -> None:
    order = {**LIMIT_BUY, "newClientOrderId": "mybot-0001"}
    response = world.gateway.client().post("/bn/api/v3/order", data=order)
    assert response.json()["clientOrderId"] == "mybot-0001"
    assert world.exchange.orders()[0]["client_order_id"] == "mybot-0001"


def test_cancel_passes_and_is_audited(world: World) -> None:
    client = world.gateway.client()
    placed = client.post("/bn/api/v3/order", data=LIMIT_BUY).json()
    cancel = client.delete(
        "/bn/api/v3/order", params={"symbol": "BTCUSDT", "orderId": str(placed["orderId"])}
    )
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["status"] == "CANCELED"
    kinds = [r.row.request_kind for r in world.gateway.rows("intent")]
    assert kinds[-2:] == ["order_place", "order_cancel"]


def test_okx_through_the_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("okx")
    vault = make_vault(tmp_path / "home", {"ox": ("okx", exchange.url)}, policies={"ox": TRADER})
    running = gateway(vault, new_token(vault, "bot1", ["ox"]))
    client = running.client()
    balance = client.get("/ox/api/v5/account/balance")
    assert balance.status_code == 200 and balance.json()["code"] == "0", balance.text
    order = {
        "instId": "BTC-USDT",
        "tdMode": "cash",
        "side": "buy",
        "ordType": "limit",
        "sz": "0.001",
        "px": "50000",
    }
    placed = client.post("/ox/api/v5/trade/order", json=order)
    assert placed.status_code == 200 and placed.json()["code"] == "0", placed.text
    client_id = placed.json()["data"][0]["clOrdId"]
    assert client_id.startswith("kb")
    (entry,) = exchange.requests_to("/api/v5/trade/order", "POST")
    assert entry["accepted"] and entry["api_key"] == OKX_API_KEY


def test_no_secret_or_token_in_answers_audit_or_logs(world: World, caplog) -> None:  # type: ignore[no-untyped-def]
    client = world.gateway.client()
    answers = [
        client.get("/bn/api/v3/account"),
        client.post("/bn/api/v3/order", data=LIMIT_BUY),
        client.post("/bn/sapi/v1/capital/withdraw/apply", data={"coin": "BTC", "amount": "1"}),
        client.get("/_/status"),
        client.get("/_/metrics"),
        world.gateway.client(token="kb_" + "x" * 43).get("/bn/api/v3/account"),
    ]
    for answer in answers:
        assert_no_secret(answer.content, str(answer.headers))
        assert world.gateway.token not in answer.text
    audit_bytes = b"".join(
        path.read_bytes()
        for path in world.gateway.home.iterdir()
        if path.name.startswith("audit.db")
    )
    assert_no_secret(audit_bytes)
    assert world.gateway.token.encode() not in audit_bytes
    assert_no_secret(caplog.text)
    assert world.gateway.token not in caplog.text
