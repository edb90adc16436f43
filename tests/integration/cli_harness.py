"""Drives the real ``keybroker`` command line against real vault files (used by conftest.py).

    def test_something(vault: Kb) -> None:
        vault("keys", "add", "bot1", "--exchange", "binance", "--from-env", env=BINANCE_ENV)
        assert "bot1" in vault("keys", "list").stdout

``Kb.__call__`` runs the CLI in-process with typer's CliRunner (fast, and
log records reach caplog); ``Kb.subprocess`` runs ``python -m keybroker``
in a new session without a terminal, as a script or CI job would. Every run
is remembered in ``Kb.runs`` so the leak test can search all output.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from keybroker.cli import app

SMALL_KDF = ("--kdf-memory-mib", "64", "--kdf-iterations", "1", "--kdf-lanes", "1")
PASSPHRASE = "test vault passphrase, not real"

# Obviously fake keys in the shapes the exchanges use.
BINANCE_ENV = {
    "BINANCE_API_KEY": "FAKEbinanceApiKey00000000000000000000000000000000000000000000001",
    "BINANCE_API_SECRET": "FAKEbinanceApiSecret000000000000000000000000000000000000000000001",
}
OKX_ENV = {
    "OKX_API_KEY": "00000000-fake-okx0-key0-000000000001",
    "OKX_API_SECRET": "FAKEOKXSECRET000000000000000000001",
    "OKX_PASSPHRASE": "FakeOkxPass1!",
}


@dataclass(frozen=True)
class Run:
    """One finished command: what it printed and how it ended."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    exception: str = ""
    """repr and str of an exception that escaped the CLI (there should be none)."""

    @property
    def text(self) -> str:
        return self.stdout + self.stderr + self.exception


class Kb:
    """The CLI pointed at one home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env: dict[str, str | None] = {"KEYBROKER_PASSPHRASE": PASSPHRASE}
        self.runs: list[Run] = []

    @property
    def vault_path(self) -> Path:
        return self.home / "vault.db"

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        expect: int | None = 0,
    ) -> Run:
        """Run in-process; assert the exit code unless ``expect`` is None."""
        result = CliRunner().invoke(
            app, ["--home", str(self.home), *args], input=input, env={**self.env, **(env or {})}
        )
        escaped = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            escaped = f"{result.exception!r} {result.exception}"
        run = Run(tuple(args), result.exit_code, result.stdout, result.stderr, escaped)
        return self._check(run, expect)

    def subprocess(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        expect: int | None = 0,
        timeout: float = 30,
    ) -> Run:
        """Run ``python -m keybroker`` with no terminal (a new session), as CI would."""
        merged = {**os.environ, **self.env, **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "keybroker", "--home", str(self.home), *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            env={name: value for name, value in merged.items() if value is not None},
            timeout=timeout,
            start_new_session=True,
            check=False,
        )
        return self._check(Run(tuple(args), done.returncode, done.stdout, done.stderr), expect)

    def _check(self, run: Run, expect: int | None) -> Run:
        self.runs.append(run)
        assert not run.exception, run
        if expect is not None:
            assert run.code == expect, run
        return run


def copy_vault(template: Path, kb: Kb) -> None:
    """Give ``kb`` its own copy of a vault file, with the modes ``init`` would have set."""
    kb.home.mkdir(mode=0o700, parents=True)
    shutil.copyfile(template, kb.vault_path)
    kb.vault_path.chmod(0o600)


# -- fake clipboard tools: real executables that keep the clipboard in a file ------------

_FAKE_TOOLS = {
    # name: shell body; $CLIP is the clipboard file, $0's arguments are logged.
    "wl-copy": 'if [ "$1" = "--clear" ]; then : > "$CLIP"; else /bin/cat > "$CLIP"; fi',
    "wl-paste": '/bin/cat "$CLIP"',
    "xclip": 'case " $* " in *" -o "*) /bin/cat "$CLIP";; *) /bin/cat > "$CLIP";; esac',
    "xsel": 'case " $* " in *" --output "*) /bin/cat "$CLIP";; *) /bin/cat > "$CLIP";; esac',
    "pbcopy": '/bin/cat > "$CLIP"',
    "pbpaste": '/bin/cat "$CLIP"',
}
CLIPBOARD_PAIRS = {"wl-copy": "wl-paste", "xclip": "xclip", "xsel": "xsel", "pbcopy": "pbpaste"}


@dataclass(frozen=True)
class FakeClipboard:
    """A directory that is the whole PATH, holding one fake clipboard tool (and its paste)."""

    bin_dir: Path
    file: Path
    argv_log: Path

    @property
    def env(self) -> dict[str, str | None]:
        return {"PATH": str(self.bin_dir), "CLIP": str(self.file)}

    def read(self) -> bytes:
        return self.file.read_bytes() if self.file.exists() else b""

    def wait_until(self, expected: bytes, timeout: float = 8.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.read() == expected:
                break
            time.sleep(0.05)
        return self.read()


def make_fake_clipboard(root: Path, tool: str) -> FakeClipboard:
    bin_dir = root / f"bin-{tool}"
    bin_dir.mkdir()
    clip = root / f"clipboard-{tool}"
    argv_log = root / f"argv-{tool}.log"
    for name in {tool, CLIPBOARD_PAIRS[tool]}:
        script = bin_dir / name
        script.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "{argv_log}"\n{_FAKE_TOOLS[name]}\n'
        )
        script.chmod(0o755)
    return FakeClipboard(bin_dir, clip, argv_log)


# -- a real pseudo-terminal, for the hidden prompts ---------------------------------------


@dataclass
class Terminal:
    """``python -m keybroker`` attached to a pseudo-terminal: prompts are real, echo is real."""

    process: subprocess.Popen[bytes]
    master: int
    transcript: bytearray

    def expect(self, text: str, timeout: float = 15.0) -> None:
        """Read until ``text`` has appeared in the transcript."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.transcript:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"waited for {text!r}; got {bytes(self.transcript)!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                self.transcript += chunk
        assert text.encode() in self.transcript, bytes(self.transcript)

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 15.0) -> int:
        """Wait for the exit code, keeping whatever else was printed."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.transcript += os.read(self.master, 4096)
                except OSError:
                    break
        code = self.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        try:
            while select.select([self.master], [], [], 0.05)[0]:
                chunk = os.read(self.master, 4096)
                if not chunk:
                    break
                self.transcript += chunk
        except OSError:
            pass
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        os.close(self.master)


def start_terminal(home: Path, *args: str, env: Mapping[str, str | None] | None = None) -> Terminal:
    """Start the CLI on a fresh pseudo-terminal (no controlling terminal: a new session)."""
    master, slave = pty.openpty()
    merged = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "keybroker", "--home", str(home), *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={name: value for name, value in merged.items() if value is not None},
        start_new_session=True,
    )
    os.close(slave)
    return Terminal(process, master, bytearray())


StartTerminal = Callable[..., Terminal]
"""The ``terminal`` fixture: ``terminal(*args, env=...)`` -> Terminal."""
