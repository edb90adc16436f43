"""Checks 3, 4, 8, 9 and 10 against real files, real audit logs and injected system facts."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from doctor_testkit import SAFE_SYSTEM, make_inputs

from keybroker.audit import AuditLog, AuditRow
from keybroker.doctor import SCHEMA_VERSION, Result, exit_code, report_document
from keybroker.doctor.audit_checks import check_alerts, check_audit_chain
from keybroker.doctor.file_checks import check_own_files, check_passphrase_source
from keybroker.doctor.gateway_checks import check_gateway_cors, check_gateway_listen
from keybroker.doctor.output_checks import check_secret_safe_output, standard_subjects
from keybroker.doctor.process_checks import check_core_dumps, check_memlock, check_root, check_swap
from keybroker.gateway.record import ServeRecord, read_record, webhook_host, write_record
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

# -- the report ---------------------------------------------------------------------------


def test_json_schema_is_stable() -> None:
    results = [
        Result("files", "files.home", "pass", "ok"),
        Result("process", "process.root", "warn", "root", ("uid 0",)),
    ]
    document = report_document(results, strict=False)
    assert SCHEMA_VERSION == 1
    assert document == {
        "schema": "keybroker-doctor",
        "version": 1,
        "ok": True,
        "strict": False,
        "exit_code": 0,
        "counts": {"pass": 1, "warn": 1, "fail": 0},
        "results": [
            {"group": "files", "name": "files.home", "subject": None, "status": "pass",
             "advice": "ok", "details": []},
            {"group": "process", "name": "process.root", "subject": None, "status": "warn",
             "advice": "root", "details": ["uid 0"]},
        ],
    }  # fmt: skip
    strict = report_document(results, strict=True)
    assert (strict["ok"], strict["exit_code"]) == (False, 2)
    json.dumps(document)  # plain JSON values only


def test_exit_code_and_one_line_advice() -> None:
    fail = Result("audit", "audit.chain", "fail", "broken\n  at row 3")
    assert fail.advice == "broken at row 3"
    assert exit_code([fail], strict=False) == 2
    assert exit_code([Result("audit", "audit.chain", "warn", "x")], strict=False) == 0
    with pytest.raises(ValueError, match="status"):
        Result("audit", "audit.chain", "bad", "x")  # type: ignore[arg-type]


# -- 3. keybroker's own files ---------------------------------------------------------------


def test_private_files_pass_and_loose_modes_fail(home: Path, vault: Vault) -> None:
    with AuditLog.open(home / "audit.db"):
        pass
    inputs = make_inputs(home, home, vault=vault)
    assert [r.status for r in check_own_files(inputs)] == ["pass", "pass", "pass"]
    home.chmod(0o755)
    (home / "vault.db").chmod(0o644)
    (home / "audit.db").chmod(0o640)
    results = {r.name: r for r in check_own_files(inputs)}
    assert {name: r.status for name, r in results.items()} == {
        "files.home": "fail", "files.vault": "fail", "files.audit": "fail",
    }  # fmt: skip
    assert "chmod 600" in results["files.vault"].advice
    assert "chmod 700" in results["files.home"].advice


def test_passphrase_variable_warns_only_with_production_keys(home: Path, vault: Vault) -> None:
    environ = {"KEYBROKER_PASSPHRASE": "x" * 20}
    inputs = make_inputs(home, home, vault=vault, environ=environ)
    vault.add("test-key", "binance", KeyMaterial("FAKE-KEY-1", Secret("FAKE-SECRET-1")))
    assert check_passphrase_source(inputs)[0].status == "pass"
    vault.add(
        "live", "binance", KeyMaterial("FAKE-KEY-2", Secret("FAKE-SECRET-2")),
        environment="production",
    )  # fmt: skip
    variable = check_passphrase_source(inputs)[0]
    assert (variable.status, variable.details) == ("warn", ("live",))
    inputs.environ = {}
    assert check_passphrase_source(inputs)[0].status == "pass"


def test_passphrase_file_mode(home: Path) -> None:
    file = home / "passphrase"
    file.write_text("doctor test passphrase\n")
    file.chmod(0o600)
    inputs = make_inputs(home, home, passphrase_file=file)
    assert check_passphrase_source(inputs)[1].status == "pass"
    file.chmod(0o644)
    assert check_passphrase_source(inputs)[1].status == "fail"


# -- 4. secret-safe output --------------------------------------------------------------------


class _Leaky:
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __repr__(self) -> str:
        return f"Leaky(secret={self.secret!r})"


class _LogsIt:
    def __init__(self, secret: str) -> None:
        logging.getLogger("keybroker.somewhere").debug("connecting with %s", secret)

    def __repr__(self) -> str:
        return "LogsIt()"


def test_canary_stays_out_of_keybrokers_own_objects(tmp_path: Path) -> None:
    [result] = check_secret_safe_output(make_inputs(tmp_path, tmp_path))
    assert result.status == "pass", result
    labels = [label for label, _ in standard_subjects("kbcanary-not-real")]
    assert {"Credential", "ExchangeConfig(okx)", "BinanceAdapter", "KeyMaterial error"} <= set(
        labels
    )


def test_canary_in_a_repr_or_a_log_line_fails(tmp_path: Path) -> None:
    def subjects(canary: str) -> Iterator[tuple[str, object]]:
        yield "Leaky", _Leaky(canary)
        yield "LogsIt", _LogsIt(canary)

    [result] = check_secret_safe_output(make_inputs(tmp_path, tmp_path, canary_subjects=subjects))
    assert result.status == "fail"
    assert result.details == ("Leaky: repr", "Leaky: str", "Leaky: format", "log output")


# -- 8. audit log and alerts ------------------------------------------------------------------


def test_audit_chain_missing_intact_and_broken(home: Path) -> None:
    inputs = make_inputs(home, home)
    assert check_audit_chain(inputs)[0].status == "warn"
    path = home / "audit.db"

    async def write() -> None:
        with AuditLog.open(path) as log:
            for n in range(3):
                await log.append(AuditRow("event", detail=f"row {n}"))

    asyncio.run(write())
    [intact] = check_audit_chain(inputs)
    assert intact.status == "pass" and intact.advice.startswith("3 rows")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE audit SET detail = 'edited' WHERE id = 2")
    [broken] = check_audit_chain(inputs)
    assert broken.status == "fail" and "row 2" in broken.advice


def _record(home: Path, **fields: object) -> None:
    base = ServeRecord(host="127.0.0.1", port=8787, tls=False)
    write_record(home / "gateway.json", replace(base, **fields))  # type: ignore[arg-type]


def test_alerts_need_a_webhook_or_command(home: Path) -> None:
    inputs = make_inputs(home, home)
    assert check_alerts(inputs)[0].status == "warn"  # no gateway ran
    _record(home)
    assert check_alerts(inputs)[0].status == "warn"
    _record(home, alert_webhook_host="https://hooks.example.com")
    [ok] = check_alerts(inputs)
    assert ok.status == "pass" and "hooks.example.com" in ok.advice


def test_serve_record_keeps_no_webhook_path_and_is_private(home: Path) -> None:
    url = "https://hooks.example.com/services/T000/B000/FAKEsecretPATH"
    _record(home, alert_webhook_host=webhook_host(url), has_alert_command=True)
    path = home / "gateway.json"
    assert "FAKEsecretPATH" not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    record = read_record(path)
    assert record is not None and record.alert_webhook_host == "https://hooks.example.com"


# -- 9. gateway settings ------------------------------------------------------------------------


def test_gateway_listen_loopback_tls_and_plain_remote(home: Path) -> None:
    inputs = make_inputs(home, home)
    assert check_gateway_listen(inputs)[0].status == "pass"  # none ran
    _record(home)
    assert check_gateway_listen(inputs)[0].status == "pass"
    _record(home, host="192.0.2.10", tls=True)
    assert check_gateway_listen(inputs)[0].status == "pass"
    _record(home, host="192.0.2.10", tls=False)
    [plain] = check_gateway_listen(inputs)
    assert plain.status == "fail" and "without TLS" in plain.advice


def test_gateway_cors_wildcard_fails(home: Path) -> None:
    inputs = make_inputs(home, home)
    _record(home, cors_origins=("https://dash.example.com",))
    assert check_gateway_cors(inputs)[0].status == "pass"
    _record(home, cors_origins=("https://dash.example.com", "*"))
    [wild] = check_gateway_cors(inputs)
    assert (wild.status, wild.details) == ("fail", ("*",))


def test_unreadable_record_warns(home: Path) -> None:
    (home / "gateway.json").write_text("{not json")
    assert check_gateway_listen(make_inputs(home, home))[0].status == "warn"


# -- 10. process --------------------------------------------------------------------------------


def test_root_core_dumps_and_memlock(tmp_path: Path) -> None:
    safe = make_inputs(tmp_path, tmp_path)
    assert [check(safe)[0].status for check in (check_root, check_core_dumps, check_memlock)] == [
        "pass", "pass", "pass",
    ]  # fmt: skip
    risky = make_inputs(
        tmp_path,
        tmp_path,
        system=replace(
            SAFE_SYSTEM,
            euid=0,
            core_limit=(resource.RLIM_INFINITY, resource.RLIM_INFINITY),
            memlock_limit=(8 << 20, 8 << 20),
        ),
    )
    assert check_root(risky)[0].status == "warn"
    assert check_core_dumps(risky)[0].status == "warn"
    assert check_memlock(risky)[0].status == "pass"  # root may lock memory anyway
    user = make_inputs(
        tmp_path, tmp_path, system=replace(SAFE_SYSTEM, memlock_limit=(8 << 20, 8 << 20))
    )
    [memlock] = check_memlock(user)
    assert memlock.status == "warn" and "8 MiB" in memlock.advice


def _sys_tree(root: Path, devices: dict[str, tuple[str, list[str]]]) -> Path:
    """A /sys with dev/block/M:m/{dm/uuid,slaves/} and class/block/<name> for each device."""
    for number, (uuid, slaves) in devices.items():
        name = f"dm-{number.split(':')[1]}"
        block = root / "class" / "block" / name
        (block / "dm").mkdir(parents=True)
        (block / "dm" / "uuid").write_text(uuid + "\n")
        (block / "slaves").mkdir()
        for slave in slaves:
            (block / "slaves" / slave).mkdir()
        (root / "dev" / "block").mkdir(parents=True, exist_ok=True)
        (root / "dev" / "block" / number).symlink_to(block)
    return root


SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


@pytest.mark.parametrize(
    ("entries", "status"),
    [
        ([], "pass"),
        (["/dev/zram0\tpartition\t4194300\t0\t100"], "pass"),
        (["/dev/mapper/cryptswap\tpartition\t1003516\t0\t-2"], "pass"),  # dm-crypt
        (["/swap/file\tfile\t2097148\t0\t-3"], "pass"),  # on LVM on LUKS
        (["/dev/sda2\tpartition\t1003516\t0\t-2"], "warn"),
        (["/plain\\040swap\tfile\t2097148\t0\t-3"], "warn"),
    ],
)
def test_swap_without_encryption_warns(tmp_path: Path, entries: list[str], status: str) -> None:
    sys_root = _sys_tree(
        tmp_path / "sys",
        {
            "253:0": ("CRYPT-LUKS2-0123-cryptswap", []),
            "253:1": ("CRYPT-LUKS2-4567-root", []),
            "253:2": ("LVM-abcdef", ["dm-1"]),
        },
    )
    numbers = {"/dev/mapper/cryptswap": "253:0", "/swap/file": "253:2", "/dev/sda2": "8:2",
               "/plain swap": "8:3"}  # fmt: skip
    swaps = tmp_path / "swaps"
    swaps.write_text(SWAPS_HEADER + "".join(line + "\n" for line in entries))
    system = replace(SAFE_SYSTEM, swaps_path=swaps, sys_root=sys_root, device_number=numbers.get)
    [result] = check_swap(make_inputs(tmp_path, tmp_path, system=system))
    assert result.status == status, result
    if status == "warn":
        assert result.details == (entries[0].split("\t")[0].replace("\\040", " "),)
