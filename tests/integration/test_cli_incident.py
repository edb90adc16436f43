"""``keybroker incident NAME``: halted at once, audited, tokens revoked, a doctor run for it."""

from __future__ import annotations

import json
from typing import Any

from cli_harness import BINANCE_ENV, OKX_ENV, PASSPHRASE, Kb, StartTerminal

from keybroker.audit import AuditLog, AuditRow, read_rows, verify_chain


def _setup(kb: Kb) -> None:
    kb("keys", "add", "binance-main", "-e", "binance", "--from-env", "--scope", "read,trade",
       env=BINANCE_ENV)  # fmt: skip
    kb("keys", "add", "okx-side", "-e", "okx", "--from-env", env=OKX_ENV)
    kb("tokens", "create", "grid", "-c", "binance-main")
    kb("tokens", "create", "other", "-c", "okx-side")
    with AuditLog.open(kb.home / "audit.db") as log:
        order = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.001", "price": "50000"}
        intent = log.append_sync(
            AuditRow("intent", bot="grid", credential="binance-main", exchange="binance",
                     environment="testnet", method="POST", path="/api/v3/order",
                     request_kind="order_place", order=order)
        )  # fmt: skip
        log.append_sync(
            AuditRow("result", bot="grid", credential="binance-main", status=400,
                     venue_code="-2010", intent_id=intent, detail="insufficient balance")
        )  # fmt: skip
        log.append_sync(
            AuditRow("denied", bot="grid", credential="binance-main", method="POST",
                     path="/sapi/v1/capital/withdraw/apply", request_kind="withdraw",
                     decision="deny", rule="never_withdraw")
        )  # fmt: skip
        log.append_sync(AuditRow("intent", bot="other", credential="okx-side", method="GET"))


def _events(kb: Kb, name: str) -> list[str]:
    return [
        str(r.row.decision)
        for r in read_rows(kb.home / "audit.db")
        if r.row.kind == "event" and r.row.credential == name
    ]


def test_incident_yes_json_halts_revokes_and_audits(vault: Kb) -> None:
    _setup(vault)
    run = vault("incident", "binance-main", "--yes", "--json")
    report: dict[str, Any] = json.loads(run.stdout)
    assert (report["schema"], report["version"]) == ("keybroker-incident", 1)
    assert (report["credential"], report["halted"], report["audited"]) == (
        "binance-main",
        True,
        True,
    )
    assert report["tokens"] == ["grid"]
    assert [o["order"]["symbol"] for o in report["orders"]] == ["BTCUSDT"]
    assert {e["kind"] for e in report["errors"]} == {"result", "denied"}
    steps = {s["step"]: s["status"] for s in report["steps"]}
    assert steps == {"revoke_tokens": "done", "disable_at_exchange": "pending", "rotate": "pending"}
    assert report["doctor"]["schema"] == "keybroker-doctor"
    checked = {r["name"] for r in report["doctor"]["results"]}
    assert "rotation.age" in checked and "secrets.files" not in checked

    halts = json.loads(vault("resume", "okx-side", "--json").stdout)  # lists halts in force
    assert [h["name"] for h in halts] == ["binance-main"]
    tokens = {t["bot"]: t for t in json.loads(vault("tokens", "list", "--json").stdout)}
    assert tokens["grid"]["state"] == "revoked"
    assert tokens["other"]["state"] == "active"
    assert _events(vault, "binance-main") == ["halted", "token_revoked", "incident_walked"]
    assert verify_chain(vault.home / "audit.db").ok
    for secret in (*BINANCE_ENV.values(), OKX_ENV["OKX_API_SECRET"], PASSPHRASE):
        assert secret not in run.text


