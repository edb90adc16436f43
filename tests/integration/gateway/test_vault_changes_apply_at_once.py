"""The gateway answers credentials, policies and halts from memory, yet never from stale memory.

Another connection to the vault file changes it (as `keybroker policy set` or
a key rotation in another process would); the very next request through the
running gateway sees the change. (tests/unit/vault/test_vault_change_marker.py
shows the marker moving for a commit by another process too.)
"""

from __future__ import annotations

from gateway_testkit import LIMIT_BUY, PASSPHRASE, World

from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault


def _another_connection(world: World) -> Vault:
    other = Vault.open(world.gateway.vault.path)
    other.unlock(Secret(PASSPHRASE))
    return other


def test_a_policy_set_elsewhere_applies_to_the_very_next_order(world: World) -> None:
    client = world.gateway.client()
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    other = _another_connection(world)
    try:
        other.set_policy("bn", Policy(scopes=("read",)).to_json())
    finally:
        other.close()
    denied = client.post("/bn/api/v3/order", data=LIMIT_BUY)
    assert denied.status_code == 403 and denied.json()["error"] == "policy_denied"
    assert client.get("/bn/api/v3/account").status_code == 200  # reads still pass


def test_a_rotation_elsewhere_signs_the_very_next_request_with_the_new_key(world: World) -> None:
    client = world.gateway.client()
    assert client.get("/bn/api/v3/account").status_code == 200
    other = _another_connection(world)
    try:
        other.rotate(
            "bn", KeyMaterial("rotated-key-not-known-to-the-emulator", Secret("fake-rotated"))
        )
    finally:
        other.close()
    # The emulator knows only the old key: the new one is refused there, so it was used.
    answer = client.get("/bn/api/v3/account")
    assert answer.status_code in (400, 401) and "x-keybroker-error" not in answer.headers
