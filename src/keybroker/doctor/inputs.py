"""Everything the checks read, gathered once by the caller, so each check is a plain function.

    >>> inputs = Inputs(settings=Settings(home), environ={}, repo=Path("."))
    >>> results = run(inputs)

The real system (uid, resource limits, ``/proc/swaps``, ``/sys``) comes in as
``SystemFacts``, read by ``SystemFacts.current()`` in the CLI; tests build one
with the values and paths they want. The vault arrives already opened (and
unlocked when a check needs what is sealed in it); a vault that could not be
opened arrives as the one-line reason instead.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from keybroker.settings import Settings
from keybroker.vault import Vault

Subjects = Callable[[str], Iterable[tuple[str, object]]]
"""canary → (label, object) pairs whose repr, str and logs must not show the canary."""


def _device_number(path: str) -> str | None:
    """``major:minor`` of a block device, or of the device a swap file lives on."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    number = info.st_rdev if info.st_rdev else info.st_dev
    return f"{os.major(number)}:{os.minor(number)}"


@dataclass(frozen=True, slots=True)
class SystemFacts:
    """What the process checks read from the running system."""

    euid: int
    core_limit: tuple[int, int]
    memlock_limit: tuple[int, int]
    swaps_path: Path = Path("/proc/swaps")
    sys_root: Path = Path("/sys")
    device_number: Callable[[str], str | None] = _device_number

    @classmethod
    def current(cls) -> SystemFacts:
        """This process's uid and limits; ``/proc`` and ``/sys`` are read by the checks."""
        return cls(
            euid=os.geteuid(),
            core_limit=resource.getrlimit(resource.RLIMIT_CORE),
            memlock_limit=resource.getrlimit(resource.RLIMIT_MEMLOCK),
        )


@dataclass
class Inputs:
    """One doctor run: where to look, which optional checks to run, and the vault if any.

    ``credential`` narrows the vault checks to one credential (``keybroker
    incident`` ends with such a run). ``http`` is used by ``--online`` only.
    """

    settings: Settings
    environ: Mapping[str, str]
    repo: Path
    history: bool = False
    online: bool = False
    passphrase_file: Path | None = None
    credential: str | None = None
    vault: Vault | None = None
    vault_problem: str | None = None
    """Why the vault could not be opened or unlocked, when that is so."""
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    progress: Callable[[str, int, int], None] | None = None
    """Told (what is scanned, done, in all) during the long scans, for a progress display."""
    system: SystemFacts = field(default_factory=SystemFacts.current)
    http: httpx.Client | None = None
    canary_subjects: Subjects | None = None
    """Replaces the built-in list of objects the output check builds (tests inject a leaky one)."""
