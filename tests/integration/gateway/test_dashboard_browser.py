"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

A ``keybroker serve`` process in front of the emulators on loopback, a real
vault with an admin token and a bot token. Each test opens a fresh browser
context (no cookies) and watches everything the page receives: its HTML,
every network response and every console line; none may hold the canary
secrets or a token. Screenshots of each page go to test-artifacts/dashboard/
(gitignored; CI keeps them as artifacts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from gateway_testkit import (
    BINANCE_API_KEY,
    EMULATOR_KEYS,
    LIMIT_BUY,
    OKX_API_KEY,
    PASSPHRASE,
    SECRETS,
    TRADER,
    StartEmulator,
    make_vault,
    new_token,
    serve_process,
    wait_until,
)
from playwright.sync_api import Browser, Page, Playwright, Response, sync_playwright

from debian_packages import require_program
from keybroker.audit import read_rows
from keybroker.emulator import create_app, serve_in_thread
from keybroker.gateway import GatewayConfig
from keybroker.gateway import create_app as create_gateway
from keybroker.gateway import serve_in_thread as serve_gateway
from keybroker.gateway.dashboard import PaperView
from keybroker.secret import Secret
from keybroker.vault import Vault

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"
PREFIX = "/_/dashboard"
PAGES = {"overview": "", "limits": "limits", "audit": "audit", "alerts": "alerts",
         "tokens": "tokens", "paper": "paper"}  # fmt: skip
LIVE = '#status:has-text("Live")'


@dataclass
class Served:
    """A running ``keybroker serve`` with its home, bot token and admin token."""

    process: subprocess.Popen[str]
    home: Path
    url: str
    bot_token: str
    admin_token: str
    client: httpx.Client

    def bot(self) -> httpx.Client:
        """The bot's client (one for the module, closed with the gateway)."""
        return self.client

    def vault(self) -> Vault:
        vault = Vault.open(self.home / "vault.db")
        vault.unlock(Secret(PASSPHRASE))
        return vault


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # Module scope: one gateway process for the module; emulators are started here (the
    # function-scoped `emulator` fixture cannot serve a module fixture).
    binance_url, stop_binance = serve_in_thread(create_app("binance", [EMULATOR_KEYS["binance"]]))
    okx_url, stop_okx = serve_in_thread(create_app("okx", [EMULATOR_KEYS["okx"]]))
    home = tmp_path_factory.mktemp("dashboard") / "home"
    vault = make_vault(
        home,
        {"bn": ("binance", binance_url), "okx-demo": ("okx", okx_url)},
        policies={"bn": TRADER, "okx-demo": TRADER},
    )
    bot_token = new_token(vault, "grid-bot", ["bn", "okx-demo"])
    admin, _ = vault.create_admin_token("alice", expires_at=None)
    admin_token = admin.reveal_text()
    vault.close()
    process = serve_process(home, "--port", "0")
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    client = httpx.Client(base_url=url, headers={"X-Keybroker-Token": bot_token}, timeout=30)
    try:
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
        yield Served(process, home, url, bot_token, admin_token, client)
    finally:
        client.close()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            _, err = process.communicate(timeout=15)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "gateway-stderr.txt").write_text(err or "")
        stop_binance()
        stop_okx()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = require_program("chromium", package="chromium")
    with sync_playwright() as playwright:
        browser = launch(playwright, executable)
        yield browser
        browser.close()


def launch(playwright: Playwright, executable: str) -> Browser:
    return playwright.chromium.launch(executable_path=executable, headless=True)


@dataclass
class Watched:
    """A page and everything it received: responses (with bodies), console lines, URLs."""

    page: Page
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def on_response(self, response: Response) -> None:
        self.urls.append(response.url)
        headers = str(response.headers).encode()
        try:
            body = b"" if 300 <= response.status < 400 else response.body()
        except Exception as exc:  # a page that navigated on: record that it could not be read
            body = f"(body unavailable: {type(exc).__name__})".encode()
        self.bodies.append((response.url, headers + body))

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def assert_clean(self, *tokens: str) -> None:
        """No canary secret, api key or token in the HTML, a response, a console line, a URL."""
        wait_until(lambda: False, timeout=0.3)  # let in-flight polls land
        html = self.page.content()
        texts = [html.encode(), *(body for _, body in self.bodies)]
        texts += [line.encode() for line in self.console] + [url.encode() for url in self.urls]
        for text in texts:
            for canary in (*SECRETS, BINANCE_API_KEY, OKX_API_KEY, *tokens):
                assert canary.encode() not in text, "a secret or token reached the browser"
        assert self.bodies, "the page received nothing"
        csp = [line for line in self.console if "Content Security Policy" in line]
        assert csp == [], csp  # our own pages never trip their CSP


