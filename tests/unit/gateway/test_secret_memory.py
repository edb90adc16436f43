"""Secrets in memfd_secret pages: the arena, ``Secret`` on top of it, and what another process sees.

This machine's kernel has memfd_secret (the CI runs on the same kernel); a
kernel without it is the probe's other branch, tested by
``test_hardening_never_crashes_and_says_what_held`` through its report.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from keybroker.gateway.hardening import SecretArena, SecretPage, probe_secret_memory
from keybroker.secret import Secret, keep_secrets_in


@pytest.fixture
def arena() -> Iterator[SecretArena]:
    step, page = probe_secret_memory(64 * 1024)
    assert step.held and page is not None, f"this kernel should have memfd_secret: {step.line()}"
    made = SecretArena(page, largest=4096)
    keep_secrets_in(made)
    yield made
    keep_secrets_in(None)


def test_a_secret_lives_in_the_arena_and_is_wiped_there(arena: SecretArena) -> None:
    secret = Secret("test-secret-not-real")
    assert secret.in_secret_memory and secret.reveal() == b"test-secret-not-real"
    assert secret.reveal_text() == "test-secret-not-real"
    buffer = secret._value
    assert isinstance(buffer, memoryview) and arena.holds(buffer)
    offset = _offset(arena, buffer)
    secret.wipe()
    assert bytes(arena._view[offset : offset + 32]) == bytes(32)
    assert secret.reveal() == b"" and not secret.in_secret_memory
    # The freed slot is handed out again; a garbage-collected Secret gives its slot back too.
    again = Secret("another-secret-not-real")
    assert _offset(arena, again._value) == offset  # type: ignore[arg-type]
    del again
    third = Secret("a-third-secret-not-real")
    assert _offset(arena, third._value) == offset  # type: ignore[arg-type]


def test_the_heap_takes_what_the_arena_cannot(arena: SecretArena) -> None:
    large = Secret(b"x" * 5000)  # over `largest`
    assert not large.in_secret_memory and large.reveal() == b"x" * 5000
    assert arena.fallbacks == 1
    kept = [Secret(b"k" * 4096) for _ in range(16)]  # 64 KiB: the arena is full now
    assert all(secret.in_secret_memory for secret in kept)
    spill = Secret(b"s" * 100)
    assert not spill.in_secret_memory and spill.reveal() == b"s" * 100
    keep_secrets_in(None)
    assert not Secret("on-the-heap-not-real").in_secret_memory


def test_another_process_cannot_read_a_secret_in_secret_memory(tmp_path: Path) -> None:
    """Root reading /proc/<pid>/mem gets the heap copy, and EIO for the secret-memory one."""
    child = tmp_path / "child.py"
    child.write_text(
        textwrap.dedent(
            """
            import ctypes, sys
            from keybroker.gateway.hardening import SecretArena, SecretPage
            from keybroker.secret import Secret, keep_secrets_in
            keep_secrets_in(SecretArena(SecretPage(64 * 1024)))
            hidden = Secret(b"CANARY-in-secret-memory-not-real")
            keep_secrets_in(None)
            heap = Secret(b"CANARY-on-the-heap-not-real-0000")
            def address(buffer):
                return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
            print(address(hidden._value), address(heap._value), flush=True)
            sys.stdin.readline()
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(child)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        hidden, heap = map(int, process.stdout.readline().split())
        with open(f"/proc/{process.pid}/mem", "rb", buffering=0) as memory:
            memory.seek(heap)
            assert memory.read(32) == b"CANARY-on-the-heap-not-real-0000"  # the control
            memory.seek(hidden)
            with pytest.raises(OSError):
                memory.read(32)
    finally:
        process.communicate("\n", timeout=10)


def test_harden_puts_the_vault_key_and_credentials_in_secret_memory(tmp_path: Path) -> None:
    """In a fresh process, as ``keybroker serve`` does: harden, then unlock and decrypt."""
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from keybroker.crypto.kdf import Argon2idParams
        from keybroker.gateway.hardening import harden
        from keybroker.secret import Secret
        from keybroker.vault import KeyMaterial, Vault
        path = Path({str(tmp_path / "vault.db")!r})
        fast = Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1)
        vault = Vault.create(path, Secret("passphrase-not-real"), kdf=fast)
        vault.add("bn", "binance", KeyMaterial("key-not-real", Secret("secret-not-real")))
        vault.close()
        steps = harden()
        vault = Vault.open(path)
        vault.unlock(Secret("passphrase-not-real"))
        credential = vault.credential("bn")
        print(steps[-1].held, vault._data_key.in_secret_memory,
              credential.secret.in_secret_memory, vault._opened["bn"][1].secret.in_secret_memory,
              credential.secret.reveal() == b"secret-not-real")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True"] * 5


def _offset(arena: SecretArena, buffer: memoryview) -> int:
    return arena._slots[id(buffer)][0]


def test_a_secret_page_is_page_sized_and_writable() -> None:
    page = SecretPage()
    try:
        page.memory[:3] = b"abc"
        assert page.memory[:3] == b"abc" and page.size % 4096 == 0
    finally:
        page.close()
