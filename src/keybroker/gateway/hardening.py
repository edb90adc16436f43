"""Process hardening at gateway start: what a memory dump or a same-user debugger could read.

    >>> for step in harden():
    ...     print(step.line())
    core dumps off: held
    not dumpable: held
    memory locked: not held (RLIMIT_MEMLOCK is 8 MiB; ...)
    secret memory (memfd_secret): held

The gateway holds decrypted keys, so each step narrows a way out of memory:

- ``RLIMIT_CORE`` 0: a crash writes no core file holding them.
- ``PR_SET_DUMPABLE`` 0: no core dump either way, and other processes of the
  same user can no longer ptrace the gateway or read ``/proc/<pid>/mem``.
- ``mlockall``: pages are never written to swap. Only tried where the limit
  allows it (RLIMIT_MEMLOCK unlimited, or CAP_IPC_LOCK as root): with
  ``MCL_FUTURE`` under a small limit, later allocations (a thread's stack)
  would start failing, which is worse than swap.
- ``memfd_secret``: the kernel can map pages that even the kernel's own
  direct map does not show, and that no other process (``/proc/<pid>/mem``,
  ptrace, root included) can read. Probed here (create, map, write, read
  back); where it holds, a ``SecretArena`` of such pages becomes where every
  ``Secret`` keeps its bytes (``keybroker.secret.keep_secrets_in``): the
  vault's data key and the decrypted credentials it keeps. What it cannot
  cover, and the report says so: the short-lived ``bytes`` copies made while
  a record is decrypted and a request signed (``reveal()``, ``hmac``), which
  live on the ordinary heap, covered by the first three steps.

No step raises: each failure becomes a ``Step`` that did not hold, with the
reason, so the gateway starts and says what it could not do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import platform
import resource
import threading
from dataclasses import dataclass

from keybroker.secret import keep_secrets_in

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
MCL_CURRENT = 1
MCL_FUTURE = 2
# memfd_secret(2) is 447 on the architectures that share the generic table
# numbering for new calls (x86-64 and arm64 both use 447).
_MEMFD_SECRET = {"x86_64": 447, "aarch64": 447, "arm64": 447}
_O_CLOEXEC = 0o2000000


@dataclass(frozen=True, slots=True)
class Step:
    """One hardening step and whether it held; ``detail`` says why not, or what it covers."""

    name: str
    held: bool
    detail: str = ""

    def line(self) -> str:
        state = "held" if self.held else "not held"
        return f"{self.name}: {state}" + (f" ({self.detail})" if self.detail else "")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def disable_core_dumps() -> Step:
    name = "core dumps off"
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        return Step(name, False, f"setrlimit failed: {exc}")
    return Step(name, resource.getrlimit(resource.RLIMIT_CORE) == (0, 0))


def make_not_dumpable() -> Step:
    name = "not dumpable"
    try:
        libc = _libc()
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return Step(name, False, f"prctl failed: {os.strerror(ctypes.get_errno())}")
        held = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError) as exc:
        return Step(name, False, f"prctl unavailable: {exc}")
    return Step(name, held)


def _limit_text(value: int) -> str:
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    return f"{value // (1024 * 1024)} MiB" if value >= 1024 * 1024 else f"{value // 1024} KiB"


def lock_memory() -> Step:
    name = "memory locked"
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and os.geteuid() != 0:
        return Step(
            name,
            False,
            f"RLIMIT_MEMLOCK is {_limit_text(soft)}; allow it with `ulimit -l unlimited` "
            "or LimitMEMLOCK=infinity in the service unit",
        )
    try:
        libc = _libc()
        if libc.mlockall(MCL_CURRENT | MCL_FUTURE) != 0:
            return Step(name, False, f"mlockall failed: {os.strerror(ctypes.get_errno())}")
    except (OSError, AttributeError) as exc:
        return Step(name, False, f"mlockall unavailable: {exc}")
    return Step(name, True)


class SecretPage:
    """One page-aligned mapping from ``memfd_secret``: hidden from the kernel's direct map.

    Raises OSError where the kernel (or architecture) has no memfd_secret.
    """

    def __init__(self, size: int = mmap.PAGESIZE) -> None:
        number = _MEMFD_SECRET.get(platform.machine())
        if number is None:
            raise OSError(f"memfd_secret: syscall number unknown on {platform.machine()}")
        libc = _libc()
        fd = libc.syscall(number, _O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), f"memfd_secret: {os.strerror(ctypes.get_errno())}")
        try:
            os.ftruncate(fd, size)
            self.memory = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.size = size

    def close(self) -> None:
        self.memory.close()


class SecretArena:
    """``Secret`` buffers carved from one ``SecretPage``: size classes, a free list each.

    ``allocate`` rounds a request up to a power of two (at least 32 bytes)
    and answers None when the arena is full or the request is larger than
    ``largest`` (the ``Secret`` then stays on the heap: ``fallbacks`` counts
    those). Thread-safe: secrets are made in executor threads too.
    """

    def __init__(self, page: SecretPage, largest: int = 16384) -> None:
        self._page = page
        self._view = memoryview(page.memory)
        self._largest = largest
        self._next = 0
        self._free: dict[int, list[int]] = {}
        self._slots: dict[int, tuple[int, int]] = {}  # id(buffer) -> (offset, size class)
        # Re-entrant: a Secret collected by the garbage collector in the middle of an
        # allocate (any allocation may run it) releases its buffer on the same thread.
        self._lock = threading.RLock()
        self.fallbacks = 0

    @property
    def size(self) -> int:
        return self._page.size

    def allocate(self, size: int) -> memoryview | None:
        if size <= 0 or size > self._largest:
            if size > 0:
                self.fallbacks += 1
            return None
        slot = max(32, 1 << (size - 1).bit_length())
        with self._lock:
            free = self._free.get(slot)
            if free:
                offset = free.pop()
            elif self._next + slot <= self._page.size:
                offset, self._next = self._next, self._next + slot
            else:
                self.fallbacks += 1
                return None
            buffer = self._view[offset : offset + size]
            self._slots[id(buffer)] = (offset, slot)
        return buffer

    def release(self, buffer: memoryview) -> None:
        with self._lock:
            found = self._slots.pop(id(buffer), None)
            if found is not None:
                offset, slot = found
                self._view[offset : offset + slot] = bytes(slot)
                self._free.setdefault(slot, []).append(offset)
        buffer.release()

    def holds(self, buffer: memoryview) -> bool:
        """Whether ``buffer`` is one this arena handed out (tests, the status report)."""
        return id(buffer) in self._slots and buffer.obj is self._page.memory


ARENA_BYTES = 256 * 1024
"""Secret memory counts against RLIMIT_MEMLOCK (8 MiB by default): a quarter MiB holds
thousands of keys and leaves the rest of the limit alone."""


def probe_secret_memory(size: int = mmap.PAGESIZE) -> tuple[Step, SecretPage | None]:
    name = "secret memory (memfd_secret)"
    try:
        page = SecretPage(size)
        page.memory[:4] = b"\x01\x02\x03\x04"
        ok = page.memory[:4] == b"\x01\x02\x03\x04"
        page.memory[:4] = b"\x00" * 4
    except (OSError, ValueError) as exc:
        return Step(name, False, f"{exc}; {_HEAP_ONLY}"), None
    detail = (
        "the vault key and decrypted credentials live in it; "
        "short-lived copies while signing stay on the heap"
    )
    return Step(name, ok, detail), page


_HEAP_ONLY = "credential bytes stay on the heap, covered by the other steps"


def harden(*, secret_memory: bool = True) -> list[Step]:
    """Apply every step, in order; never raises. Call it before the vault is unlocked:
    with ``secret_memory``, every ``Secret`` made afterwards lives in memfd_secret pages."""
    steps = [disable_core_dumps(), make_not_dumpable(), lock_memory()]
    secret_step, page = probe_secret_memory(ARENA_BYTES)
    if page is not None and secret_step.held and secret_memory:
        keep_secrets_in(SecretArena(page))
    elif page is not None:
        page.close()
    steps.append(secret_step)
    return steps
