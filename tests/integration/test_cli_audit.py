"""``keybroker audit tail|verify|export`` end to end, on a real audit log file."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from cli_harness import Kb

from keybroker.audit import AuditLog, AuditRow
from keybroker.cli import audit_commands
from keybroker.clock import FixedClock
from keybroker.errors import InvalidInput

START_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def rows(count: int) -> list[AuditRow]:
    out = []
    for n in range(count):
        out.append(
            AuditRow(
                "intent" if n % 2 == 0 else "result",
                bot="bot1",
                credential="binance-main",
                exchange="binance",
                environment="testnet",
                method="POST",
                path="/api/v3/order",
                request_kind="order_place",
                order={"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01"}
                if n % 2 == 0
                else None,
                status=None if n % 2 == 0 else 200,
                latency_ms=None if n % 2 == 0 else 41.5,
                intent_id=None if n % 2 == 0 else n,
                client_order_id="=HYPERLINK(1)" if n == 3 else f"kb-{n}",
                detail="line one\nline two" if n == 5 else None,
            )
        )
    return out


def write(kb: Kb, count: int, start_ms: int = START_MS, step_ms: int = 60_000) -> None:
    clock = FixedClock(start_ms)
    with AuditLog.open(kb.home / "audit.db", clock=clock) as log:
        for row in rows(count):
            log.append_sync(row)
            clock.advance(step_ms)


NO_PASSPHRASE: dict[str, str | None] = {"KEYBROKER_PASSPHRASE": None}


def test_tail_shows_the_last_rows_for_people_and_as_json(kb: Kb) -> None:
    write(kb, 6)
    run = kb("audit", "tail", "-n", "3", env=NO_PASSPHRASE)
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["#4", "#5", "#6"]
    assert lines[0].startswith("#4 2024-05-01T12:03:00.000Z result ")
    assert "status=200" in lines[0] and "latency_ms=41.5" in lines[0]
    assert "detail=line one\\nline two" in lines[2]  # a newline in a value stays on its line
    assert "order[quantity=0.01 side=BUY symbol=BTCUSDT]" in kb("audit", "tail").stdout
    as_json = [json.loads(line) for line in kb("audit", "tail", "--json").stdout.splitlines()]
    assert [row["id"] for row in as_json] == [1, 2, 3, 4, 5, 6]
    assert as_json[0]["order"] == {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.01"}
    assert as_json[0]["time"] == "2024-05-01T12:00:00.000Z" and len(as_json[0]["hash"]) == 64


def test_without_a_log_tail_and_verify_fail(kb: Kb) -> None:
    run = kb("audit", "tail", expect=2)
    assert "no audit log at" in run.stderr
    run = kb("audit", "verify", expect=2)
    assert "no audit log at" in run.stderr
    assert not (kb.home / "audit.db").exists()


def test_verify_prints_the_head_and_exits_0(kb: Kb) -> None:
    write(kb, 4)
    run = kb("audit", "verify", env=NO_PASSPHRASE)
    assert run.stdout.startswith("audit log ok: 4 rows, chain intact; head ")
    report = json.loads(kb("audit", "verify", "--json").stdout)
    assert report["ok"] is True and report["rows"] == 4 and run.stdout.split()[-1] == report["head"]


def test_verify_exits_2_naming_the_first_broken_row(kb: Kb) -> None:
    write(kb, 6)
    conn = sqlite3.connect(kb.home / "audit.db")
    conn.execute("UPDATE audit SET status = 500 WHERE id = 4")
    conn.commit()
    conn.close()
    run = kb("audit", "verify", expect=2)
    assert run.stderr.startswith("keybroker: audit log broken at row 4: row 4 does not match")
    report = json.loads(kb("audit", "verify", "--json", expect=2).stdout)
    assert (report["ok"], report["first_broken"]) == (False, 4)


def test_export_since_as_json_lines_and_csv(kb: Kb) -> None:
    write(kb, 6)  # 12:00 ... 12:05
    exported = kb("audit", "export", "--since", "2024-05-01T12:03:00Z").stdout.splitlines()
    assert [json.loads(line)["id"] for line in exported] == [4, 5, 6]
    same = kb("audit", "export", "--since", "2024-05-01T14:03:00+02:00", "--json").stdout
    assert same.splitlines() == exported
    assert len(kb("audit", "export", "--since", "2024-05-01").stdout.splitlines()) == 6
    assert kb("audit", "export", "--since", "2024-05-02").stdout == ""

    table = list(csv.reader(io.StringIO(kb("audit", "export", "--since", "1d", "--csv").stdout)))
    header, body = table[0], table[1:]
    assert header[:4] == ["id", "time", "ts_ms", "kind"] and header[-1] == "hash"
    assert "order" in header and "order_json" not in header
    assert len(body) == 0  # the rows are from 2024: older than a day
    table = list(
        csv.reader(io.StringIO(kb("audit", "export", "--since", "2024-05-01", "--csv").stdout))
    )
    by_id = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}
    assert json.loads(by_id["1"]["order"]) == {
        "quantity": "0.01",
        "side": "BUY",
        "symbol": "BTCUSDT",
    }
    assert by_id["4"]["client_order_id"] == "'=HYPERLINK(1)"  # not a formula in a spreadsheet
    assert by_id["2"]["paper"] == "false" and by_id["2"]["status"] == "200"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "neither a duration"),
        (("--since", "1d", "--json", "--csv"), "choose one of --json and --csv"),
    ],
)
def test_export_usage_errors_exit_1(kb: Kb, args: tuple[str, ...], message: str) -> None:
    write(kb, 1)
    assert message in kb("audit", "export", *args, expect=1).stderr


def test_since_accepts_durations_and_iso_times() -> None:
    clock = FixedClock(START_MS)
    assert audit_commands.parse_since("30m", clock) == START_MS - 30 * 60_000
    assert audit_commands.parse_since("2w", clock) == START_MS - 14 * 86_400_000
    assert audit_commands.parse_since("1.5h", clock) == START_MS - 90 * 60_000
    assert audit_commands.parse_since("2024-05-01T12:00:00Z", clock) == START_MS
    assert audit_commands.parse_since("2024-05-01 12:00", clock) == START_MS
    with pytest.raises(InvalidInput):
        audit_commands.parse_since("-5m", clock)


def test_tail_follow_prints_rows_as_they_are_written(kb: Kb) -> None:
    write(kb, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBROKER_")}
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keybroker",
            "--home",
            str(kb.home),
            "audit",
            "tail",
            "-f",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["id"] == 1
        assert json.loads(follower.stdout.readline())["id"] == 2
        with AuditLog.open(kb.home / "audit.db") as log:
            started = time.monotonic()
            log.append_sync(AuditRow("event", detail="halted by operator"))
        line = json.loads(follower.stdout.readline())
        assert (line["id"], line["detail"]) == (3, "halted by operator")
        assert time.monotonic() - started < 5
        follower.send_signal(signal.SIGINT)  # Ctrl-C is how following ends
        assert follower.wait(timeout=10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        assert follower.stdout is not None and follower.stderr is not None
        follower.stdout.close()
        follower.stderr.close()


def test_audit_commands_have_help(kb: Kb) -> None:
    run = kb("audit")
    for command in ("tail", "verify", "export"):
        assert command in run.stdout
    assert "--since" in kb("audit", "export", "--help").stdout
