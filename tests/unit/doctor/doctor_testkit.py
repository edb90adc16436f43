"""Shared pieces of the doctor tests: a planted fake key, real git repos, inputs with safe facts."""

from __future__ import annotations

import os
import resource
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from keybroker.doctor import Inputs, SystemFacts
from keybroker.settings import Settings

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
START = datetime.fromtimestamp(START_MS / 1000, tz=UTC)

# A fake Binance-shaped key: 64 letters and digits, mixed case (obviously not real).
PLANTED = "FakeBinanceKey0NotReal" + "x1Y2" * 10 + "AB"
assert len(PLANTED) == 64
OLD_PLANTED = "OldFakeKey0NotReal00" + "q7W8" * 11
assert len(OLD_PLANTED) == 64

SAFE_SYSTEM = SystemFacts(
    euid=1000,
    core_limit=(0, 0),
    memlock_limit=(resource.RLIM_INFINITY, resource.RLIM_INFINITY),
    swaps_path=Path("/nonexistent/swaps"),
)


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout


def clean_repo(root: Path) -> Path:
    """A git repo with a bot that reads its key from the environment, one commit."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    (root / "bot.py").write_text(
        "import os\n"
        "API_KEY = os.environ['BINANCE_API_KEY']\n"
        "DIGEST = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n"
    )
    (root / ".gitignore").write_text(".env*\n!.env.example\n")
    (root / ".env.example").write_text("BINANCE_API_KEY=\nBINANCE_API_SECRET=\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "bot")
    return root


def leaky_repo(root: Path) -> Path:
    """A repo whose history has OLD_PLANTED (committed, then removed) and whose file has PLANTED."""
    clean_repo(root)
    (root / "config.py").write_text(f'BINANCE_SECRET = "{OLD_PLANTED}"\n')
    git(root, "add", "config.py")
    git(root, "commit", "-q", "-m", "oops")
    (root / "config.py").write_text("BINANCE_SECRET = os.environ['BINANCE_API_SECRET']\n")
    git(root, "commit", "-q", "-am", "remove the key")
    (root / "settings.py").write_text(f"# trading\nKEY = '{PLANTED}'\n")
    return root


def make_inputs(home: Path, repo: Path, **changes: object) -> Inputs:
    inputs = Inputs(settings=Settings(home), environ={}, repo=repo, system=SAFE_SYSTEM)
    for name, value in changes.items():
        setattr(inputs, name, value)
    return inputs
