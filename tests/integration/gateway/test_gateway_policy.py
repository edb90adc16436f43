"""Step 4: what the policy refuses is answered 403, audited, and never reaches the exchange."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_testkit import (
    BINANCE_API_KEY,
    BINANCE_SECRET,
    LIMIT_BUY,
    PASSPHRASE,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
)

from keybroker.audit import verify_chain
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault


def _order_posts(world: World) -> list[dict[str, object]]:
    return world.exchange.requests_to("/api/v3/order", "POST")


def test_an_order_over_the_notional_limit_is_denied_and_audited(world: World) -> None:
    big = {**LIMIT_BUY, "quantity": "1"}  # 50,000 USDT against a 5,000 limit
    response = world.gateway.client().post("/bn/api/v3/order", data=big)
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "policy_denied" and body["rule"] == "max_notional"
    assert body["detail"]
    assert _order_posts(world) == []
    (denied,) = world.gateway.rows("denied")
    assert denied.row.rule == "max_notional" and denied.row.bot == "bot1"
    assert denied.row.request_kind == "order_place"
    assert denied.row.order is not None and denied.row.order["quantity"] == "1"
    assert world.gateway.rows("intent") == []  # nothing was about to leave
    assert verify_chain(world.gateway.audit_path).ok


def test_a_market_order_is_priced_from_the_gateways_own_market_data(world: World) -> None:
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}
    response = world.gateway.client().post("/bn/api/v3/order", data=market)
    assert response.json()["rule"] == "max_notional"
    # The gateway asked the exchange's public ticker, then sent no order.
    assert world.exchange.requests_to("/api/v3/ticker/price")
    assert _order_posts(world) == []


@pytest.mark.parametrize(
    ("method", "path", "data", "rule"),
    [
        (
            "POST",
            "/sapi/v1/capital/withdraw/apply",
            {"coin": "BTC", "amount": "1"},
            "never_withdraw",
        ),
        (
            "POST",
            "/SAPI/v1/capital/withdraw/apply",
            {"coin": "BTC", "amount": "1"},
            "never_withdraw",
        ),
        (
            "POST",
            "/sapi/v1/capital/withdraw//apply/",
            {"coin": "BTC", "amount": "1"},
            "never_withdraw",
        ),
        (
            "POST",
            "/sapi/v1/capital/%77ithdraw/apply",
            {"coin": "BTC", "amount": "1"},
            "never_withdraw",
        ),
        ("POST", "/api/v3/../../sapi/v1/capital/withdraw/apply", {"coin": "BTC"}, "never_withdraw"),
        ("GET", "/sapi/v1/capital/withdraw/apply", None, "never_withdraw"),
        ("POST", "/api/v3/somethingPrivate", {"a": "1"}, "unknown_endpoint"),
    ],
)
def test_withdrawals_and_unknown_endpoints_never_leave(
    world: World, method: str, path: str, data: dict[str, str] | None, rule: str
) -> None:
    response = world.gateway.client().request(method, f"/bn{path}", data=data)
    assert response.status_code == 403, response.text
    assert response.json()["rule"] == rule
    assert world.exchange.journal() == []
    assert [r.row.rule for r in world.gateway.rows("denied")] == [rule]


def test_a_method_override_header_cannot_hide_a_withdrawal(world: World) -> None:
    client = world.gateway.client(headers={"X-HTTP-Method-Override": "GET"})
    response = client.post("/bn/sapi/v1/capital/withdraw/apply", data={"coin": "BTC"})
    assert response.status_code == 403
    assert world.exchange.journal() == []


def test_a_new_credential_is_read_only(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(tmp_path / "home", {"bn": ("binance", exchange.url)})  # no policy set
    running = gateway(vault, new_token(vault, "bot1", ["bn"]))
    client = running.client()
    assert client.get("/bn/api/v3/account").status_code == 200
    response = client.post("/bn/api/v3/order", data=LIMIT_BUY)
    assert response.status_code == 403 and response.json()["rule"] == "scope"
    assert exchange.requests_to("/api/v3/order") == []


def test_an_unparsable_order_is_refused_not_guessed(world: World) -> None:
    response = world.gateway.client().post(
        "/bn/api/v3/order",
        content=b"symbol=BTCUSDT&symbol=ETHUSDT&side=BUY&type=MARKET&quantity=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert _order_posts(world) == []
    assert world.gateway.rows("denied")[0].row.rule == "invalid_request"


def test_an_oversized_body_is_refused_and_audited(world: World) -> None:
    response = world.gateway.client().post("/bn/api/v3/order", content=b"a" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert world.exchange.journal() == []
    assert world.gateway.rows("denied")[0].row.rule == "body_too_large"


def test_orders_per_minute_per_token(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    running = gateway(vault, new_token(vault, "bot1", ["bn"], max_orders_per_minute=2))
    client = running.client()
    statuses = [client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code for _ in range(3)]
    assert statuses == [200, 200, 403]
    assert len(exchange.orders()) == 2


def test_kill_switch_stops_orders_at_once_and_lets_cancels_and_reads_pass(world: World) -> None:
    client = world.gateway.client()
    placed = client.post("/bn/api/v3/order", data=LIMIT_BUY).json()
    # `keybroker halt` in another process: no passphrase needed.
    other = Vault.open(world.gateway.vault.path)
    try:
        other.halt("bn", reason="runaway bot")
    finally:
        other.close()
    denied = client.post("/bn/api/v3/order", data=LIMIT_BUY)  # the very next order
    assert denied.status_code == 403 and denied.json()["rule"] == "kill_switch"
    assert client.get("/bn/api/v3/account").status_code == 200
    cancel = client.delete(
        "/bn/api/v3/order", params={"symbol": "BTCUSDT", "orderId": str(placed["orderId"])}
    )
    assert cancel.status_code == 200
    assert len(_order_posts(world)) == 1
    status = client.get("/_/status").json()
    assert "bn" in status["halted"]

    other = Vault.open(world.gateway.vault.path)
    try:
        other.unlock(Secret(PASSPHRASE))
        other.resume("bn")
    finally:
        other.close()
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200


def test_halting_all_credentials(world: World) -> None:
    world.gateway.vault.halt(None)
    response = world.gateway.client().post("/bn/api/v3/order", data=LIMIT_BUY)
    assert response.json()["rule"] == "kill_switch"


def test_a_production_credential_needs_allow_production(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(tmp_path / "home", {}, policies={})
    vault.add(
        "live",
        "binance",
        KeyMaterial(BINANCE_API_KEY, Secret(BINANCE_SECRET)),
        environment="production",
        base_url=exchange.url,
    )
    vault.set_policy("live", Policy(scopes=("read",)).to_json())
    running = gateway(vault, new_token(vault, "bot1", ["live"]))
    response = running.client().get("/live/api/v3/account")
    assert response.status_code == 403 and response.json()["rule"] == "allow_production"
    vault.set_policy("live", Policy(scopes=("read",), allow_production=True).to_json())
    assert running.client().get("/live/api/v3/account").status_code == 200