@pytest.fixture
def watched(chromium: Browser) -> Iterator[Watched]:
    context = chromium.new_context(viewport={"width": 1360, "height": 820})
    page = context.new_page()
    seen = Watched(page)
    page.on("response", seen.on_response)
    page.on("console", lambda message: seen.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: seen.console.append(f"pageerror: {error}"))
    yield seen
    context.close()


def log_in(watched: Watched, served: Served | str, token: str) -> None:
    url = served if isinstance(served, str) else served.url
    watched.goto(f"{url}{PREFIX}/")
    watched.page.fill("#token", token)
    watched.page.click("#login")


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# -- the scenarios ---------------------------------------------------------------------------


def test_a_bot_token_is_refused_at_login(served: Served, watched: Watched) -> None:
    log_in(watched, served, served.bot_token)
    error = watched.page.locator("#login-error")
    error.wait_for()
    assert "a bot token cannot open the dashboard" in error.inner_text()
    assert watched.page.url == f"{served.url}{PREFIX}/login"
    assert watched.page.context.cookies() == []
    watched.goto(f"{served.url}{PREFIX}/tokens")  # still nothing but the login page
    assert watched.page.url == f"{served.url}{PREFIX}/login"
    shoot(watched.page, "login-refused")
    watched.assert_clean(served.bot_token, served.admin_token)


