"""The ``tokens``, ``halt`` and ``resume`` commands on the root app, in-process and in a subprocess.

The lead wires ``register(app)`` into keybroker.cli; until then (and
harmlessly after) the tests add the commands to the app they drive, and
``run_subprocess`` starts a real ``keybroker`` process that does the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from cli_harness import Kb, Run

from keybroker.cli import app, halt_commands, token_commands


def ensure_registered() -> None:
    if not any(group.name == "tokens" for group in app.registered_groups):
        token_commands.register(app)
    if not any(command.name == "halt" for command in app.registered_commands):
        halt_commands.register(app)


_LAUNCH = (
    "import sys\n"
    "sys.path.insert(0, sys.argv.pop(1))\n"
    "from cli_registration import ensure_registered\n"
    "ensure_registered()\n"
    "from keybroker.cli import main\n"
    "sys.argv[0] = 'keybroker'\n"
    "main()\n"
)


def run_subprocess(
    kb: Kb,
    *args: str,
    env: Mapping[str, str | None] | None = None,
    expect: int | None = 0,
    timeout: float = 30,
) -> Run:
    """Like ``Kb.subprocess``: a real process, no terminal, remembered in ``kb.runs``."""
    merged = {**os.environ, **kb.env, **(env or {})}
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCH, here, "--home", str(kb.home), *args],
        input="",
        capture_output=True,
        text=True,
        env={name: value for name, value in merged.items() if value is not None},
        timeout=timeout,
        start_new_session=True,
        check=False,
    )
    run = Run(tuple(args), done.returncode, done.stdout, done.stderr)
    kb.runs.append(run)
    if expect is not None:
        assert run.code == expect, run
    return run
