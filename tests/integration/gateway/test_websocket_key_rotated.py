"""A key rotated while a bot's WebSocket API session is open is not used by it any more.

REST signs the very next request with the new key
(test_vault_changes_apply_at_once.py). A WebSocket API session opened before
the rotation held the old credential and kept signing, and on OKX and Bybit
stays logged in, with the old key: after ``keybroker keys rotate`` (here:
another connection to the vault file) its next frame is refused, never sent,
and the session is closed so that the bot reconnects with the new key. Any
other change to the vault (a policy set, a halt lifted) leaves it open.
"""

from __future__ import annotations

import json

from gateway_testkit import LIMIT_BUY, PASSPHRASE, TRADER, World
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

NEW_KEY = "rotated-key-not-known-to-the-emulator"


def _other(world: World) -> Vault:
    other = Vault.open(world.gateway.vault.path)
    other.unlock(Secret(PASSPHRASE))
    return other


def _connect(world: World) -> ClientConnection:
    url = world.gateway.url.replace("http://", "ws://") + "/bn/ws-api/v3"
    return connect(url, additional_headers={"X-Keybroker-Token": world.gateway.token})


def _order(world: World, ws: ClientConnection, request_id: str) -> dict[str, object]:
    ws.send(json.dumps({"id": request_id, "method": "order.place", "params": dict(LIMIT_BUY)}))
    answer: dict[str, object] = json.loads(ws.recv(timeout=10))
    return answer


def test_a_rotation_elsewhere_ends_an_open_websocket_api_session(world: World) -> None:
    with _connect(world) as ws:
        assert _order(world, ws, "before")["status"] == 200
        other = _other(world)
        try:
            other.rotate("bn", KeyMaterial(NEW_KEY, Secret("fake-rotated-secret")))
        finally:
            other.close()
        refused = _order(world, ws, "after")
        assert refused["id"] == "after" and refused["status"] == 503, refused
        try:
            ws.recv(timeout=5)
            raise AssertionError("the session stayed open")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1012
    keys = [e["api_key"] for e in world.exchange.journal() if e["transport"] == "ws"]
    assert keys == ["test-binance-key-not-real"]  # the order before; nothing after
    with _connect(world) as again:  # a new session signs with the new key
        answer = _order(world, again, "new")
    assert answer["status"] != 200  # the emulator does not know the new key: it was used


def test_other_vault_changes_leave_the_session_open(world: World) -> None:
    with _connect(world) as ws:
        assert _order(world, ws, "1")["status"] == 200
        other = _other(world)
        try:
            other.set_policy("bn", TRADER.to_json())
            other.halt("bn", reason="a moment")
            other.resume("bn")
        finally:
            other.close()
        assert _order(world, ws, "2")["status"] == 200
