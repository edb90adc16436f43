"""Check 3: keybroker's own files, and where the vault passphrase comes from.

    >>> check_own_files(inputs)   # home 0700, vault.db and audit.db 0600

A vault readable by others is an offline guessing target for its
passphrase; an audit log writable by others can be cut short. The
passphrase in ``KEYBROKER_PASSPHRASE`` is readable by every process of the
same user (``/proc/<pid>/environ``) and by whatever logs environments, so a
vault holding production keys should take it from a 0600 file instead.
"""

from __future__ import annotations

import stat
from pathlib import Path

from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result
from keybroker.settings import PASSPHRASE_VARIABLE


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private(name: str, path: Path, wanted: int, what: str) -> Result:
    if not path.exists():
        return Result("files", name, "pass", f"no {what} at {path} yet")
    mode = _mode(path)
    if mode & 0o077:
        return Result(
            "files",
            name,
            "fail",
            f"{what} {path} is mode {mode:04o}: others can read or change it; "
            f"fix it with: chmod {wanted:o} {path}",
        )
    return Result("files", name, "pass", f"{what} {path} is private ({mode:04o})")


def check_own_files(inputs: Inputs) -> list[Result]:
    """The home directory 0700; the vault and the audit log 0600."""
    settings = inputs.settings
    return [
        _private("files.home", settings.home, 0o700, "keybroker home"),
        _private("files.vault", settings.vault_path, 0o600, "vault"),
        _private("files.audit", settings.audit_path, 0o600, "audit log"),
    ]


def production_credentials(inputs: Inputs) -> list[str]:
    """Names of the vault's production credentials (all of them, whatever the scope)."""
    if inputs.vault is None:
        return []
    return [r.name for r in inputs.vault.list_credentials() if r.environment == "production"]


def check_passphrase_source(inputs: Inputs) -> list[Result]:
    """KEYBROKER_PASSPHRASE with production keys -> warn; a passphrase file must be 0600."""
    results = []
    in_environment = bool(inputs.environ.get(PASSPHRASE_VARIABLE))
    production = production_credentials(inputs)
    if in_environment and production:
        results.append(
            Result(
                "files",
                "files.passphrase_variable",
                "warn",
                f"${PASSPHRASE_VARIABLE} is set and the vault holds production keys: any "
                "process of this user can read it; use --passphrase-file (mode 600) instead",
                tuple(production),
            )
        )
    elif in_environment:
        results.append(
            Result(
                "files",
                "files.passphrase_variable",
                "pass",
                f"${PASSPHRASE_VARIABLE} is set; acceptable while the vault holds no "
                "production key, use --passphrase-file before adding one",
            )
        )
    else:
        results.append(
            Result(
                "files",
                "files.passphrase_variable",
                "pass",
                f"${PASSPHRASE_VARIABLE} is not set",
            )
        )
    file = inputs.passphrase_file
    if file is None:
        results.append(
            Result("files", "files.passphrase_file", "pass", "no --passphrase-file given")
        )
    elif not file.expanduser().is_file():
        results.append(
            Result("files", "files.passphrase_file", "fail", f"no passphrase file at {file}")
        )
    else:
        results.append(
            _private("files.passphrase_file", file.expanduser(), 0o600, "passphrase file")
        )
    return results
