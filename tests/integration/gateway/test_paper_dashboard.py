"""The dashboard's paper page of a gateway made the way ``keybroker serve`` makes it.

No paper view is handed to ``create_app``: the page must read the modes from
the vault's policies and the figures from the gateway's own ``paper.db``,
where a paper bot's orders just landed.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
from gateway_testkit import LIMIT_BUY, TRADER, StartEmulator, StartGateway, make_vault, new_token
from paper_testkit import PAPER, START, reset

from keybroker.paper import summarize

PREFIX = "/_/dashboard"


def test_the_paper_page_shows_the_paper_ledger_of_a_served_gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    exchange = emulator("binance")
    home = tmp_path / "home"
    vault = make_vault(
        home,
        {"pp": ("binance", exchange.url), "side": ("binance", exchange.url)},
        policies={"pp": PAPER, "side": TRADER},
    )
    reset(home, "pp", "binance", START)
    running = gateway(vault, new_token(vault, "bot1", ["pp", "side"]), paper_poll_s=0.05)
    bot = running.client()
    market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.2"}
    bought = bot.post("/pp/api/v3/order", data=market)
    assert bought.status_code == 200, bought.text
    assert bot.post("/pp/api/v3/order", data=LIMIT_BUY).status_code == 200

    admin, _ = vault.create_admin_token("alice", expires_at=None)
    with httpx.Client(base_url=running.url, timeout=30) as browser:
        login = browser.post(
            f"{PREFIX}/login", data={"token": admin.reveal_text()}, headers={"origin": running.url}
        )
        assert login.status_code == 303
        assert browser.get(f"{PREFIX}/paper").status_code == 200
        modes = {
            c["name"]: c["mode"]
            for c in browser.get(f"{PREFIX}/api/overview").json()["credentials"]
        }
        figures = {c["name"]: c for c in browser.get(f"{PREFIX}/api/paper").json()["credentials"]}

    assert modes == {"pp": "paper", "side": "live"}
    assert figures["side"]["summary"] is None and figures["side"]["note"] == "no paper ledger"
    shown = figures["pp"]["summary"]
    expected = summarize(home / "paper.db", "pp")
    assert shown["fills"] == expected.fills == len(bought.json()["fills"]) > 0
    assert Decimal(shown["fees"]) == expected.fees > 0
    assert shown["equity"]  # a point at least: the book the market buy walked
    assert all(e["kind"] not in ("order", "cancel", "private") for e in exchange.journal())
