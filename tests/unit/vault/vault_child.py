"""Second processes for the crash and concurrency tests (run as a script, never imported).

    python vault_child.py add PATH PASSPHRASE PREFIX COUNT   # waits for a stdin line, adds COUNT
    python vault_child.py serve                              # one passwd process per request:

``serve`` reads JSON lines ``{"path", "old", "new", "exit_at"}``. For each it forks a
process that opens and unlocks the vault, and answers ``ready`` once that
process is about to call ``change_passphrase``. The next line, ``kill`` or
``wait``, decides whether it is SIGKILLed at that moment or left to finish;
the answer is ``exit CODE``. With EXIT_AT > 0 the process instead dies by
itself just before its EXIT_AT-th SQL statement (exit code 17).

Forking from this small, single-threaded, already-imported process makes
each passwd process start in milliseconds instead of an interpreter start.
The passphrases on the command line are the tests' fake ones.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from pathlib import Path

from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault


def passwd(path: Path, old: str, new: str, exit_at: int, ready: int) -> None:
    vault = Vault.open(path)
    vault.unlock(Secret(old))
    if exit_at > 0:
        seen = 0

        def die_at_statement(statement: str) -> None:
            # Called as each SQL statement starts: dying here means the
            # statements before it ran and this one did not.
            nonlocal seen
            seen += 1
            if seen == exit_at:
                os._exit(17)

        vault._conn.set_trace_callback(die_at_statement)
    os.write(ready, b"r")
    vault.change_passphrase(Secret(new))
    vault.close()


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            # The child leaves only through os._exit: it must never return
            # into the server's loop.
            os.close(read_end)
            try:
                passwd(
                    Path(request["path"]),
                    request["old"],
                    request["new"],
                    request["exit_at"],
                    write_end,
                )
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        os.close(write_end)
        got_ready = os.read(read_end, 1) == b"r"
        os.close(read_end)
        print("ready" if got_ready else "failed", flush=True)
        if sys.stdin.readline().strip() == "kill":
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


def add(path: Path, passphrase: str, prefix: str, count: int) -> None:
    vault = Vault.open(path)
    vault.unlock(Secret(passphrase))
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        name = f"{prefix}-{i:03d}"
        vault.add(name, "binance", KeyMaterial(f"FAKE-KEY-{name}", Secret(f"FAKE-SECRET-{name}")))
    print("done", flush=True)
    vault.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        add(Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
