"""Fixtures for the command-line tests; the machinery is in cli_harness.py."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cli_harness import (
    PASSPHRASE,
    SMALL_KDF,
    FakeClipboard,
    Kb,
    StartTerminal,
    Terminal,
    copy_vault,
    make_fake_clipboard,
    start_terminal,
)

from keybroker.vault import Vault


@pytest.fixture
def kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kb:
    """The CLI with a home directory but no vault yet."""
    # In-process runs skip most of the wrong-passphrase pause (the vault's own
    # test knob); a subprocess test keeps the real delay.
    monkeypatch.setattr(Vault, "wrong_passphrase_delay", 0.05)
    return Kb(tmp_path / "home")


@pytest.fixture(scope="session")
def template_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One empty vault made by ``keybroker init``; tests get copies (init is the slow part)."""
    home = tmp_path_factory.mktemp("template") / "home"
    Kb(home)("init", *SMALL_KDF)
    return home / "vault.db"


@pytest.fixture
def vault(kb: Kb, template_vault: Path) -> Kb:
    """The CLI with an empty vault (small KDF, passphrase from the environment)."""
    copy_vault(template_vault, kb)
    return kb


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def fake_clipboard(tmp_path: Path) -> FakeClipboard:
    return make_fake_clipboard(tmp_path, "xclip")


@pytest.fixture
def terminal(kb: Kb) -> Iterator[StartTerminal]:
    """``terminal(*args, env=...)`` starts the CLI on a pseudo-terminal; killed at the end."""
    opened: list[Terminal] = []

    def start(*args: str, env: Mapping[str, str | None] | None = None) -> Terminal:
        session = start_terminal(kb.home, *args, env=env)
        opened.append(session)
        return session

    yield start
    for session in opened:
        session.close()
