"""A bot whose token is revoked is cut off its WebSockets too, not only from REST.

The upgrade checks the token once, and a connection lives for hours. After
``keybroker tokens revoke`` (here: another connection to the vault file, as
that command's process would be), the bot's open WebSocket API session places
no further order (the emulator's journal shows none), and its market-data and
account streams are closed with 1008.
"""

from __future__ import annotations

import json
import time

import httpx
from gateway_testkit import LIMIT_BUY, PASSPHRASE, World, wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from keybroker.audit import read_rows
from keybroker.secret import Secret
from keybroker.vault import Vault


def _revoke_elsewhere(world: World) -> None:
    """What ``keybroker tokens revoke bot1`` does: a revocation by another connection."""
    other = Vault.open(world.gateway.vault.path)
    try:
        other.unlock(Secret(PASSPHRASE))
        other.revoke_token("bot1")
    finally:
        other.close()


def _connect(world: World, path: str) -> ClientConnection:
    url = world.gateway.url.replace("http://", "ws://") + "/bn" + path
    return connect(url, additional_headers={"X-Keybroker-Token": world.gateway.token})


def _close_code(ws: ClientConnection, timeout: float = 5.0) -> int | None:
    """Read until the gateway closes the connection; its close code (None: still open)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code
    except TimeoutError:
        return None
    return None


def test_a_revoked_bots_websocket_api_session_places_no_more_orders(world: World) -> None:
    with _connect(world, "/ws-api/v3") as ws:
        ws.send(json.dumps({"id": 1, "method": "order.place", "params": dict(LIMIT_BUY)}))
        assert json.loads(ws.recv(timeout=10))["status"] == 200
        _revoke_elsewhere(world)
        time.sleep(0.3)  # the gateway's poll interval (0.25 s): REST refuses it now too
        assert world.gateway.client().get("/bn/api/v3/account").status_code == 401
        answers: list[dict[str, object]] = []
        try:
            ws.send(json.dumps({"id": 2, "method": "order.place", "params": dict(LIMIT_BUY)}))
            answers.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed:
            pass  # closed by the gateway before the frame was read: as good
        assert _close_code(ws) == 1008
    for answer in answers:
        assert answer["status"] == 401, answer
    assert len([order for order in world.exchange.orders() if order]) == 1


def test_a_revoked_bots_market_and_account_streams_are_closed(world: World) -> None:
    listen_key = world.gateway.client().post("/bn/api/v3/userDataStream").json()["listenKey"]
    with (
        _connect(world, "/ws/btcusdt@ticker") as market,
        _connect(world, f"/ws/{listen_key}") as account,
    ):
        market.recv(timeout=10)  # the stream flows
        _revoke_elsewhere(world)
        assert _close_code(market) == 1008
        assert _close_code(account) == 1008

    def closing_events() -> list[str]:
        return [
            stored.row.detail or ""
            for stored in read_rows(world.gateway.audit_path, kind="event")
            if stored.row.bot == "bot1"
        ]

    assert wait_until(lambda: len(closing_events()) == 2)
    assert all("revoked" in detail for detail in closing_events())


def test_a_bot_with_a_good_token_keeps_its_stream(world: World) -> None:
    with _connect(world, "/ws/btcusdt@ticker") as market:
        market.recv(timeout=10)
        time.sleep(0.8)  # several polls
        market.recv(timeout=10)
    assert httpx.get(f"{world.gateway.url}/_/health", timeout=5).status_code == 200
