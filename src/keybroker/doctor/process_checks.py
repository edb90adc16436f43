"""Check 10: what this machine and this user's limits let happen to memory holding a key.

    >>> check_swap(Inputs(..., system=SystemFacts(euid=1000, core_limit=(0, 0),
    ...     memlock_limit=(8 << 20, 8 << 20), swaps_path=Path("/proc/swaps"))))

The gateway hardens itself at start (core dumps off, not dumpable, memory
locked where the limit allows); bots that hold their own keys (the
adapters) do not, and both inherit the limits checked here. Swap is the
quiet one (seed 003): a page holding a decrypted key, written to an
unencrypted swap device, stays on disk after the process is gone. Swap on
dm-crypt (directly, or under LVM) and zram (compressed RAM) are fine.
"""

from __future__ import annotations

import resource
from pathlib import Path

from keybroker.doctor.inputs import Inputs, SystemFacts
from keybroker.doctor.result import Result

_MAX_DEPTH = 8


def check_root(inputs: Inputs) -> list[Result]:
    """Running as root -> warn: every process on the machine is then one bug from the keys."""
    if inputs.system.euid == 0:
        return [
            Result(
                "process",
                "process.root",
                "warn",
                "running as root: run keybroker and bots as an ordinary user that owns the vault",
            )
        ]
    return [Result("process", "process.root", "pass", f"running as uid {inputs.system.euid}")]


def _limit_text(value: int) -> str:
    if value == resource.RLIM_INFINITY:
        return "unlimited"
    if value >= 1 << 20:
        return f"{value >> 20} MiB"
    return f"{value >> 10} KiB" if value >= 1 << 10 else f"{value} bytes"


def check_core_dumps(inputs: Inputs) -> list[Result]:
    """RLIMIT_CORE above 0 -> warn: a crash writes the process's memory (and keys) to disk."""
    soft, _hard = inputs.system.core_limit
    if soft != 0:
        return [
            Result(
                "process",
                "process.core_dumps",
                "warn",
                f"core dumps are possible (RLIMIT_CORE {_limit_text(soft)}): a crashing bot "
                "that holds a key writes it to disk; `ulimit -c 0` or LimitCORE=0 in the "
                "service unit (the gateway turns them off for itself)",
            )
        ]
    return [Result("process", "process.core_dumps", "pass", "core dumps are off (RLIMIT_CORE 0)")]


def check_memlock(inputs: Inputs) -> list[Result]:
    """The gateway can lock its memory (out of swap) only with an unlimited RLIMIT_MEMLOCK."""
    soft, _hard = inputs.system.memlock_limit
    if soft == resource.RLIM_INFINITY or inputs.system.euid == 0:
        return [Result("process", "process.memlock", "pass", "the gateway can lock its memory")]
    return [
        Result(
            "process",
            "process.memlock",
            "warn",
            f"RLIMIT_MEMLOCK is {_limit_text(soft)}: the gateway cannot lock its memory out of "
            "swap; `ulimit -l unlimited` or LimitMEMLOCK=infinity in the service unit",
        )
    ]


def swap_entries(swaps_path: Path) -> list[str]:
    """Device or file names from ``/proc/swaps`` (octal escapes such as ``\\040`` decoded)."""
    try:
        lines = swaps_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    names = []
    for line in lines[1:]:
        fields = line.split()
        if fields:
            names.append(fields[0].encode().decode("unicode_escape"))
    return names


def is_encrypted(system: SystemFacts, number: str) -> bool:
    """Whether block device ``major:minor`` is dm-crypt, or sits on one (LVM on LUKS)."""
    pending = [system.sys_root / "dev" / "block" / number]
    for _ in range(_MAX_DEPTH):
        next_level = []
        for block in pending:
            try:
                uuid = (block / "dm" / "uuid").read_text().strip()
            except OSError:
                uuid = ""
            if uuid.startswith("CRYPT-"):
                return True
            slaves = block / "slaves"
            if slaves.is_dir():
                next_level += [
                    system.sys_root / "class" / "block" / s.name for s in slaves.iterdir()
                ]
        if not next_level:
            return False
        pending = next_level
    return False


def check_swap(inputs: Inputs) -> list[Result]:
    """Swap in use and not encrypted -> warn: key pages may be written to disk in clear."""
    system = inputs.system
    entries = swap_entries(system.swaps_path)
    if not entries:
        return [Result("process", "process.swap", "pass", "no swap in use")]
    clear = []
    for name in entries:
        if Path(name).name.startswith("zram"):
            continue  # compressed RAM, never on disk
        number = system.device_number(name)
        if number is None or not is_encrypted(system, number):
            clear.append(name)
    if clear:
        return [
            Result(
                "process",
                "process.swap",
                "warn",
                "swap without encryption: memory holding keys may be written to disk in "
                "clear; encrypt swap (dm-crypt), use zram, or turn it off (swapoff -a)",
                tuple(clear),
            )
        ]
    return [Result("process", "process.swap", "pass", "swap is encrypted (or in RAM)")]
