"""The Host check, browser origins, the /_/ endpoints, the Unix socket and the nonce lease."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import httpx
import pytest
from gateway_testkit import (
    LIMIT_BUY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
    wait_until,
)

from keybroker.gateway.nonces import NonceLease
from keybroker.vault import Vault


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8787", True),
        ("localhost:8787", True),
        ("[::1]:8787", True),
        ("attacker.example", False),  # DNS rebinding: the page's own name
        ("attacker.example:8787", False),
        ("localhost.attacker.example", False),
        ("", False),
    ],
)
def test_the_host_header_must_name_the_gateway(world: World, host: str, allowed: bool) -> None:
    response = world.gateway.client().get("/bn/api/v3/time", headers={"Host": host})
    if allowed:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert response.json()["error"] == "bad_host"
        assert world.exchange.journal() == []


def test_browser_pages_are_refused_without_cors_origin(world: World) -> None:
    client = world.gateway.client(headers={"Origin": "https://evil.example"})
    response = client.get("/bn/api/v3/account")
    assert response.status_code == 403
    assert response.json()["error"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert world.exchange.journal() == []


def test_a_cors_origin_gets_preflight_and_headers(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    running = gateway(
        vault, new_token(vault, "bot1", ["bn"]), cors_origins=("https://dash.example",)
    )
    preflight = httpx.options(
        f"{running.url}/bn/api/v3/account",
        headers={
            "Origin": "https://dash.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-keybroker-token",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://dash.example"
    assert "x-keybroker-token" in preflight.headers["access-control-allow-headers"]
    response = running.client(headers={"Origin": "https://dash.example"}).get("/bn/api/v3/account")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    other = running.client(headers={"Origin": "https://other.example"}).get("/bn/api/v3/account")
    assert other.status_code == 403


def test_status_shows_limiter_halts_and_hardening(world: World) -> None:
    client = world.gateway.client()
    client.get("/bn/api/v3/account")
    client.post("/bn/sapi/v1/capital/withdraw/apply", data={"coin": "BTC"})
    world.gateway.vault.halt("bn")
    status = client.get("/_/status").json()
    assert status["status"] == "ok"
    assert status["requests"]["forwarded"] == 1 and status["requests"]["denied"] == 1
    assert any(row.get("name") == "REQUEST_WEIGHT" for row in status["limiter"])
    assert "hardening" in status
    # The poller picks up the halt.
    assert wait_until(lambda: "bn" in client.get("/_/status").json()["halted"], timeout=1.0)


def test_metrics_are_prometheus_text(world: World) -> None:
    client = world.gateway.client()
    client.get("/bn/api/v3/account")
    client.post("/bn/api/v3/order", data={**LIMIT_BUY, "quantity": "10"})
    response = client.get("/_/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert "keybroker_up 1" in lines
    assert (
        'keybroker_requests_total{credential="bn",kind="account_read",outcome="forwarded"} 1'
        in lines
    )
    assert 'keybroker_denials_total{credential="bn",rule="max_notional"} 1' in lines
    assert any(line.startswith("keybroker_upstream_seconds_bucket{") for line in lines)
    assert any(line.startswith("keybroker_ratelimit_") for line in lines)
    for line in lines:
        assert line.startswith("#") or " " in line  # name{labels} value


def test_unknown_own_endpoint_is_404(world: World) -> None:
    response = world.gateway.client().get("/_/nothing")
    assert response.status_code == 404
    assert world.exchange.journal() == []


def test_the_unix_socket_is_0600_and_serves(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    token = new_token(vault, "bot1", ["bn"])
    socket_path = tmp_path / "home" / "gateway.sock"
    gateway(vault, token, uds=socket_path)
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, base_url="http://keybroker") as client:
        # No Host check on the socket (no browser reaches one); the token still is required.
        assert client.get("/bn/api/v3/account").status_code == 401
        response = client.get("/bn/api/v3/account", headers={"X-Keybroker-Token": token})
        assert response.status_code == 200


def test_nonces_never_go_backwards_across_restarts(tmp_path: Path) -> None:
    vault = make_vault(tmp_path / "home", {})

    async def draw(lease: NonceLease, count: int, now_ms: int) -> list[int]:
        return [await lease.next("kraken:abc", now_ms) for _ in range(count)]

    first = asyncio.run(draw(NonceLease(vault, block=5), 12, now_ms=1000))
    assert first == sorted(set(first)) and first[0] >= 1000
    vault.close()
    # A restart, with a clock that went backwards meanwhile.
    reopened = Vault.open(tmp_path / "home" / "vault.db")
    try:
        second = asyncio.run(draw(NonceLease(reopened, block=5), 3, now_ms=10))
    finally:
        reopened.close()
    assert second[0] > first[-1]
    assert second == sorted(set(second))


def test_concurrent_nonces_are_distinct(tmp_path: Path) -> None:
    vault = make_vault(tmp_path / "home", {})

    async def many() -> list[int]:
        lease = NonceLease(vault, block=3)
        return list(await asyncio.gather(*(lease.next("k", 5) for _ in range(50))))

    drawn = asyncio.run(many())
    vault.close()
    assert len(set(drawn)) == 50