def test_orders_that_went_out_stay_in_view_behind_a_flood_of_denials(vault: Kb) -> None:
    # A bot hammering a key fills the log with denials and other credentials keep
    # writing: the orders this key did send must still be the ones shown.
    _setup(vault)
    with AuditLog.open(vault.home / "audit.db") as log:
        for _ in range(30):
            log.append_sync(
                AuditRow("denied", bot="grid", credential="binance-main", method="POST",
                         path="/api/v3/order", request_kind="order_place", decision="deny",
                         rule="max_notional")
            )  # fmt: skip
        for _ in range(5_100):  # more than the rows read for errors
            log.append_sync(AuditRow("intent", bot="other", credential="okx-side", method="GET"))
    report = json.loads(vault("incident", "binance-main", "--json").stdout)
    assert [(o["kind"], o["order"]["symbol"]) for o in report["orders"]] == [("intent", "BTCUSDT")]
    assert len(report["errors"]) == 10
    assert {e["rule"] for e in report["errors"]} == {"max_notional"}


def test_incident_json_alone_halts_but_asks_nothing(vault: Kb) -> None:
    _setup(vault)
    report = json.loads(vault("incident", "binance-main", "--json").stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["revoke_tokens"]["status"] == "pending"
    assert "keybroker tokens revoke grid" in steps["revoke_tokens"]["detail"]
    tokens = {t["bot"]: t for t in json.loads(vault("tokens", "list", "--json").stdout)}
    assert tokens["grid"]["state"] == "active"
    halts = json.loads(vault("resume", "okx-side", "--json").stdout)  # lists halts in force
    assert [h["name"] for h in halts] == ["binance-main"]
    assert _events(vault, "binance-main") == ["halted", "incident_walked"]


def test_unknown_credential_halts_nothing(vault: Kb) -> None:
    _setup(vault)
    run = vault("incident", "binance-mian", "--yes", "--json", expect=2)
    assert "no credential named" in run.stderr
    assert json.loads(vault("resume", "okx-side", "--json").stdout) == []


def test_incident_walks_through_in_a_terminal(vault: Kb, terminal: StartTerminal) -> None:
    _setup(vault)
    session = terminal("incident", "binance-main", env={"KEYBROKER_PASSPHRASE": PASSPHRASE})
    session.expect("Halted binance-main")
    session.expect("Revoke the tokens of grid?")
    session.send("y")
    session.expect("Done: is the key disabled at the exchange?")
    session.send("y")
    session.expect("Rotate binance-main to a new key now")
    session.send("y")
    session.expect("binance API key")
    session.send("FAKEbinanceApiKey00000000000000000000000000000000000000000000002")
    session.expect("binance API secret (not shown): ")  # the space: echo is off
    session.send("FAKEbinanceApiSecret000000000000000000000000000000000000000000002")
    session.expect("stays halted")
    assert session.finish() == 0
    assert b"FAKEbinanceApiSecret0000" not in session.transcript
    assert _events(vault, "binance-main") == [
        "halted", "token_revoked", "exchange_key_disabled", "rotated", "incident_walked",
    ]  # fmt: skip
    shown = json.loads(vault("keys", "show", "binance-main", "--json").stdout)
    assert shown["key_id"].endswith("0002")


def test_incident_never_reports_the_key_at_risk_as_rotated(
    vault: Kb, terminal: StartTerminal
) -> None:
    _setup(vault)
    session = terminal("incident", "binance-main", env={"KEYBROKER_PASSPHRASE": PASSPHRASE})
    session.expect("Revoke the tokens of grid?")
    session.send("n")
    session.expect("Done: is the key disabled at the exchange?")
    session.send("n")
    session.expect("Rotate binance-main to a new key now")
    session.send("y")
    session.expect("binance API key")
    session.send(BINANCE_ENV["BINANCE_API_KEY"])  # the leaked key again, by mistake
    session.expect("binance API secret (not shown): ")
    session.send(BINANCE_ENV["BINANCE_API_SECRET"])
    session.expect("that is the key at risk")
    session.finish()
    assert "rotated" not in _events(vault, "binance-main")
    shown = json.loads(vault("keys", "show", "binance-main", "--json").stdout)
    assert shown["key_history"] == [] and shown["rotated_at"] is None


def test_incident_doctor_run_is_scoped_to_the_credential(vault: Kb) -> None:
    _setup(vault)
    report = json.loads(vault("incident", "okx-side", "--yes", "--json").stdout)
    environments = [r for r in report["doctor"]["results"] if r["name"] == "environments.list"]
    assert environments[0]["details"] == ["testnet: okx-side"]
