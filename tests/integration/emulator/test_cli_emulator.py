"""``keybroker emulator``: prints a key and its URL when ready; bad input is one line, exit 1."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from keybroker.cli.emulator_commands import register

# The command on a Typer app of its own: the root app adds it with the same register().
LAUNCH = (
    "import typer\n"
    "from keybroker.cli.emulator_commands import register\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "register(app)\n"
    "app(prog_name='keybroker')\n"
)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def _read_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line and time.monotonic() > deadline:
        pytest.fail("the emulator printed nothing")
    return line.strip()


def test_it_prints_a_made_up_key_and_its_url_then_serves() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "emulator", "binance", "--weight-limit", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            deadline = time.monotonic() + 20
            key = json.loads(_read_line(process, deadline))
            url = _read_line(process, deadline)
            assert url.startswith("http://127.0.0.1:")
            assert key["api_key"].startswith("emulator-")
            with httpx.Client(base_url=url) as http:
                info = http.get("/api/v3/exchangeInfo").json()
                assert info["rateLimits"][0]["limit"] == 600
                query = f"timestamp={time.time_ns() // 1_000_000}"
                signature = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256)
                account = http.get(
                    f"/api/v3/account?{query}&signature={signature.hexdigest()}",
                    headers={"X-MBX-APIKEY": key["api_key"]},
                )
                assert account.status_code == 200
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0


def test_a_keys_file_is_used_and_checked(tmp_path: Path) -> None:
    runner = CliRunner()
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"api_key": "k1", "secret": "s1", "colour": "blue"}]))
    result = runner.invoke(_app(), ["emulator", "binance", "--keys", str(keys)])
    assert result.exit_code == 1
    assert result.output == "keybroker: keys file entry 1 has unknown field 'colour'\n"
    keys.write_text(json.dumps([{"api_key": "k1", "secret": "s1"}]))
    result = runner.invoke(_app(), ["emulator", "okx", "--keys", str(keys)])
    assert result.output == "keybroker: keys file entry 1: OKX keys need a 'passphrase'\n"
    keys.write_text("[{")
    result = runner.invoke(_app(), ["emulator", "okx", "--keys", str(keys)])
    assert result.output == f"keybroker: keys file {keys} is not JSON (line 1)\n"


def test_bad_faults_and_a_busy_port_are_one_line_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(_app(), ["emulator", "binance", "--faults", "error5xx=2"])
    assert (result.exit_code, result.output) == (
        1,
        "keybroker: faults: error5xx must be a share between 0 and 1\n",
    )
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(_app(), ["emulator", "okx", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"keybroker: cannot listen on 127.0.0.1:{port}: ")
    assert result.output.count("\n") == 1


def test_help_documents_the_fault_syntax() -> None:
    result = CliRunner().invoke(_app(), ["emulator", "--help"], terminal_width=120)
    assert result.exit_code == 0
    for word in (
        "latency=DURATION",
        "error5xx=P",
        "timeout=P",
        "drop_after_process=P",
        "seed=N",
        "--weight-limit",
        "--keys",
        "binance|okx",
    ):
        assert word in result.output
