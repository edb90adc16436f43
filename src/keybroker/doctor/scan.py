"""Finding exchange keys and secrets in a repository's files and in its git history.

    >>> findings = scan_tree(Path("."))             # tracked and untracked, not ignored
    >>> findings = scan_history(Path("."))          # every blob of every commit
    >>> findings[0].line_text()
    'bot/config.py:12 binance api key vmPU…Eh8A'

Two detectors run over every line: Yelp's detect-secrets (its plugins and
false-positive filters: keywords, high-entropy strings, PEM blocks, cloud
tokens) and the key shapes each exchange module declares in its
``KEY_PATTERNS`` (Binance's 64 letters and digits, OKX's UUID, hex secret and
passphrase assignments, Kraken's base64 secrets, Coinbase CDP key names),
plus high-entropy values assigned to names like ``secret`` or ``api_key``.
A ``Finding`` keeps only ``mask(value)``: the value itself never leaves this
module. A line carrying ``pragma: allowlist secret`` is skipped, as
detect-secrets does.

History is read with ``git log --raw`` (which blob each commit wrote) and
``git cat-file --batch``; each blob is scanned once and reported at the
oldest commit that introduced it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from keybroker.errors import InvalidInput
from keybroker.exchanges import PROFILES, KeyPattern
from keybroker.model import mask

MAX_FILE_BYTES = 2 * 1024 * 1024
Progress = Callable[[int, int], None]
"""Told (files scanned, files in all) as a scan goes: a big tree takes minutes."""
"""Bigger files (data, bundles, lockfiles of giant projects) are skipped."""
ALLOWLIST_MARK = "pragma: allowlist secret"
SKIPPED_DIRECTORIES = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache",
     ".ruff_cache", ".pytest_cache", "site-packages"}
)  # fmt: skip
# detect-secrets plugins left out: any SHA-256 in a lockfile or a test is
# "hex high entropy", and public IPs are not secrets. Exchange hex secrets
# (OKX) are caught by the exchange patterns instead, next to a key word.
_NOISY_PLUGINS = frozenset({"HexHighEntropyString", "IPPublicDetector"})
# A value assigned to a secret-sounding name: NAME = "value", NAME: value, NAME=value.
_ASSIGNED = re.compile(
    r"(?i)[\w.-]*(?:secret|api[_-]?key|apikey|passphrase|private[_-]?key|access[_-]?key|"
    r"password|passwd)[\w.-]*[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9+/=_\-]{16,})"
)
_MIN_ENTROPY_BITS = 3.5
# Lines worth detect-secrets' time: a long base64/hex-like run, a key word, a URL with
# credentials, a PEM header, a Telegram-style "digits:" token. Its per-line plugin
# dispatch is slow (about a millisecond a line), and most code lines hold none of these;
# the others are blanked in the copy it reads, so line numbers stay as they are.
_CANDIDATE = re.compile(
    r"[A-Za-z0-9+/=]{16,}|(?i:secret|passw|pwd|token|key|private|auth|credential|xox)"
    r"|://[^/\s]+@|-----BEGIN|\d{8,10}:"
)
_GIT_TIMEOUT_S = 120


@dataclass(frozen=True, slots=True)
class Finding:
    """One suspected secret: where it is and what it looks like, with the value masked."""

    path: str
    line: int
    kinds: tuple[str, ...]
    masked: str
    commit: str | None = None

    def line_text(self) -> str:
        where = f"{self.path}:{self.line}"
        if self.commit is not None:
            where += f" (commit {self.commit[:12]})"
        return f"{where} {', '.join(self.kinds)} {self.masked}"


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    if not value:
        return 0.0
    total = len(value)
    return -sum(n / total * math.log2(n / total) for n in Counter(value).values())


def exchange_patterns() -> tuple[KeyPattern, ...]:
    """Every key shape the exchange modules declare, in PROFILES order."""
    return tuple(pattern for profile in PROFILES.values() for pattern in profile.key_patterns)


def scan_lines(lines: Sequence[str], patterns: Sequence[KeyPattern]) -> dict[int, dict[str, str]]:
    """{line number: {kind: value}} from the exchange shapes and secret-name assignments."""
    found: dict[int, dict[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        if ALLOWLIST_MARK in line:
            continue
        for pattern in patterns:
            for value in pattern.find(line):
                found.setdefault(number, {}).setdefault(pattern.name, value)
        for match in _ASSIGNED.finditer(line):
            value = match.group(1)
            if entropy(value) >= _MIN_ENTROPY_BITS:
                found.setdefault(number, {}).setdefault("secret assigned to a key name", value)
    return found


@contextlib.contextmanager
def _detect_secrets_settings() -> Iterator[None]:
    """detect-secrets configured with its plugins less the noisy ones, for one whole scan."""
    # Imported here: detect-secrets loads every plugin at import, and its logger
    # setup takes over warnings; only a scan should pay for that.
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import transient_settings

    plugin_types: list[type] = list(get_mapping_from_secret_type_to_class().values())
    plugins = [{"name": t.__name__} for t in plugin_types if t.__name__ not in _NOISY_PLUGINS]
    with transient_settings({"plugins_used": plugins}):
        yield


def _detect_secrets(path: Path) -> dict[int, dict[str, str]]:
    """detect-secrets over one file on disk: {line number: {type: value}}."""
    from detect_secrets.core.scan import scan_file as detect

    found: dict[int, dict[str, str]] = {}
    for secret in detect(str(path)):
        if secret.secret_value is None:
            continue
        found.setdefault(secret.line_number, {}).setdefault(secret.type, secret.secret_value)
    return found


def scan_file(
    path: Path,
    shown_as: str,
    patterns: Sequence[KeyPattern],
    scratch: Path,
    commit: str | None = None,
) -> list[Finding]:
    """Every finding in one file, one per line, kinds merged; [] for binary or huge files.

    Runs inside ``scan_tree`` and ``scan_history``, which configure detect-secrets
    once and give a private ``scratch`` directory for the copies it reads.
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return []
        raw = path.read_bytes()
    except OSError:
        return []
    if b"\0" in raw[:8192]:
        return []
    lines = raw.decode("utf-8", "replace").splitlines()
    by_line = scan_lines(lines, patterns)
    kept = [line if _CANDIDATE.search(line) else "" for line in lines]
    if any(kept):
        # detect-secrets chooses by file name: same name, in a folder of its own.
        folder = Path(tempfile.mkdtemp(dir=scratch))
        copy = folder / path.name
        copy.write_text("\n".join(kept) + "\n", encoding="utf-8", errors="surrogateescape")
        try:
            detected = _detect_secrets(copy)
        finally:
            copy.unlink()
            folder.rmdir()
        for number, kinds in detected.items():
            if 0 < number <= len(lines) and ALLOWLIST_MARK in lines[number - 1]:
                continue
            for kind, value in kinds.items():
                by_line.setdefault(number, {}).setdefault(kind.lower(), value)
    findings = []
    for number in sorted(by_line):
        kinds = by_line[number]
        # The longest value is the most telling one to show (masked) for the line.
        value = max(kinds.values(), key=len)
        findings.append(Finding(shown_as, number, tuple(sorted(kinds)), mask(value), commit))
    return findings


