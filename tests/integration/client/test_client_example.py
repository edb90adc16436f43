"""examples/binance_demo.py runs offline, against an emulator it starts itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[3] / "examples" / "binance_demo.py"


def test_the_binance_demo_runs_offline_in_seconds() -> None:
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BINANCE_", "KEYBROKER_"))
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    out = result.stdout
    assert "local emulator" in out and "BinanceAdapter(...)" in out
    assert "Last 5 hourly K-lines of BTCUSDT" in out and "(forming)" in out
    assert ": open" in out and "Cancelled it: canceled" in out
    assert "Secret('***')" in out and "emulator-secret-" not in out