@pytest.mark.slow
def test_an_admin_logs_in_sees_the_credentials_and_every_page(
    served: Served, watched: Watched
) -> None:
    bot = served.bot()
    assert bot.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    assert bot.post("/bn/api/v3/order", data={**LIMIT_BUY, "symbol": "ETHUSDT"}).status_code == 403
    assert bot.get("/okx-demo/api/v5/account/balance").status_code == 200
    log_in(watched, served, served.admin_token)
    page = watched.page
    page.wait_for_url(f"{served.url}{PREFIX}/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "kb_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    row = page.locator('#credentials tr[data-credential="bn"]')
    row.wait_for()
    assert "binance" in row.inner_text() and "testnet" in row.inner_text()
    assert "denied: symbols" in row.inner_text()  # its last error
    assert page.locator('#credentials tr[data-credential="okx-demo"]').count() == 1
    page.locator(LIVE).wait_for()
    shoot(page, "overview")
    for name, path in PAGES.items():
        if name == "overview":
            continue
        page.click(f'nav a[href="{PREFIX}/{path}"]')
        page.wait_for_url(f"{served.url}{PREFIX}/{path}")
        page.locator(LIVE).wait_for()
        if name == "audit":
            page.locator('#audit tr[data-kind="denied"]').first.wait_for()
        if name == "limits":
            page.locator("#budgets tr[data-bucket]").first.wait_for()
        if name == "tokens":
            page.locator('#bot-tokens tr[data-bot="grid-bot"]').wait_for()
        shoot(page, name)
    watched.assert_clean(served.bot_token, served.admin_token)


def test_a_denial_appears_live_without_a_reload(served: Served, watched: Watched) -> None:
    log_in(watched, served, served.admin_token)
    page = watched.page
    page.wait_for_url(f"{served.url}{PREFIX}/")
    page.click(f'nav a[href="{PREFIX}/alerts"]')
    page.locator(LIVE).wait_for()
    page.evaluate("window.__loadedOnce = true")  # gone if the page reloads
    denied = served.bot().post("/okx-demo/api/v5/trade/order", json={
        "instId": "DOGE-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
        "sz": "1", "px": "0.1"})  # fmt: skip
    assert denied.status_code == 403 and denied.json()["rule"] == "symbols"
    row = page.locator("#denials tbody tr", has_text="DOGE-USDT")
    row.wait_for(timeout=10_000)
    assert "okx-demo" in row.inner_text() and "symbols" in row.inner_text()
    page.locator('#alerts tr[data-alert="PolicyDenied"]').first.wait_for()
    assert page.evaluate("window.__loadedOnce") is True
    shoot(page, "alerts-live-denial")
    watched.assert_clean(served.bot_token, served.admin_token)


@pytest.mark.slow
def test_halting_from_the_page_refuses_the_next_order_and_is_audited(
    served: Served, watched: Watched
) -> None:
    log_in(watched, served, served.admin_token)
    page = watched.page
    row = page.locator('#credentials tr[data-credential="bn"]')
    row.wait_for()
    row.locator('button[data-action="halt"]').click()
    dialog = page.locator("#confirm")
    dialog.wait_for()
    assert "Halt new orders for bn" in dialog.inner_text()
    page.locator("#confirm-cancel").click()  # cancelling does nothing
    assert served.bot().post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    row.locator('button[data-action="halt"]').click()
    page.fill("#confirm-reason", "runaway grid")
    page.locator("#confirm-ok").click()
    row.locator('button[data-action="resume"]').wait_for()
    assert "halted" in row.inner_text()
    refused = served.bot().post("/bn/api/v3/order", data=LIMIT_BUY)
    assert refused.status_code == 403 and refused.json()["rule"] == "kill_switch"
    shoot(page, "overview-halted")
    rows = read_rows(served.home / "audit.db")
    halts = [r.row for r in rows if r.row.rule == "dashboard_halt"]
    assert [(h.credential, h.detail) for h in halts] == [
        ("bn", "admin alice halted bn from the dashboard: runaway grid")
    ]
    # Resume from the page too; the next order goes through again.
    row.locator('button[data-action="resume"]').click()
    page.locator("#confirm-ok").click()
    row.locator('button[data-action="halt"]').wait_for()
    assert served.bot().post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    watched.assert_clean(served.bot_token, served.admin_token)


def test_logout_and_revocation_send_the_page_back_to_login(
    served: Served, watched: Watched
) -> None:
    log_in(watched, served, served.admin_token)
    page = watched.page
    page.locator(LIVE).wait_for()
    page.click("#logout")
    page.wait_for_url(f"{served.url}{PREFIX}/login")
    watched.goto(f"{served.url}{PREFIX}/")
    assert page.url == f"{served.url}{PREFIX}/login"
    # A second admin, revoked while the page is open: the next poll lands on the login page.
    with served.vault() as vault:
        bob, _ = vault.create_admin_token("bob", expires_at=None)
    log_in(watched, served, bob.reveal_text())
    page.locator(LIVE).wait_for()
    with served.vault() as vault:
        vault.revoke_admin_token("bob")
    page.wait_for_url(f"{served.url}{PREFIX}/login", timeout=10_000)
    watched.assert_clean(served.bot_token, served.admin_token, bob.reveal_text())


# -- the paper page, through its seam --------------------------------------------------------


@dataclass(frozen=True)
class LedgerFigures:
    """The fields ``keybroker.paper.report.summarize`` returns (PaperSummary's shape)."""

    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    fills: int
    win_rate: Decimal | None
    slippage_vs_mid: Decimal | None
    equity: tuple[tuple[int, Decimal], ...]


def test_the_paper_page_draws_each_ledger_and_says_which_have_none(
    tmp_path: Path, emulator: StartEmulator, watched: Watched
) -> None:
    exchange = emulator("binance")
    vault = make_vault(
        tmp_path / "home",
        {
            "bn": ("binance", exchange.url),
            "plain": ("binance", exchange.url),
            "broken": ("binance", exchange.url),
        },
        policies={"bn": TRADER},
    )
    admin, _ = vault.create_admin_token("alice", expires_at=None)
    start = 1_767_225_600_000
    curve = tuple(
        (start + minute * 60_000, Decimal(10_000) + Decimal(minute * 7 % 50) - Decimal(minute) / 3)
        for minute in range(120)
    )
    figures = LedgerFigures(
        Decimal("-40.25"),
        Decimal("12.5"),
        Decimal("3.1875"),
        37,
        Decimal("0.54"),
        Decimal("0.00021"),
        curve,
    )
    hidden = tmp_path / "home" / "private-ledger-path"

    def summary(name: str) -> LedgerFigures | None:
        if name == "broken":
            raise FileNotFoundError(str(hidden))
        return figures if name == "bn" else None

    view = PaperView(mode=lambda name: "paper" if name == "bn" else "live", summary=summary)
    config = GatewayConfig(audit_path=tmp_path / "home" / "audit.db")
    running = serve_gateway(create_gateway(vault, config, paper=view))
    try:
        log_in(watched, running.url, admin.reveal_text())
        page = watched.page
        bn = page.locator('#credentials tr[data-credential="bn"]')
        bn.wait_for()
        assert "paper" in bn.inner_text()
        page.click(f'nav a[href="{PREFIX}/paper"]')
        card = page.locator('#paper section[data-credential="bn"]')
        card.locator("svg.equity polyline").wait_for()
        points = card.locator("svg.equity polyline").get_attribute("points") or ""
        assert len(points.split()) == len(curve)
        text = card.inner_text()
        for shown in ("-40.25", "12.5", "3.1875", "37", "54 %", "0.00021"):
            assert shown in text, shown
        assert (
            "No paper ledger"
            in page.locator('#paper section[data-credential="plain"]').inner_text()
        )
        broken = page.locator('#paper section[data-credential="broken"]').inner_text()
        assert "FileNotFoundError" in broken
        shoot(page, "paper-with-ledger")
        watched.assert_clean(admin.reveal_text(), str(hidden))
    finally:
        running.stop()
        vault.close()
