"""Paper orders spend the exchange's order budgets in the gateway's limiter, as live orders do.

OKX counts orders per account over a sliding two seconds
(``SUB_ACCOUNT_ORDERS``); its capacity is set to 2 here. Credential ``pp``
is in paper mode, ``ox`` live, on the same gateway and the same emulator
key: each sends three orders at once. With a short queueing deadline the
third of each is refused by the gateway (429, ``rate_limited``); with a long
one it is held until the window lets it go and then answered. The paper
credential's orders never reach the emulator's order endpoints either way;
the live one's that were let through do.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from pathlib import Path
from typing import Any

import httpx
from gateway_testkit import Emulator, Gateway, StartEmulator, StartGateway, make_vault, new_token
from paper_testkit import PAPER, START, reset

from keybroker.paper import Ledger
from keybroker.ratelimit import MemoryLimiter

LIVE = dataclasses.replace(PAPER, mode="live")
ORDER = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
         "sz": "0.001", "px": "50000"}  # fmt: skip
BUDGET = "SUB_ACCOUNT_ORDERS"


@dataclasses.dataclass
class Setup:
    exchange: Emulator
    gateway: Gateway
    live_token: str
    """Bot ``live-bot``'s token for ``ox``; ``paper-bot``'s (for ``pp``) is the gateway's own:
    two bots, so the limiter queues each in its own line."""


def _gateway(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, deadline_s: float
) -> Setup:
    exchange = emulator("okx")
    home = tmp_path / "home"
    vault = make_vault(
        home,
        {"pp": ("okx", exchange.url), "ox": ("okx", exchange.url)},
        policies={"pp": PAPER, "ox": LIVE},
    )
    reset(home, "pp", "okx", START)
    limiter = MemoryLimiter(limit_overrides={f"okx:{BUDGET}": 2})
    running = gateway(
        vault,
        new_token(vault, "paper-bot", ["pp"]),
        limiter=limiter,
        rate_limit_deadline_s=deadline_s,
        paper_poll_s=0.05,
    )
    return Setup(exchange, running, new_token(vault, "live-bot", ["ox"]))


def _three_orders_at_once(setup: Setup) -> dict[str, list[httpx.Response]]:
    """Three orders from each credential, all six in flight together."""
    clients = {"pp": setup.gateway.client(), "ox": setup.gateway.client(setup.live_token)}
    jobs = [name for name in ("pp", "ox") for _ in range(3)]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(
            pool.map(lambda n: clients[n].post(f"/{n}/api/v5/trade/order", json=ORDER), jobs)
        )
    return {
        name: [a for n, a in zip(jobs, answers, strict=True) if n == name] for name in ("pp", "ox")
    }


def _at_the_exchange(exchange: Emulator) -> list[str]:
    """Credentials whose requests reached the emulator's order, cancel or account endpoints."""
    return [e["path"] for e in exchange.journal() if e["kind"] in ("order", "cancel", "private")]


def _limiter(running: Gateway) -> dict[str, Any]:
    status = running.client().get("/_/status").json()
    rows: list[dict[str, Any]] = status["limiter"]
    budgets = {row["key"].split(":")[-2]: row for row in rows if row.get("name") == BUDGET}
    (totals,) = [row for row in rows if row["type"] == "totals"]
    return {"budgets": budgets, "totals": totals}


def _paper_orders(running: Gateway) -> int:
    ledger = Ledger.open(running.home / "paper.db")
    try:
        return len(ledger.orders("pp"))
    finally:
        ledger.close()


def test_paper_orders_over_the_order_budget_are_refused_like_live_ones(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    setup = _gateway(tmp_path, emulator, gateway, deadline_s=0.3)
    exchange, running = setup.exchange, setup.gateway
    answers = _three_orders_at_once(setup)

    for name in ("pp", "ox"):
        statuses = sorted(answer.status_code for answer in answers[name])
        assert statuses == [200, 200, 429], (name, [a.text for a in answers[name]])
        (limited,) = [a for a in answers[name] if a.status_code == 429]
        assert limited.json()["error"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
    assert all(
        a.headers["x-keybroker-venue"] == "paper" for a in answers["pp"] if a.status_code == 200
    )
    # Charged to a budget of the same name and size, one per credential (the account).
    limiter = _limiter(running)
    assert set(limiter["budgets"]) == {"pp", "ox"}
    assert {row["capacity"] for row in limiter["budgets"].values()} == {2}
    assert limiter["totals"]["rejected"] == 2
    # The gateway refused them: audited as rate_limited, the paper one marked paper.
    denied = running.rows("denied")
    assert sorted((row.row.credential, row.row.rule, row.row.paper) for row in denied) == [
        ("ox", "rate_limited", False),
        ("pp", "rate_limited", True),
    ]
    assert _paper_orders(running) == 2
    # Only the live credential's two orders reached the exchange.
    assert _at_the_exchange(exchange) == ["/api/v5/trade/order"] * 2
    assert len(exchange.orders()) == 2


def test_paper_orders_over_the_order_budget_are_held_then_answered_like_live_ones(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    setup = _gateway(tmp_path, emulator, gateway, deadline_s=15)
    exchange, running = setup.exchange, setup.gateway
    answers = _three_orders_at_once(setup)

    for name in ("pp", "ox"):
        assert [answer.status_code for answer in answers[name]] == [200] * 3, name
        assert all(answer.json()["code"] == "0" for answer in answers[name])
    assert all(answer.headers["x-keybroker-venue"] == "paper" for answer in answers["pp"])
    assert all("x-keybroker-venue" not in answer.headers for answer in answers["ox"])
    # The third order of each credential was held until the two-second window let it go:
    # its intent row (written once the budget was spent) is over a second after the first's.
    for name in ("pp", "ox"):
        spent = sorted(
            row.ts_ms
            for row in running.rows("intent")
            if row.row.credential == name and row.row.request_kind == "order_place"
        )
        assert len(spent) == 3 and spent[2] - spent[0] >= 1000, (name, spent)
    limiter = _limiter(running)
    assert limiter["totals"]["waited"] >= 2 and limiter["totals"]["rejected"] == 0
    assert running.rows("denied") == []
    assert _paper_orders(running) == 3
    assert _at_the_exchange(exchange) == ["/api/v5/trade/order"] * 3  # the live ones only
    assert len(exchange.orders()) == 3
