"""The gateway's view of the vault reads the change marker once per request, halts included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from vault_testkit import PASSPHRASE, material

from keybroker.clock import FixedClock
from keybroker.gateway.access import VaultAccess
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import Vault


def test_one_marker_read_gives_credential_policy_and_the_halts_of_that_moment(
    vault: Vault, reopen: Callable[[], Vault], clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault.add("bot1", "binance", material(1))
    vault.set_policy("bot1", Policy(scopes=("read", "trade"), symbols=("BTCUSDT",)).to_json())
    access = VaultAccess(vault, clock)
    credential, policy = access.credential_and_policy("bot1")
    assert credential.name == "bot1" and policy.symbols == ("BTCUSDT",)
    assert not access.is_halted("bot1")

    reopen().halt("bot1", "another process pulls the kill switch")
    reads: list[object] = []
    marker = vault.change_marker
    monkeypatch.setattr(vault, "change_marker", lambda: reads.append(1) or marker())

    access.credential_and_policy("bot1")  # the next request
    assert len(reads) == 1  # credential, policy and halts: one read of the marker
    assert access.is_halted("bot1")  # the halt came with that read, no second one
    assert len(reads) == 1
    assert access.is_halted("bot1", fresh=True) and len(reads) == 2  # an order that waited


def test_a_policy_changed_elsewhere_is_seen_by_the_next_request(
    vault: Vault, reopen: Callable[[], Vault], clock: FixedClock
) -> None:
    vault.add("bot1", "binance", material(1))
    access = VaultAccess(vault, clock)
    assert access.credential_and_policy("bot1")[1].symbols == ()
    other = reopen()  # `keybroker policy set` in another process
    other.unlock(Secret(PASSPHRASE))
    other.set_policy("bot1", Policy(scopes=("read", "trade"), symbols=("ETHUSDT",)).to_json())
    assert access.credential_and_policy("bot1")[1].symbols == ("ETHUSDT",)
