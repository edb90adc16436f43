"""``keybroker keys add --paper``, ``policy set --mode`` and ``paper reset|report`` end to end."""

from __future__ import annotations

import json
from decimal import Decimal

from cli_harness import BINANCE_ENV, PASSPHRASE, Kb

from keybroker.paper import NO_KEY_API_KEY, Ledger
from keybroker.paper.desk import decide
from keybroker.paper.model import Book, Instrument, Level, NewOrder
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import Vault


def _policy(cli: Kb, name: str) -> dict[str, object]:
    shown: dict[str, object] = json.loads(cli("policy", "show", name, "--json").stdout)["policy"]
    return shown


def test_a_keyless_paper_credential_can_never_go_live(vault: Kb) -> None:
    added = vault("keys", "add", "pb", "-e", "binance", "--paper", "--no-key")
    assert "trades on paper and holds no exchange key" in added.text
    assert "paper reset pb" in added.text
    assert _policy(vault, "pb")["mode"] == "paper"
    with Vault.open(vault.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        assert opened.credential("pb").api_key == NO_KEY_API_KEY
    refused = vault("policy", "set", "pb", "--mode", "live", expect=1)
    assert "has no exchange key" in refused.text and "keys rotate pb" in refused.text
    assert _policy(vault, "pb")["mode"] == "paper"
    # OKX needs a passphrase; a keyless credential gets filler for it too.
    vault("keys", "add", "po", "-e", "okx", "--paper", "--no-key")
    assert vault("keys", "add", "x", "-e", "binance", "--no-key", expect=1).code == 1


def test_a_read_only_key_trades_on_paper_and_going_live_is_one_setting(vault: Kb) -> None:
    vault(
        "keys",
        "add",
        "ro",
        "-e",
        "binance",
        "--scope",
        "read",
        "--paper",
        "--from-env",
        env=BINANCE_ENV,
    )
    granted = vault("policy", "set", "ro", "--scope", "trade", "--symbols", "BTCUSDT")
    assert "check the key itself may trade" not in granted.text  # paper needs no trade right
    assert _policy(vault, "ro")["mode"] == "paper"
    live = vault("policy", "set", "ro", "--mode", "live")
    assert "check the key itself may trade" in live.text
    shown = _policy(vault, "ro")
    assert (shown["mode"], shown["symbols"]) == ("live", ["BTCUSDT"])
    with Vault.open(vault.vault_path) as opened:
        opened.unlock(Secret(PASSPHRASE))
        document = opened.policy_document("ro")
    assert document is not None and b"mode" not in document  # stored as before modes
    assert Policy.from_json(document).mode == "live"
    assert vault("policy", "set", "ro", "--mode", "demo", expect=1).code == 1


def test_paper_reset_and_report(vault: Kb) -> None:
    vault("keys", "add", "pb", "-e", "binance", "--paper", "--no-key")
    reset = vault(
        "paper",
        "reset",
        "pb",
        "--balance",
        "USDT=10000",
        "--balance",
        "btc=0.5",
        "--maker-fee",
        "0.05%",
        "--latency-ms",
        "20",
        "--json",
    )
    assert json.loads(reset.stdout) == {
        "credential": "pb",
        "exchange": "binance",
        "environment": "testnet",
        "balances": {"USDT": "10000", "BTC": "0.5"},
        "maker_fee": "0.0005",
        "taker_fee": "0.001",
        "latency_ms": 20,
        "value_in": "USDT",
    }
    assert vault("paper", "reset", "pb", "--balance", "USDT", expect=1).code == 1
    assert vault("paper", "reset", "pb", "--balance", "USDT=-1", expect=1).code == 1
    assert vault("paper", "reset", "nobody", "--balance", "USDT=1", expect=2).code == 2

    # A fill as the gateway's paper venue records it.
    btc = Instrument("BTCUSDT", "BTC", "USDT", step_size=Decimal("0.0001"))
    book = Book((Level(Decimal(99), Decimal(1)),), (Level(Decimal(101), Decimal(1)),))
    order = NewOrder("BTCUSDT", "buy", "market", Decimal("0.5"))
    ledger = Ledger.open(vault.home / "paper.db")
    account = ledger.account("pb")
    assert account is not None
    plan, rests = decide(order, book, btc.step_size)
    ledger.place(
        "pb",
        order,
        btc,
        taken=plan,
        rests=rests,
        fees=account.fees,
        mid=book.mid,
        now_ms=account.reset_ms + 60_000,
        market_url="http://x",
    )
    ledger.close()

    report = json.loads(vault("paper", "report", "pb", "--json").stdout)
    assert (report["fills"], report["slippage_vs_mid"], report["consistent"]) == (1, "0.5", True)
    assert report["fees"] == str(Decimal("0.0005") * 101)
    assert report["equity"][0][1] == "10000"  # BTC has no price yet
    plot = vault.home / "equity.png"
    shown = vault("paper", "report", "pb", "--plot", str(plot))
    assert "slippage against mid" in shown.stdout and "Equity curve drawn" in shown.stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"
    missing = vault("paper", "report", "other", expect=2)
    assert "paper reset other" in missing.text and "Traceback" not in missing.text
