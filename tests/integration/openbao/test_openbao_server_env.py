"""tests/openbao_server.py ``start_server(go_env=...)``: the Go settings reach the server.

bench/bench_openbao.py runs OpenBao with ``GOMAXPROCS=1`` (what docs/openbao.md
advises for an OpenBao beside the gateway); this checks the setting is in the
running server's environment, and that the server still signs with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from keybroker.openbao.setup import ensure_transit, import_hmac_key
from openbao_server import start_server


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {name.decode(): value.decode() for name, _, value in pairs}


def test_go_env_reaches_the_server_and_it_still_signs(tmp_path: Path) -> None:
    server = start_server(tmp_path / "bao", go_env={"GOMAXPROCS": "1"})
    try:
        assert environment_of(server.process.pid)["GOMAXPROCS"] == "1"
        with server.admin() as admin:
            ensure_transit(admin, "transit")
            import_hmac_key(admin, "transit", "env-check", b"k" * 32)
            answer = admin.write(
                "transit/hmac/env-check/sha2-256", {"input": base64.b64encode(b"x").decode()}
            )
        expected = hmac.new(b"k" * 32, b"x", hashlib.sha256).digest()
        assert answer["data"]["hmac"] == "vault:v1:" + base64.b64encode(expected).decode()
    finally:
        server.stop()


def test_without_go_env_the_server_gets_no_go_settings(tmp_path: Path) -> None:
    server = start_server(tmp_path / "bao")
    try:
        assert "GOMAXPROCS" not in environment_of(server.process.pid)
    finally:
        server.stop()
