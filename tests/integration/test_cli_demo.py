"""``keybroker demo``: the README's main job, run exactly as a user runs it."""

from __future__ import annotations

import re
import time
from pathlib import Path

from cli_harness import Kb


def test_demo_walks_through_and_catches_the_tamper_quickly(kb: Kb, tmp_path: Path) -> None:
    started = time.monotonic()
    run = kb.subprocess("demo", env={"KEYBROKER_PASSPHRASE": None})
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"the demo took {elapsed:.1f} s"
    out = run.stdout
    for step in ("init", "keys add demo-binance", "keys add demo-okx", "keys list",
                 "keys rotate demo-binance", "keys show demo-binance", "vault verify"):  # fmt: skip
        assert f"$ keybroker {step}" in out
    assert "64 MiB, 1 pass, 1 lane" in out  # it says the KDF is turned down
    assert "TAMPERED" in out
    assert "Caught" in out
    assert "1 of 3 vault records failed authentication" in run.stderr
    throwaway = Path(re.search(r"a throwaway vault in (\S+) ", out).group(1))  # type: ignore[union-attr]
    assert not throwaway.exists()
    assert not kb.home.exists()  # the user's own home was never created