def _git(root: Path, *arguments: str, stdin: bytes | None = None) -> bytes:
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), *arguments],
            input=stdin,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidInput(f"git {arguments[0]} failed in {root}: {type(exc).__name__}") from None
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InvalidInput(f"git {arguments[0]} failed in {root}: {(message or ['?'])[-1]}")
    return completed.stdout


def is_git_repository(root: Path) -> bool:
    """Whether ``root`` is inside a git work tree (and git is installed)."""
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").strip() == b"true"
    except InvalidInput:
        return False


def git_files(root: Path, *arguments: str) -> list[str]:
    """``git ls-files -z`` with ``arguments``, as paths relative to ``root``."""
    output = _git(root, "ls-files", "-z", *arguments)
    return [name for name in output.decode("utf-8", "surrogateescape").split("\0") if name]


def walk_files(root: Path) -> Iterator[str]:
    """Every file under ``root`` (relative), skipping VCS, virtualenv and cache directories."""
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        for name in sorted(names):
            full = Path(directory, name)
            if full.is_file() and not full.is_symlink():
                yield str(full.relative_to(root))


def files_to_scan(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files in a git work tree; else every file."""
    if is_git_repository(root):
        names = git_files(root, "--cached", "--others", "--exclude-standard")
        return sorted({name for name in names if (root / name).is_file()})
    return list(walk_files(root))


def scan_tree(
    root: Path, patterns: Sequence[KeyPattern] | None = None, *, progress: Progress | None = None
) -> list[Finding]:
    """Findings in the files of ``root`` as they are now."""
    patterns = exchange_patterns() if patterns is None else patterns
    findings: list[Finding] = []
    names = files_to_scan(root)
    with (
        tempfile.TemporaryDirectory(prefix="keybroker-doctor-") as scratch,
        _detect_secrets_settings(),
    ):
        for done, name in enumerate(names):
            if progress is not None:
                progress(done, len(names))
            findings.extend(scan_file(root / name, name, patterns, Path(scratch)))
    if progress is not None:
        progress(len(names), len(names))
    return findings


def _history_blobs(root: Path) -> list[tuple[str, str, str]]:
    """(commit, path, blob) for every file each commit added or changed, oldest commit first."""
    output = _git(
        root, "log", "--all", "--reverse", "--no-renames", "--raw", "--no-abbrev", "-z",
        "--format=C%H",
    )  # fmt: skip
    tokens = iter(output.decode("utf-8", "surrogateescape").split("\0"))
    blobs: list[tuple[str, str, str]] = []
    commit = ""
    for token in tokens:
        token = token.lstrip("\n")
        if token.startswith(":"):
            path = next(tokens, "")
            meta = token[1:].split()
            # meta: old mode, new mode, old blob, new blob, status
            if len(meta) == 5 and meta[4] in ("A", "M", "T") and meta[1].startswith("10"):
                blobs.append((commit, path, meta[3]))
        elif token.startswith("C") and len(token) == 41:
            commit = token[1:]
    return blobs


def _read_blobs(root: Path, shas: Iterable[str]) -> Iterator[tuple[str, bytes]]:
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return
    output = _git(root, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in wanted).encode())
    position = 0
    while position < len(output):
        end = output.index(b"\n", position)
        header = output[position:end].split()
        position = end + 1
        if len(header) != 3:  # "<sha> missing"
            continue
        size = int(header[2])
        yield header[0].decode("ascii"), output[position : position + size]
        position += size + 1


def scan_history(
    root: Path, patterns: Sequence[KeyPattern] | None = None, *, progress: Progress | None = None
) -> list[Finding]:
    """Findings in every version of every file in git history, each at the commit adding it.

    A secret removed from the files is still in history, and anyone with a
    clone has it: such a key must be revoked at the exchange, not only deleted.
    Raises InvalidInput when ``root`` is not a git work tree.
    """
    if not is_git_repository(root):
        raise InvalidInput(f"{root} is not a git repository; --history needs one")
    patterns = exchange_patterns() if patterns is None else patterns
    history = _history_blobs(root)
    first_seen: dict[str, tuple[str, str]] = {}
    for commit, path, blob in history:
        first_seen.setdefault(blob, (commit, path))
    findings: list[Finding] = []
    reported: set[tuple[str, tuple[str, ...], str]] = set()
    with (
        tempfile.TemporaryDirectory(prefix="keybroker-doctor-") as scratch,
        _detect_secrets_settings(),
    ):
        for done, (blob, content) in enumerate(_read_blobs(root, first_seen)):
            if progress is not None:
                progress(done, len(first_seen))
            if len(content) > MAX_FILE_BYTES:
                continue
            commit, path = first_seen[blob]
            folder = Path(scratch, blob)
            folder.mkdir(mode=0o700)
            original = folder / Path(path).name
            original.write_bytes(content)
            try:
                found = scan_file(original, path, patterns, Path(scratch), commit)
            finally:
                original.unlink()
                folder.rmdir()
            for finding in found:
                key = (finding.path, finding.kinds, finding.masked)
                if key not in reported:  # the same line in later versions: reported once
                    reported.add(key)
                    findings.append(finding)
    if progress is not None:
        progress(len(first_seen), len(first_seen))
    order = {commit: index for index, (commit, _, _) in reversed(list(enumerate(history)))}
    findings.sort(key=lambda f: (order.get(f.commit or "", 0), f.path, f.line))
    return findings
