"""``keybroker demo``: the README's main job, run exactly as a user runs it."""

from __future__ import annotations

import re
import time
from pathlib import Path

from cli_harness import Kb

# (request, expected outcome) rows the gateway demo's summary must show, each marked ok.
GATEWAY_ROWS = (
    ("fetch_balance()", "ok: 100000"),
    ("limit buy 0.001 BTC @ 58,000", "ok: order"),
    ("cancel that order", "ok:"),
    ("withdraw 1 BTC", "denied: never_withdraw"),
    ("limit buy 1 BTC @ 59,000 (59,000 USDT)", "denied: max_notional"),
    ("limit buy 0.001 BTC @ 6,000 (fat finger)", "denied: price_collar"),
    ("limit buy while halted", "denied: kill_switch"),
    ("cancel while halted", "ok:"),
    ("limit buy after resume", "ok: order"),
    ("ticker BTCUSDT", "ok: last 60000"),
)


def _summary_row(out: str, request: str) -> str:
    rows = [line for line in out.splitlines() if "│" in line and f" {request} " in line]
    assert rows, f"no summary row for {request!r}"
    return rows[0]


def test_demo_runs_the_gateway_end_to_end(kb: Kb) -> None:
    started = time.monotonic()
    run = kb.subprocess("demo", env={"KEYBROKER_PASSPHRASE": None})
    elapsed = time.monotonic() - started
    assert elapsed < 45, f"the demo took {elapsed:.1f} s"
    out = run.stdout
    for step in ("init", "keys add demo-binance", "policy set demo-binance", "halt demo-binance",
                 "resume demo-binance", "audit verify"):  # fmt: skip
        assert f"$ keybroker {step}" in out
    assert "connect_ccxt(" in out and "gateway_config(" in out
    for request, outcome in GATEWAY_ROWS:
        row = _summary_row(out, request)
        assert outcome in row, row
        assert row.rstrip().endswith("ok"), row
    assert "UNEXPECTED" not in out
    waited = [line for line in out.splitlines() if "rate-limit wait" in line and "│" in line]
    assert waited and waited[0].rstrip().endswith("ok")
    canceled = [line for line in out.splitlines() if "│ cancel order" in line]
    assert len(canceled) >= 2 and all("ok: canceled" in line for line in canceled)
    assert re.search(r"audit log ok: \d+ rows, chain intact", out)
    assert "kb_" not in out + run.stderr  # the bot token is never shown
    throwaway = Path(re.search(r"in a throwaway home (\S+) ", out).group(1))  # type: ignore[union-attr]
    assert not throwaway.exists()
    assert not kb.home.exists()  # the user's own home was never created


def test_demo_vault_only_walks_through_and_catches_the_tamper_quickly(kb: Kb) -> None:
    started = time.monotonic()
    run = kb.subprocess("demo", "--vault-only", env={"KEYBROKER_PASSPHRASE": None})
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
    assert not kb.home.exists()
