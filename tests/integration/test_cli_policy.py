"""``keybroker policy set|show`` end to end, on real vault files."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cli_harness import BINANCE_ENV, PASSPHRASE, Kb

from keybroker.exchanges import get_profile
from keybroker.policy import DEFAULT_POLICY, Policy, PolicyContext, evaluate
from keybroker.secret import Secret
from keybroker.vault import Vault


@pytest.fixture
def cli(vault: Kb) -> Kb:
    """An empty vault holding one testnet binance key, b1 (scopes read,trade)."""
    vault(
        "keys", "add", "b1", "-e", "binance", "--scope", "read,trade", "--from-env", env=BINANCE_ENV
    )
    return vault


def stored(cli: Kb, name: str = "b1") -> bytes | None:
    """The document as the vault API gives it, not as the CLI shows it."""
    with Vault.open(cli.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        return opened.policy_document(name)


def shown(cli: Kb, name: str = "b1") -> dict[str, object]:
    result: dict[str, object] = json.loads(cli("policy", "show", name, "--json").stdout)
    return result


def test_a_new_credential_shows_the_default_policy(cli: Kb) -> None:
    assert shown(cli) == {"credential": "b1", "stored": False, "policy": DEFAULT_POLICY.to_dict()}
    table = cli("policy", "show", "b1").stdout
    assert "the default: none set yet" in table
    assert "none (no symbol may trade)" in table
    assert "denied (always)" in table
    assert stored(cli) is None


def test_set_stores_a_sealed_policy_the_vault_api_reads_back(cli: Kb) -> None:
    run = cli(
        *("policy", "set", "b1", "--scope", "trade", "--symbols", "BTCUSDT,ETHUSDT"),
        *("--order-types", "LIMIT,MARKET", "--max-notional", "500", "--price-collar", "5%"),
        *("--daily-notional", "10000", "--max-orders-per-minute", "30"),
        *("--max-open-orders", "8", "--max-leverage", "3", "--max-position-notional", "2000"),
        "--allow-transfers",
    )
    assert "Policy of b1 set." in run.stdout
    expected = Policy(
        scopes=("read", "trade"),
        symbols=("BTCUSDT", "ETHUSDT"),
        order_types=("LIMIT", "MARKET"),
        max_notional=Decimal(500),
        max_open_orders=8,
        max_orders_per_minute=30,
        price_collar_pct=Decimal(5),
        daily_notional=Decimal(10000),
        max_leverage=Decimal(3),
        max_position_notional=Decimal(2000),
        allow_transfers=True,
    )
    document = stored(cli)
    assert document is not None
    assert Policy.from_json(document) == expected
    assert shown(cli) == {"credential": "b1", "stored": True, "policy": expected.to_dict()}
    # Sealed: the policy's words are nowhere in the file.
    assert b"ETHUSDT" not in cli.vault_path.read_bytes()


def test_set_changes_only_the_fields_it_is_given(cli: Kb) -> None:
    cli("policy", "set", "b1", "--scope", "trade", "--symbols", "BTCUSDT", "--max-notional", "500")
    cli("policy", "set", "b1", "--symbols", "BTCUSDT,SOLUSDT")
    cli("policy", "set", "b1", "--daily-notional", "1000.50")
    policy = shown(cli)["policy"]
    assert isinstance(policy, dict)
    assert policy["scopes"] == ["read", "trade"]
    assert policy["symbols"] == ["BTCUSDT", "SOLUSDT"]
    assert policy["max_notional"] == "500"
    assert policy["daily_notional"] == "1000.5"


def test_limits_and_lists_can_be_removed_again(cli: Kb) -> None:
    cli("policy", "set", "b1", "--scope", "trade", "--symbols", "BTCUSDT", "--order-types", "LIMIT")
    cli("policy", "set", "b1", "--max-notional", "500", "--max-open-orders", "3")
    cli("policy", "set", "b1", "--max-notional", "none", "--max-open-orders", "off")
    cli("policy", "set", "b1", "--order-types", "any", "--scope", "read")
    policy = shown(cli)["policy"]
    assert isinstance(policy, dict)
    assert policy["max_notional"] is None
    assert policy["max_open_orders"] is None
    assert policy["order_types"] == []
    assert policy["scopes"] == ["read"]
    assert policy["symbols"] == ["BTCUSDT"]
    run = cli("policy", "set", "b1", "--symbols", "", "--json")
    assert json.loads(run.stdout)["policy"]["symbols"] == []


def test_production_is_granted_and_withdrawn_by_flag(cli: Kb) -> None:
    cli("policy", "set", "b1", "--allow-production")
    assert Policy.from_json(stored(cli) or b"{}").allow_production
    cli("policy", "set", "b1", "--no-allow-production")
    assert not Policy.from_json(stored(cli) or b"{}").allow_production


def test_the_stored_policy_is_what_the_gateway_evaluates(cli: Kb) -> None:
    cli("policy", "set", "b1", "--scope", "trade", "--symbols", "BTCUSDT", "--max-notional", "500")
    policy = Policy.from_json(stored(cli) or b"")
    profile = get_profile("binance")
    context = PolicyContext(environment="testnet", last_price={"BTCUSDT": Decimal(30000)}.get)

    def order(quantity: str) -> bool:
        request = httpx.Request(
            "POST",
            "https://testnet.binance.vision/api/v3/order",
            params={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": quantity},
        )
        decision = evaluate(
            policy, profile.classify(request), profile.parse_order(request), context
        )
        return decision.allowed

    assert order("0.01")  # 300 USDT
    assert not order("0.02")  # 600 USDT


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-notional", "lots"), "--max-notional takes a number or 'none'"),
        (("--max-notional", "-5"), "--max-notional must not be negative"),
        (("--max-notional", "inf"), "--max-notional takes a finite number"),
        (("--max-open-orders", "2.5"), "--max-open-orders takes a whole number"),
        (("--max-leverage", "0"), "--max-leverage must be more than 0"),
        (("--scope", "admin"), "unknown scope 'admin'"),
        (("--symbols", "BTC USDT,ETH"), "--symbols: 'BTC USDT' is not a valid name"),
        ((), "nothing to change"),
    ],
)
def test_bad_values_are_usage_errors_before_any_passphrase(
    cli: Kb, args: tuple[str, ...], message: str
) -> None:
    # No passphrase anywhere: reaching the unlock step would fail differently.
    run = cli("policy", "set", "b1", *args, env={"KEYBROKER_PASSPHRASE": None}, expect=1)
    assert message in run.stderr, run
    assert stored(cli) is None


def test_an_unknown_credential_is_refused_before_the_passphrase(cli: Kb) -> None:
    run = cli(
        *("policy", "set", "nope", "--max-notional", "5"),
        env={"KEYBROKER_PASSPHRASE": None},
        expect=2,
    )
    assert "no credential named 'nope'" in run.stderr
    run = cli("policy", "show", "nope", env={"KEYBROKER_PASSPHRASE": None}, expect=2)
    assert "no credential named 'nope'" in run.stderr


def test_a_wrong_passphrase_changes_nothing(cli: Kb, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase at all\n")
    wrong.chmod(0o600)
    run = cli(
        *("policy", "set", "b1", "--allow-production", "--passphrase-file", str(wrong)),
        expect=2,
    )
    assert "passphrase" in run.stderr
    assert stored(cli) is None


def test_a_policy_edited_in_the_file_fails_authentication(cli: Kb) -> None:
    cli("policy", "set", "b1", "--scope", "trade", "--symbols", "BTCUSDT")
    with closing(sqlite3.connect(cli.vault_path)) as conn, conn:
        conn.execute("UPDATE policies SET version = version + 1 WHERE name = 'b1'")
    run = cli("policy", "show", "b1", expect=2)
    assert "failed authentication" in run.stderr
    # Nor can `set` be used to launder it: it reads the current policy first.
    cli("policy", "set", "b1", "--max-notional", "5", expect=2)


def test_a_document_from_a_newer_keybroker_is_named_not_guessed(cli: Kb) -> None:
    with Vault.open(cli.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        opened.set_policy("b1", b'{"scopes": ["read"], "max_slippage_bps": 5}')
    run = cli("policy", "show", "b1", expect=2)
    assert "unknown key 'max_slippage_bps'" in run.stderr
    assert "upgrade keybroker" in run.stderr


def test_warnings_say_when_a_policy_cannot_do_what_it_seems_to(cli: Kb) -> None:
    run = cli("policy", "set", "b1", "--scope", "trade")
    assert "grants trade but no symbols" in run.stderr
    cli("keys", "add", "live", "-e", "binance", "--production", "--from-env", env=BINANCE_ENV)
    run = cli("policy", "show", "live")
    assert "production credential and its policy does not allow production" in run.stderr
    run = cli("policy", "set", "live", "--scope", "trade", "--symbols", "BTCUSDT")
    assert "stored with scopes read" in run.stderr
    run = cli("policy", "set", "live", "--allow-production")
    assert "does not allow production" not in run.stderr


def test_help_lists_both_commands(cli: Kb) -> None:
    run = cli("policy")
    assert "set" in run.stdout and "show" in run.stdout
    assert (
        "--max-position-notional" in cli("policy", "set", "--help", env={"COLUMNS": "200"}).stdout
    )


def test_no_secret_or_passphrase_in_anything_policy_commands_print(vault: Kb) -> None:
    canary = "CANARYpolicySecretDoNotLeak00000000000000000000000000000000001"
    env = {"BINANCE_API_KEY": "FAKEbinanceApiKey000000000000000000000000000000000001"}
    env["BINANCE_API_SECRET"] = canary
    vault("keys", "add", "c1", "-e", "binance", "--from-env", env=env)
    vault.runs.clear()
    vault("--debug", "policy", "set", "c1", "--scope", "trade", "--symbols", "BTCUSDT")
    vault("--debug", "policy", "show", "c1")
    vault("--debug", "policy", "show", "c1", "--json")
    vault("--debug", "policy", "set", "c1", "--max-notional", "x", expect=1)
    with closing(sqlite3.connect(vault.vault_path)) as conn, conn:
        conn.execute("UPDATE policies SET updated_at = 'x' WHERE name = 'c1'")
    vault("--debug", "policy", "show", "c1", expect=2)
    for run in vault.runs:
        assert canary not in run.text
        assert PASSPHRASE not in run.text


def test_rules_the_gateway_cannot_answer_at_an_exchange_are_warned_of(cli: Kb) -> None:
    kraken = {
        "KRAKEN_API_KEY": "FAKEkrakenApiKey0000000000000000000000000000000000001",
        "KRAKEN_API_SECRET": "dGVzdC1rcmFrZW4tc2VjcmV0LW5vdC1yZWFs",
    }
    cli("keys", "add", "kr", "-e", "kraken", "--from-env", env=kraken)
    run = cli("policy", "set", "kr", "--max-open-orders", "5", "--max-position-notional", "100")
    assert "cannot count open orders at kraken" in run.stderr
    assert "cannot read positions at kraken" in run.stderr
    assert "--max-open-orders none" in run.stderr
    # Binance counts open orders; positions exist on USDⓈ-M futures only, and it says so.
    run = cli("policy", "set", "b1", "--max-open-orders", "5")
    assert "open orders" not in run.stderr
    run = cli("policy", "set", "b1", "--max-position-notional", "100")
    assert "USDⓈ-M futures" in run.stderr and "other orders of b1 are refused" in run.stderr
    run = cli("policy", "set", "kr", "--max-open-orders", "none", "--max-position-notional", "none")
    assert "cannot" not in run.stderr
