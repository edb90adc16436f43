"""Nonce leases: the stored ceiling only rises, so nonces never go backwards, even after a kill."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker import errors
from keybroker.vault import Vault


def test_the_first_lease_starts_at_at_least(vault: Vault) -> None:
    assert vault.nonce_ceiling("kraken") is None
    assert vault.reserve_nonces("kraken", at_least=1000) == 11_000
    assert vault.nonce_ceiling("kraken") == 11_000


def test_a_later_lease_starts_at_the_old_ceiling_even_if_asked_lower(vault: Vault) -> None:
    vault.reserve_nonces("kraken", at_least=1000, block=10)
    assert vault.reserve_nonces("kraken", at_least=0, block=10) == 1020
    assert vault.reserve_nonces("kraken", at_least=5000, block=10) == 5010


def test_keys_are_independent_and_leasing_works_locked(
    vault: Vault, reopen: Callable[[], Vault]
) -> None:
    locked = reopen()
    assert locked.reserve_nonces("a", 100, block=1) == 101
    assert locked.reserve_nonces("b", 0, block=1) == 1
    assert vault.nonce_ceiling("a") == 101


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(st.tuples(st.integers(0, 10**15), st.integers(1, 10**6)), max_size=8))
def test_leases_never_overlap_and_never_go_backwards(
    vault: Vault, requests: list[tuple[int, int]]
) -> None:
    key = f"k{id(requests)}"
    previous = vault.nonce_ceiling(key) or 0
    for at_least, block in requests:
        ceiling = vault.reserve_nonces(key, at_least, block)
        assert ceiling - block >= max(previous, at_least)
        previous = ceiling


@pytest.mark.parametrize(
    ("key_id", "at_least", "block"),
    [("", 0, 1), ("k" * 201, 0, 1), ("k", -1, 1), ("k", 0, 0), ("k", 1.5, 1), ("k", True, 1)],
)
def test_bad_arguments(vault: Vault, key_id: str, at_least: int, block: int) -> None:
    with pytest.raises(errors.InvalidInput):
        vault.reserve_nonces(key_id, at_least, block)


def test_overflow_is_refused(vault: Vault) -> None:
    vault.reserve_nonces("k", 2**63 - 11, block=10)
    with pytest.raises(errors.VaultError, match="overflow"):
        vault.reserve_nonces("k", 0, block=1)
    assert vault.nonce_ceiling("k") == 2**63 - 1


_LEASER = """
import sys
from pathlib import Path
from keybroker.vault import Vault
vault = Vault.open(Path(sys.argv[1]))
while True:
    ceiling = vault.reserve_nonces("kraken", 0, block=7)
    print(ceiling, flush=True)   # only nonces below a durable ceiling are ever "used"
"""


def test_after_a_kill_the_next_lease_is_above_every_nonce_handed_out(
    vault: Vault, vault_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _LEASER, str(vault_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    seen = [int(child.stdout.readline()) for _ in range(40)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    again = Vault.open(vault_path)
    try:
        ceiling = again.reserve_nonces("kraken", 0, block=7)
    finally:
        again.close()
    assert ceiling - 7 >= max(seen)
