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
  direct map does not show. Probed here (create, map, write, read back);
  where it holds, ``SecretPage`` offers such memory. Python's ``Secret``
  keeps its bytes in the ordinary heap, so credential bytes are covered by
  the first three steps, not by this one (the report says so).

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
from dataclasses import dataclass

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


def probe_secret_memory() -> tuple[Step, SecretPage | None]:
    name = "secret memory (memfd_secret)"
    try:
        page = SecretPage()
        page.memory[:4] = b"\x01\x02\x03\x04"
        ok = page.memory[:4] == b"\x01\x02\x03\x04"
        page.memory[:4] = b"\x00" * 4
    except (OSError, ValueError) as exc:
        return Step(name, False, str(exc)), None
    detail = "available; credential bytes stay in the locked, undumpable heap"
    return Step(name, ok, detail), page


def harden() -> list[Step]:
    """Apply every step, in order; never raises. Call it before the vault is unlocked."""
    steps = [disable_core_dumps(), make_not_dumpable(), lock_memory()]
    secret_step, page = probe_secret_memory()
    if page is not None:
        page.close()
    steps.append(secret_step)
    return steps
