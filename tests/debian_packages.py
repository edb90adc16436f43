"""Debian programs the tests drive for real (redis-server, chromium, nginx), installed on demand.

    >>> redis = require_program("redis-server", package="redis-server")

CI runs on a clean Debian machine with only Python, pip and apt. Rather
than list every package in ``.ci/run`` (and let the list drift from what
the tests use), a test that needs a real server asks for its program here:
when it is missing and we are root with apt-get, the package is installed
once per session (``apt-get update`` at most once); otherwise the test
fails with the command that would install it. Never a skip: a skipped
Redis or browser test is a green CI that proved nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

_lock = threading.Lock()
_updated = False


def require_program(program: str, *, package: str, extra_packages: tuple[str, ...] = ()) -> str:
    """The absolute path of ``program``, installing Debian's ``package`` first if it is missing."""
    global _updated
    found = shutil.which(program) or _in_sbin(program)
    if found:
        return found
    with _lock:
        found = shutil.which(program) or _in_sbin(program)
        if found:
            return found
        apt = shutil.which("apt-get")
        if apt is None or os.geteuid() != 0:
            raise RuntimeError(
                f"{program} is missing; install it with: "
                f"sudo apt-get install -y {' '.join((package, *extra_packages))}"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not _updated:
            subprocess.run([apt, "update", "-q"], check=True, env=env, capture_output=True)
            _updated = True
        subprocess.run(
            [apt, "install", "-y", "-q", "--no-install-recommends", package, *extra_packages],
            check=True,
            env=env,
            capture_output=True,
        )
    found = shutil.which(program) or _in_sbin(program)
    if not found:
        raise RuntimeError(f"installed {package} but {program} is still not on PATH")
    return found


def _in_sbin(program: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        path = os.path.join(folder, program)
        if os.access(path, os.X_OK):
            return path
    return None
