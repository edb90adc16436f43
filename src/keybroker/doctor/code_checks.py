"""Checks 1 and 2: secrets in the repository (and its history), and its .env files (seed 001).

    >>> check_secrets_in_files(inputs)      # [Result(... "fail", "2 suspected secrets ...")]

A secret that ever reached a commit is in every clone: the advice for
history findings is to revoke the key at the exchange, because deleting the
line does not take it back.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result
from keybroker.doctor.scan import (
    SKIPPED_DIRECTORIES,
    Finding,
    Progress,
    git_files,
    is_git_repository,
    scan_history,
    scan_tree,
)
from keybroker.errors import InvalidInput

ENV_TEMPLATES = (".example", ".sample", ".template", ".dist", ".defaults")
"""``.env.example`` and friends hold variable names for others to copy, not values."""


def _secrets_result(name: str, findings: list[Finding], where: str, fix: str) -> Result:
    if not findings:
        return Result("secrets", name, "pass", f"no exchange key or secret found in {where}")
    count = len(findings)
    noun = "suspected secret" if count == 1 else "suspected secrets"
    return Result(
        "secrets",
        name,
        "fail",
        f"{count} {noun} in {where}: {fix}",
        tuple(finding.line_text() for finding in findings),
    )


def _told(inputs: Inputs, what: str) -> Progress | None:
    """The scan's progress, passed on to the caller's display with what is being scanned."""
    show = inputs.progress
    if show is None:
        return None
    return lambda done, total: show(what, done, total)


def check_secrets_in_files(inputs: Inputs) -> list[Result]:
    """Exchange key shapes, key-named assignments and detect-secrets findings in the files."""
    findings = scan_tree(inputs.repo, progress=_told(inputs, "files"))
    return [
        _secrets_result(
            "secrets.files",
            findings,
            f"the files of {inputs.repo}",
            "move each into the vault (keybroker keys import-env / keys add), revoke any "
            "that was ever shared, or mark a false positive with `pragma: allowlist secret`",
        )
    ]


def check_secrets_in_history(inputs: Inputs) -> list[Result]:
    """The same over every blob in git history (``--history`` only)."""
    if not inputs.history:
        return []
    try:
        findings = scan_history(inputs.repo, progress=_told(inputs, "git history"))
    except InvalidInput as error:
        return [Result("secrets", "secrets.history", "warn", str(error))]
    return [
        _secrets_result(
            "secrets.history",
            findings,
            f"the git history of {inputs.repo}",
            "every clone holds these: revoke each key at its exchange and make a new one; "
            "rewriting history does not take back copies",
        )
    ]


def is_env_file(name: str) -> bool:
    """``.env``, ``.env.production``, ``prod.env``; not ``.env.example`` and friends."""
    lowered = name.lower()
    if lowered.endswith(ENV_TEMPLATES):
        return False
    return lowered == ".env" or lowered.startswith(".env.") or lowered.endswith(".env")


def find_env_files(root: Path) -> list[str]:
    """Env files under ``root`` (relative paths), ignored ones included; caches skipped."""
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        for name in sorted(names):
            path = Path(directory, name)
            if is_env_file(name) and path.is_file() and not path.is_symlink():
                found.append(str(path.relative_to(root)))
    return found


def _ignored(root: Path, names: list[str]) -> set[str]:
    ignored = git_files(root, "--others", "--ignored", "--exclude-standard")
    return set(names) & set(ignored)


def check_env_files(inputs: Inputs) -> list[Result]:
    """Each .env file: mode 0600, listed in .gitignore, never tracked."""
    root = inputs.repo
    names = find_env_files(root)
    if not names:
        return [Result("env", "env.files", "pass", f"no .env file under {root}")]
    results = []
    loose = [
        f"{name} mode {stat.S_IMODE((root / name).stat().st_mode):04o}"
        for name in names
        if (root / name).stat().st_mode & 0o077
    ]
    results.append(
        Result(
            "env", "env.mode", "fail",
            "group or others can read these .env files: chmod 600 each",
            tuple(loose),
        )
        if loose
        else Result("env", "env.mode", "pass", f"every .env file is private (0600): {len(names)}")
    )  # fmt: skip
    if not is_git_repository(root):
        results.append(
            Result("env", "env.git", "pass", f"{root} is not a git repository: nothing to track")
        )
        return results
    tracked = sorted(set(git_files(root, "--cached")) & set(names))
    results.append(
        Result(
            "env", "env.tracked", "fail",
            "git tracks these .env files: `git rm --cached FILE`, add it to .gitignore, and "
            "revoke the keys in it (they are in the history now)",
            tuple(tracked),
        )
        if tracked
        else Result("env", "env.tracked", "pass", "git tracks no .env file")
    )  # fmt: skip
    unignored = sorted(set(names) - _ignored(root, names) - set(tracked))
    results.append(
        Result(
            "env", "env.ignored", "fail",
            "these .env files are not in .gitignore: one `git add .` away from a commit; "
            "add `.env*` (and `!.env.example`) to .gitignore",
            tuple(unignored),
        )
        if unignored
        else Result("env", "env.ignored", "pass", "every untracked .env file is git-ignored")
    )  # fmt: skip
    return results
