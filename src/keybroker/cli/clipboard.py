"""Put a secret on the clipboard, and take it off again after a while.

    >>> tool = find_tool()
    >>> copy(tool, credential.secret.reveal())
    >>> schedule_clear(tool, credential.secret.reveal(), seconds=10)

The secret reaches the clipboard tool on its stdin, never in its argv
(``ps`` shows argv to every user). Clearing happens in a detached child
process so that the command returns at once and the clear still happens if
the terminal is closed or Ctrl-C is pressed; a blocking countdown would
lose the clear exactly when the user gets impatient. The child never holds
the secret: it gets a random key and an HMAC of the secret under it, reads
the clipboard back after the wait, and clears it only if the HMAC of what is
there matches (compared in constant time), so a newer copy the user made
meanwhile is left alone.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from keybroker.errors import ClipboardUnavailable

_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ClipboardTool:
    """One clipboard program: how to write to it, read it back and empty it."""

    name: str
    copy_argv: tuple[str, ...]
    paste_argv: tuple[str, ...]
    clear_argv: tuple[str, ...] | None = None
    """When None, clearing is a copy of nothing."""


TOOLS: tuple[ClipboardTool, ...] = (
    ClipboardTool(
        "wl-copy", ("wl-copy",), ("wl-paste", "--no-newline"), clear_argv=("wl-copy", "--clear")
    ),
    ClipboardTool(
        "xclip", ("xclip", "-selection", "clipboard"), ("xclip", "-selection", "clipboard", "-o")
    ),
    ClipboardTool("xsel", ("xsel", "--clipboard", "--input"), ("xsel", "--clipboard", "--output")),
    ClipboardTool("pbcopy", ("pbcopy",), ("pbpaste",)),
)


def find_tool() -> ClipboardTool:
    """The first of wl-copy, xclip, xsel, pbcopy on PATH; ClipboardUnavailable otherwise."""
    for tool in TOOLS:
        if shutil.which(tool.copy_argv[0]) is not None:
            return tool
    raise ClipboardUnavailable(
        "no clipboard tool found: install wl-clipboard (Wayland), xclip or xsel (X11); "
        "macOS has pbcopy"
    )


def can_read_back(tool: ClipboardTool) -> bool:
    return shutil.which(tool.paste_argv[0]) is not None


def copy(tool: ClipboardTool, data: bytes) -> None:
    """Hand ``data`` to the tool on stdin; ClipboardUnavailable if the tool fails."""
    _run(tool.copy_argv, data, tool.name)


def paste(tool: ClipboardTool) -> bytes:
    """What the clipboard holds now (empty when it cannot be read)."""
    try:
        done = subprocess.run(
            tool.paste_argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return b""
    return done.stdout if done.returncode == 0 else b""


def clear(tool: ClipboardTool) -> None:
    if tool.clear_argv is not None:
        _run(tool.clear_argv, b"", tool.name)
    else:
        _run(tool.copy_argv, b"", tool.name)


def _run(argv: tuple[str, ...], data: bytes, name: str) -> None:
    try:
        # Output goes to /dev/null, not a pipe: xclip and wl-copy leave a child
        # behind to serve the selection, and it would hold a pipe open forever.
        done = subprocess.run(
            argv,
            input=data,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ClipboardUnavailable(f"{name} did not finish within {_TIMEOUT_SECONDS:g} s") from None
    except OSError as exc:
        raise ClipboardUnavailable(f"cannot run {name}: {exc.strerror}") from None
    if done.returncode != 0:
        raise ClipboardUnavailable(
            f"{name} failed (exit {done.returncode}); is there a display session?"
        )


def fingerprint(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def schedule_clear(tool: ClipboardTool, data: bytes, seconds: int) -> None:
    """Start a detached process that clears the clipboard in ``seconds`` if it still holds data."""
    key = secrets.token_bytes(32)
    payload = f"{key.hex()}\n{fingerprint(key, data).hex()}\n".encode("ascii")
    argv = [
        sys.executable,
        "-c",
        "from keybroker.cli.clipboard import clear_later_main; clear_later_main()",
        tool.name,
        str(seconds),
    ]
    read_end, write_end = os.pipe()
    try:
        # posix_spawn rather than subprocess.Popen: nothing waits for this
        # child, and a Popen object would warn when collected with it running.
        file_actions = [
            (os.POSIX_SPAWN_DUP2, read_end, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
        ]
        try:
            # A session of its own: closing the terminal (SIGHUP) does not stop the clear.
            os.posix_spawn(sys.executable, argv, os.environ, file_actions=file_actions, setsid=True)
        except NotImplementedError:  # no POSIX_SPAWN_SETSID: at least leave our process group
            os.posix_spawn(sys.executable, argv, os.environ, file_actions=file_actions, setpgroup=0)
    finally:
        os.close(read_end)
    try:
        os.write(write_end, payload)  # a few hundred bytes: fits the pipe buffer
    finally:
        os.close(write_end)


def clear_later_main() -> None:
    """Entry point of the detached child: ``<tool name> <seconds>``, key and HMAC on stdin."""
    tool_name, seconds = sys.argv[1], float(sys.argv[2])
    key_hex, digest_hex = sys.stdin.read().split()
    key, expected = bytes.fromhex(key_hex), bytes.fromhex(digest_hex)
    tool = next(tool for tool in TOOLS if tool.name == tool_name)
    time.sleep(seconds)
    if hmac.compare_digest(fingerprint(key, paste(tool)), expected):
        clear(tool)
