"""The same ccxt bot, unchanged, on a paper credential and on a live one; and keyless paper.

The bot cannot tell paper from live: it sees the exchange's own answers. The
emulator's journal can: while the bot runs on the paper credential, not one
request reaches its order, cancel or account endpoints.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest
from gateway_testkit import TRADER, StartEmulator, StartGateway, make_vault, new_token
from paper_testkit import PAPER, paper_world, reset

from keybroker import connect_ccxt
from keybroker.paper import keyless_material

SPOT_ONLY = {"options": {"fetchMarkets": {"types": ["spot"]}}, "has": {"fetchCurrencies": False}}
PRIVATE = ("order", "cancel", "private")


def bot(client: Any, symbol: str, market_params: dict[str, str]) -> list[object]:
    """A small trading bot: what it saw, step by step (the same on paper and live)."""
    seen: list[object] = []
    start = client.fetch_balance()
    seen.append(start["free"]["USDT"] == 100000)
    bought = client.create_order(symbol, "market", "buy", 0.01, None, market_params)
    seen.append(bought["id"] is not None)
    fetched = client.fetch_order(bought["id"], symbol)
    seen.append((fetched["status"], fetched["filled"], fetched["side"]))
    resting = client.create_order(symbol, "limit", "buy", 0.01, 50000)
    seen.append(client.fetch_order(resting["id"], symbol)["status"])
    seen.append([o["id"] for o in client.fetch_open_orders(symbol)] == [resting["id"]])
    client.cancel_order(resting["id"], symbol)
    seen.append(client.fetch_order(resting["id"], symbol)["status"])
    after = client.fetch_balance()
    seen.append(after["free"]["USDT"] < 100000 - 0.01 * 59000)
    gained = after["total"]["BTC"] - (start["total"].get("BTC") or 0)
    seen.append(0.0099 <= round(gained, 8) <= 0.01)  # 0.01 less the fee, if charged in BTC
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order(symbol, "limit", "buy", 1.7, 59000)  # 100,300 > what is left
    return seen


@pytest.mark.parametrize("venue", ["binance", "okx"])
def test_the_same_ccxt_bot_runs_on_paper_and_on_live(
    venue: str, tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator(venue)
    home = tmp_path / "home"
    policy = dataclasses.replace(TRADER, max_notional=Decimal(200_000))
    vault = make_vault(
        home,
        {"live": (venue, exchange.url), "paper": (venue, exchange.url)},
        policies={"live": policy, "paper": dataclasses.replace(policy, mode="paper")},
    )
    reset(home, "paper", venue, {"USDT": Decimal(100_000)})
    running = gateway(vault, new_token(vault, "bot1", ["live", "paper"]), paper_poll_s=0.05)
    symbol = "BTC/USDT"
    params = {"tgtCcy": "base_ccy"} if venue == "okx" else {}

    def client(credential: str) -> Any:
        return connect_ccxt(
            credential,
            exchange=venue,
            gateway_url=running.url,
            token=running.token,
            config=SPOT_ONLY,
        )

    on_paper = bot(client("paper"), symbol, params)
    assert [e for e in exchange.journal() if e["kind"] in PRIVATE] == []
    on_live = bot(client("live"), symbol, params)
    assert len(exchange.orders()) == 2  # the live run's two orders, and only those

    assert on_paper == on_live
    assert on_paper[2] == ("closed", 0.01, "buy")
    assert on_paper[3] == "open" and on_paper[5] == "canceled"
    rows = [r.row for r in running.audit() if r.row.kind == "intent"]
    assert {r.credential for r in rows if r.paper} == {"paper"}
    assert {r.credential for r in rows if not r.paper} >= {"live"}


def test_a_keyless_paper_credential_trades_on_public_data_and_refuses_signed_reads(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    home = tmp_path / "home"
    vault = make_vault(home, {})
    vault.add(
        "nokey",
        "binance",
        keyless_material(needs_passphrase=False),
        base_url=exchange.url,
        scopes=("read",),
    )
    vault.set_policy("nokey", PAPER.to_json())
    reset(home, "nokey", "binance", {"USDT": Decimal(10_000)})
    running = gateway(vault, new_token(vault, "bot1", ["nokey"]), paper_poll_s=0.05)
    client = running.client()

    book = client.get("/nokey/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5"})
    assert book.status_code == 200 and len(book.json()["asks"]) == 5
    bought = client.post(
        "/nokey/api/v3/order",
        data={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"},
    )
    assert bought.status_code == 200 and bought.json()["status"] == "FILLED"
    account = client.get("/nokey/api/v3/account")
    assert account.status_code == 200
    fees = client.get("/nokey/api/v3/account/commission", params={"symbol": "BTCUSDT"})
    assert fees.status_code == 403 and fees.headers["x-keybroker-error"] == "paper_refused"
    assert "without an exchange key" in fees.json()["detail"]
    # Nothing keyless is ever signed: the emulator saw no API key at all.
    assert {e.get("api_key") for e in exchange.journal()} == {None}

    vault.set_policy("nokey", dataclasses.replace(PAPER, mode="live").to_json())
    live = client.get("/nokey/api/v3/depth", params={"symbol": "BTCUSDT"})
    assert live.status_code == 403 and "only be used in paper mode" in live.json()["detail"]


def test_an_okx_paper_account_answers_in_okx_shapes(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    world = paper_world(tmp_path, emulator, gateway, "okx")
    client = world.gateway.client()
    quote_buy = client.post(
        "/pp/api/v5/trade/order",
        json={
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "market",
            "sz": "600",
        },
    )
    body = quote_buy.json()
    assert quote_buy.status_code == 200 and body["code"] == "0", body
    (placed,) = body["data"]
    assert placed["sCode"] == "0" and placed["ordId"]
    order = client.get(
        "/pp/api/v5/trade/order", params={"instId": "BTC-USDT", "ordId": placed["ordId"]}
    ).json()
    (detail,) = order["data"]
    assert (detail["state"], detail["tgtCcy"], detail["ordType"]) == (
        "filled",
        "quote_ccy",
        "market",
    )
    spent = Decimal(detail["accFillSz"]) * Decimal(detail["avgPx"])
    assert Decimal(599) < spent <= 600  # 600 USDT spent, in whole steps of BTC
    assert Decimal(detail["fee"]) == -Decimal(detail["accFillSz"]) * Decimal("0.001")

    refused = client.post(
        "/pp/api/v5/trade/order",
        json={
            "instId": "BTC-USDT",
            "tdMode": "cash",
            "side": "buy",
            "ordType": "limit",
            "sz": "30",
            "px": "50000",
        },
    )
    assert refused.json()["code"] == "1"
    assert refused.json()["data"][0]["sCode"] == "51008"
    balance = client.get("/pp/api/v5/account/balance").json()
    usdt = next(d for d in balance["data"][0]["details"] if d["ccy"] == "USDT")
    assert Decimal(usdt["availBal"]) == Decimal(1_000_000) - spent
    unknown = client.post(
        "/pp/api/v5/trade/cancel-order", json={"instId": "BTC-USDT", "ordId": "424242"}
    ).json()
    assert unknown["code"] == "1" and unknown["data"][0]["sCode"] == "51400"
    assert world.order_requests() == []
