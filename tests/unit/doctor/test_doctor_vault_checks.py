"""Checks 5, 7 and token expiry against a real vault file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from doctor_testkit import START, make_inputs

from keybroker.doctor.vault_checks import check_environments, check_rotation, check_token_expiry
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault


def _add(vault: Vault, name: str, n: int, **options: object) -> None:
    material = KeyMaterial(f"FAKE-KEY-{n:04d}", Secret(f"FAKE-SECRET-{n:04d}"))
    vault.add(name, "binance", material, **options)  # type: ignore[arg-type]


def test_environments_listed_and_production_policy_flagged(home: Path, vault: Vault) -> None:
    _add(vault, "paper", 1)
    _add(vault, "live", 2, environment="production", scopes=("read", "trade"))
    inputs = make_inputs(home, home, vault=vault, now=START)
    results = {r.name: r for r in check_environments(inputs)}
    assert results["environments.list"].details == ("production: live", "testnet: paper")
    assert results["environments.production_policy"].status == "warn"
    assert results["environments.production_policy"].details == ("live",)
    vault.set_policy("live", Policy(scopes=("read", "trade"), allow_production=True).to_json())
    results = {r.name: r for r in check_environments(inputs)}
    assert results["environments.production_policy"].status == "pass"


def test_locked_vault_cannot_read_policies(home: Path, vault: Vault) -> None:
    _add(vault, "live", 2, environment="production")
    vault.lock()
    inputs = make_inputs(home, home, vault=vault, now=START, vault_problem="no terminal")
    results = {r.name: r for r in check_environments(inputs)}
    policy = results["environments.production_policy"]
    assert (policy.status, policy.advice) == ("warn", "no terminal")


def test_tokens_reaching_production_must_expire(home: Path, vault: Vault) -> None:
    _add(vault, "paper", 1)
    _add(vault, "live", 2, environment="production")
    vault.create_token("paper-bot", ["paper"], expires_at=None, max_orders_per_minute=None)
    inputs = make_inputs(home, home, vault=vault, now=START)
    results = {r.name: r for r in check_environments(inputs)}
    assert results["environments.production_tokens"].status == "pass"
    assert check_token_expiry(inputs)[0].status == "warn"  # paper-bot never expires

    vault.create_token("live-bot", ["live", "paper"], expires_at=None, max_orders_per_minute=None)
    results = {r.name: r for r in check_environments(inputs)}
    assert results["environments.production_tokens"].status == "fail"
    assert results["environments.production_tokens"].details == ("live-bot -> live",)

    vault.revoke_token("live-bot")
    vault.revoke_token("paper-bot")
    vault.create_token(
        "live-bot", ["live"], expires_at=START + timedelta(days=7), max_orders_per_minute=None
    )
    results = {r.name: r for r in check_environments(inputs)}
    assert results["environments.production_tokens"].status == "pass"
    assert check_token_expiry(inputs)[0].status == "pass"


def test_rotation_by_age_and_scope(home: Path, vault: Vault) -> None:
    _add(vault, "trader", 1, scopes=("read", "trade"))
    _add(vault, "reader", 2)
    inputs = make_inputs(home, home, vault=vault, now=START + timedelta(days=10))
    assert check_rotation(inputs)[0].status == "pass"
    inputs.now = START + timedelta(days=45)  # trade key in its last month; read key fine
    [soon] = check_rotation(inputs)
    assert (soon.status, soon.details) == ("warn", ("trader: 45 days old (trade key)",))
    inputs.now = START + timedelta(days=75)  # trade key due; read key in its last month
    [due] = check_rotation(inputs)
    assert due.status == "fail"
    assert due.details == ("trader: 75 days old (trade key)", "reader: 75 days old (read-only key)")
    inputs.credential = "reader"  # as `keybroker incident reader` runs it
    assert check_rotation(inputs)[0].status == "warn"


def test_no_vault_passes_and_a_vault_problem_fails(home: Path) -> None:
    inputs = make_inputs(home, home)
    assert check_rotation(inputs)[0].status == "pass"
    inputs.vault_problem = "the vault cannot be opened: writable by others"
    assert check_rotation(inputs)[0].status == "fail"
