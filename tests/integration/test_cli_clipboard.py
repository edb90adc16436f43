"""``keybroker keys copy`` with fake clipboard tools: real executables on a PATH of their own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli_harness import BINANCE_ENV, CLIPBOARD_PAIRS, FakeClipboard, Kb, make_fake_clipboard

SECRET = BINANCE_ENV["BINANCE_API_SECRET"].encode()


@pytest.fixture
def with_key(vault: Kb) -> Kb:
    vault("keys", "add", "b1", "--exchange", "binance", "--from-env", env=BINANCE_ENV)
    return vault


@pytest.mark.parametrize("tool", list(CLIPBOARD_PAIRS))
def test_copy_hands_the_secret_over_stdin_to_the_first_tool(
    with_key: Kb, tmp_path: Path, tool: str
) -> None:
    clipboard = make_fake_clipboard(tmp_path, tool)
    run = with_key("keys", "copy", "b1", "--clear-after", "60", env=clipboard.env)
    assert clipboard.read() == SECRET
    assert f"with {tool}" in run.stdout
    assert "cleared in 60 s" in run.stdout
    assert SECRET.decode() not in run.text
    # Only arguments in argv (ps shows argv to every user); the secret came on stdin.
    assert SECRET not in clipboard.argv_log.read_bytes()


def test_tool_order_prefers_wayland_then_xclip(with_key: Kb, tmp_path: Path) -> None:
    wayland = make_fake_clipboard(tmp_path, "wl-copy")
    x11 = make_fake_clipboard(tmp_path, "xclip")
    env = {**wayland.env, "PATH": f"{x11.bin_dir}:{wayland.bin_dir}"}
    assert "with wl-copy" in with_key("keys", "copy", "b1", env=env).stdout


@pytest.mark.slow
def test_the_clipboard_is_cleared_after_the_wait(with_key: Kb, tmp_path: Path) -> None:
    clipboard = make_fake_clipboard(tmp_path, "wl-copy")
    with_key("keys", "copy", "b1", "--clear-after", "4", env=clipboard.env)
    # The command returned without waiting: the secret is still there, and a
    # detached child clears it later. (No stopwatch: a CLI start on a loaded
    # machine took over a second.)
    assert clipboard.read() == SECRET
    assert clipboard.wait_until(b"", timeout=20) == b""
    assert "--clear" in clipboard.argv_log.read_text()


def test_a_newer_copy_is_left_alone(with_key: Kb, fake_clipboard: FakeClipboard) -> None:
    with_key("keys", "copy", "b1", "--clear-after", "1", env=fake_clipboard.env)
    fake_clipboard.file.write_bytes(b"something the user copied since")
    time.sleep(2.5)  # past the clear-after, plus the child's start-up
    assert fake_clipboard.read() == b"something the user copied since"
    assert fake_clipboard.argv_log.read_text().count(" -o") == 1  # it did look


def test_the_child_also_clears_when_run_as_a_subprocess(
    with_key: Kb, fake_clipboard: FakeClipboard
) -> None:
    with_key.subprocess("keys", "copy", "b1", "--clear-after", "1", env=fake_clipboard.env)
    assert fake_clipboard.wait_until(b"") == b""


def test_no_clipboard_tool_is_a_clear_error(with_key: Kb, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    run = with_key("keys", "copy", "b1", env={"PATH": str(empty)}, expect=2)
    assert run.stderr.startswith("keybroker: no clipboard tool found: install wl-clipboard")
    assert len(run.stderr.splitlines()) == 1


def test_a_failing_tool_is_reported(with_key: Kb, tmp_path: Path) -> None:
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    script = broken / "xclip"
    script.write_text('#!/bin/sh\necho "Error: cannot open display" >&2\nexit 1\n')
    script.chmod(0o755)
    run = with_key("keys", "copy", "b1", env={"PATH": str(broken)}, expect=2)
    assert run.stderr == "keybroker: xclip failed (exit 1); is there a display session?\n"


def test_copy_needs_the_passphrase(with_key: Kb, fake_clipboard: FakeClipboard) -> None:
    env = {**fake_clipboard.env, "KEYBROKER_PASSPHRASE": "not the passphrase!"}
    run = with_key("keys", "copy", "b1", env=env, expect=2)
    assert run.stderr == "keybroker: wrong passphrase\n"
    assert fake_clipboard.read() == b""
