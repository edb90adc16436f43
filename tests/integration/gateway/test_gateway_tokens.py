"""Step 1: bot tokens. 401 missing, wrong, expired or revoked; 403 not granted; the Bearer form."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gateway_testkit import (
    PASSPHRASE,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
    wait_until,
)

from keybroker.secret import Secret
from keybroker.vault import Vault


def test_health_needs_no_token_and_everything_else_does(world: World) -> None:
    anonymous = world.gateway.client(token="")
    assert anonymous.get("/_/health").json() == {"status": "ok"}
    for path in ("/_/status", "/_/metrics", "/bn/api/v3/time", "/bn/api/v3/account"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "bad_token"
        assert response.headers["x-keybroker-error"] == "bad_token"
        assert response.headers["www-authenticate"] == "Bearer"
    assert world.exchange.journal() == []  # nothing reached the exchange


@pytest.mark.parametrize(
    "token",
    [
        "kb_" + "A" * 43,  # the right shape, never issued
        "not-a-token",
        "kb_",
        "kb_" + "A" * 500,
    ],
)
def test_a_wrong_token_is_401(world: World, token: str) -> None:
    response = world.gateway.client(token=token).get("/bn/api/v3/account")
    assert response.status_code == 401
    assert response.json()["error"] == "bad_token"
    assert token not in response.text
    assert world.exchange.journal() == []


def test_the_token_works_as_a_bearer_token(world: World) -> None:
    client = world.gateway.client(
        token="", headers={"Authorization": f"Bearer {world.gateway.token}"}
    )
    response = client.get("/bn/api/v3/account")
    assert response.status_code == 200
    # The Authorization header is ours; the exchange never saw it (nor our token).
    assert (
        world.exchange.requests_to("/api/v3/account")[0]["api_key"] == "test-binance-key-not-real"
    )


def test_a_token_not_granted_the_credential_is_403(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home",
        {"bn": ("binance", exchange.url), "other": ("binance", exchange.url)},
        policies={"bn": TRADER, "other": TRADER},
    )
    token = new_token(vault, "bot1", ["bn"])
    running = gateway(vault, token)
    response = running.client().get("/other/api/v3/account")
    assert response.status_code == 403
    assert response.json()["error"] == "not_granted"
    # An unknown credential is not granted either: the answer does not say whether it exists.
    assert running.client().get("/nosuch/api/v3/account").json()["error"] == "not_granted"
    assert exchange.journal() == []
    assert running.client().get("/bn/api/v3/account").status_code == 200


def test_an_expired_token_is_401(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    token = new_token(vault, "bot1", ["bn"], expires_at=expires)
    running = gateway(vault, token)
    client = running.client()
    assert client.get("/bn/api/v3/time").status_code == 200  # cached as valid now
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    response = client.get("/bn/api/v3/time")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_revocation_applies_to_a_running_gateway_within_a_second(world: World) -> None:
    client = world.gateway.client()
    assert client.get("/bn/api/v3/time").status_code == 200
    # Another process revokes it: a second handle on the same vault file.
    other = Vault.open(world.gateway.vault.path)
    other.unlock(Secret(PASSPHRASE))
    try:
        started = time.monotonic()
        other.revoke_token("bot1")
        assert wait_until(lambda: client.get("/bn/api/v3/time").status_code == 401, timeout=1.0)
        assert time.monotonic() - started < 1.0
    finally:
        other.close()
    assert client.get("/_/status").status_code == 401


def test_a_new_token_after_revocation_works(world: World) -> None:
    world.gateway.vault.revoke_token("bot1")
    fresh = new_token(world.gateway.vault, "bot1", ["bn"])
    assert wait_until(lambda: world.gateway.client().get("/bn/api/v3/time").status_code == 401)
    assert world.gateway.client(token=fresh).get("/bn/api/v3/time").status_code == 200
