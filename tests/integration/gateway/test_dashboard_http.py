"""The dashboard over real HTTP: who gets in, what each answer carries, and the three actions.

A gateway and the emulator on loopback (the ``world`` fixture), a real vault
file; requests made with httpx as a browser would make them (Origin header,
cookies). The browser itself drives the same pages in test_dashboard_browser.py.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from gateway_testkit import (
    BINANCE_API_KEY,
    LIMIT_BUY,
    SECRETS,
    TRADER,
    StartEmulator,
    World,
    assert_no_secret,
    make_vault,
    serve_process,
    wait_until,
)

from keybroker.audit import read_rows

PREFIX = "/_/dashboard"
PAGES = ("", "limits", "audit", "alerts", "tokens", "paper")
APIS = ("overview", "limits", "audit", "alerts", "tokens", "paper")


class Browser:
    """An httpx client that behaves like a same-origin page: Origin on POSTs, cookies kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=30)
        self.csrf = ""

    def login(self, token: str, origin: str | None = None) -> httpx.Response:
        response = self.client.post(
            f"{PREFIX}/login", data={"token": token}, headers={"origin": origin or self.url}
        )
        if response.status_code == 303:
            page = self.client.get(f"{PREFIX}/")
            found = re.search(r'data-csrf="([^"]+)"', page.text)
            self.csrf = found.group(1) if found else ""
        return response

    def act(self, action: str, **body: object) -> httpx.Response:
        return self.client.post(
            f"{PREFIX}/api/{action}",
            json=body,
            headers={"origin": self.url, "x-keybroker-csrf": self.csrf},
        )

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def admin(world: World) -> str:
    secret, _ = world.gateway.vault.create_admin_token("alice", expires_at=None)
    return secret.reveal_text()


@pytest.fixture
def browser(world: World) -> Iterator[Browser]:
    opened = Browser(world.gateway.url)
    yield opened
    opened.close()


def test_pages_need_a_login_and_the_login_page_is_locked_down(
    world: World, browser: Browser
) -> None:
    for page in PAGES:
        response = browser.client.get(f"{PREFIX}/{page}")
        assert response.status_code == 303 and response.headers["location"] == f"{PREFIX}/login"
    for api in APIS:
        assert browser.client.get(f"{PREFIX}/api/{api}").status_code == 401
    assert browser.client.get(PREFIX).headers["location"] == f"{PREFIX}/"
    login = browser.client.get(f"{PREFIX}/login")
    assert login.status_code == 200 and 'type="password"' in login.text
    csp = login.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([A-Za-z0-9_-]{16,})'", csp)
    assert nonce and f'nonce="{nonce.group(1)}"' in login.text
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert login.headers["referrer-policy"] == "no-referrer"
    assert login.headers["x-frame-options"] == "DENY"
    assert "<script>" not in login.text  # every script tag carries the nonce and a src
    # A new nonce for every page.
    again = browser.client.get(f"{PREFIX}/login").headers["content-security-policy"]
    assert again != csp


def test_an_admin_logs_in_with_a_session_cookie_and_sees_every_page(
    world: World, browser: Browser, admin: str
) -> None:
    response = browser.login(admin)
    assert response.status_code == 303 and response.headers["location"] == f"{PREFIX}/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("kb_dashboard=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/_/dashboard" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; under TLS it is set
    assert admin not in cookie and admin not in response.headers.get("location", "")
    for page in PAGES:
        shown = browser.client.get(f"{PREFIX}/{page}")
        assert shown.status_code == 200 and "alice" in shown.text
        assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
    for api in APIS:
        assert browser.client.get(f"{PREFIX}/api/{api}").status_code == 200
    overview = browser.client.get(f"{PREFIX}/api/overview").json()
    (bn,) = overview["credentials"]
    assert (bn["name"], bn["exchange"], bn["environment"], bn["mode"]) == (
        "bn",
        "binance",
        "testnet",
        "live",
    )
    assert bn["scopes"] == ["read", "trade"] and bn["rotation"] == "ok"
    assert (bn["halted"], bn["breaker"], bn["last_error"]) == (False, "closed", None)
    logins = [r.row for r in read_rows(world.gateway.audit_path) if r.row.rule == "dashboard_login"]
    assert [row.detail for row in logins] == ["admin alice logged in"]


def test_a_bot_token_cannot_log_in_and_an_admin_token_cannot_sign(
    world: World, browser: Browser, admin: str
) -> None:
    refused = browser.login(world.gateway.token)
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert "a bot token cannot open the dashboard" in refused.text
    assert world.gateway.token not in refused.text
    assert browser.login("kbadm_" + "A" * 43).status_code == 401
    # The bot token opens no dashboard API either, in any header.
    bot = world.gateway.client()
    for api in APIS:
        assert bot.get(f"{PREFIX}/api/{api}").status_code == 401
    # The admin token signs nothing: the gateway does not know it as a bot token.
    for headers in ({"X-Keybroker-Token": admin}, {"Authorization": f"Bearer {admin}"}):
        answer = world.gateway.client(token="").get("/bn/api/v3/account", headers=headers)
        assert answer.status_code == 401
    assert world.exchange.requests_to("/api/v3/account") == []


def test_logout_revocation_and_expiry_end_the_session_at_once(
    world: World, browser: Browser, admin: str
) -> None:
    vault = world.gateway.vault
    browser.login(admin)
    assert browser.client.get(f"{PREFIX}/api/overview").status_code == 200
    # Logout needs the form's CSRF token; then the old cookie opens nothing.
    cookie = browser.client.cookies.get("kb_dashboard")
    bad = browser.client.post(
        f"{PREFIX}/logout", data={"csrf": "nope"}, headers={"origin": browser.url}
    )
    assert bad.status_code == 403
    out = browser.client.post(
        f"{PREFIX}/logout", data={"csrf": browser.csrf}, headers={"origin": browser.url}
    )
    assert out.status_code == 303 and out.headers["location"] == f"{PREFIX}/login"
    assert cookie is not None
    stale = httpx.get(f"{browser.url}{PREFIX}/api/overview", cookies={"kb_dashboard": cookie})
    assert stale.status_code == 401
    # Revocation (by any process using the vault) ends the session on its next request.
    browser.login(admin)
    assert browser.client.get(f"{PREFIX}/api/tokens").status_code == 200
    vault.revoke_admin_token("alice")
    assert browser.client.get(f"{PREFIX}/api/tokens").status_code == 401
    assert browser.client.get(f"{PREFIX}/").status_code == 303
    # Expiry: a token that expires in a moment stops working when it does.
    short, _ = vault.create_admin_token(
        "alice", expires_at=datetime.now(UTC) + timedelta(seconds=1.5)
    )
    assert browser.login(short.reveal_text()).status_code == 303
    assert browser.client.get(f"{PREFIX}/api/tokens").status_code == 200
    assert wait_until(
        lambda: browser.client.get(f"{PREFIX}/api/tokens").status_code == 401, timeout=5
    )


def test_actions_need_csrf_same_origin_and_confirmation_and_are_audited(
    world: World, browser: Browser, admin: str
) -> None:
    browser.login(admin)
    body = {"credential": "bn", "confirm": "bn", "reason": "runaway"}
    headers = {"origin": browser.url}
    no_csrf = browser.client.post(f"{PREFIX}/api/halt", json=body, headers=headers)
    assert no_csrf.status_code == 403 and no_csrf.json()["error"] == "csrf"
    evil = browser.client.post(
        f"{PREFIX}/api/halt",
        json=body,
        headers={"origin": "http://attacker.example", "x-keybroker-csrf": browser.csrf},
    )
    assert evil.status_code == 403
    no_origin = browser.client.post(
        f"{PREFIX}/api/halt", json=body, headers={"x-keybroker-csrf": browser.csrf}
    )
    assert no_origin.status_code == 403
    form = browser.client.post(
        f"{PREFIX}/api/halt",
        data={"credential": "bn", "confirm": "bn"},
        headers={"origin": browser.url, "x-keybroker-csrf": browser.csrf},
    )
    assert form.status_code == 415
    unconfirmed = browser.act("halt", credential="bn")
    assert unconfirmed.status_code == 400 and unconfirmed.json()["error"] == "confirmation_required"
    assert browser.act("halt", credential="bn", confirm="other").status_code == 400
    assert browser.act("delete", credential="bn", confirm="bn").status_code == 404
    assert world.gateway.vault.halted() == {}  # nothing above did anything

    bot = world.gateway.client()
    halted = browser.act("halt", **body)
    assert halted.status_code == 200, halted.text
    assert "bn" in world.gateway.vault.halted()
    refused = bot.post("/bn/api/v3/order", data=LIMIT_BUY)
    assert refused.status_code == 403 and refused.json()["rule"] == "kill_switch"
    assert browser.client.get(f"{PREFIX}/api/overview").json()["credentials"][0]["halted"]
    assert browser.act("resume", credential="bn", confirm="bn").status_code == 200
    assert bot.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    assert browser.act("halt", credential="*", confirm="*").status_code == 200
    assert bot.post("/bn/api/v3/order", data=LIMIT_BUY).json()["rule"] == "kill_switch"
    assert browser.act("resume", credential="*", confirm="*").status_code == 200
    assert browser.act("halt", credential="ghost", confirm="ghost").status_code == 404
    assert browser.act("revoke", bot="bot1", confirm="bot1").status_code == 200
    assert bot.get("/bn/api/v3/account").status_code == 401
    tokens = browser.client.get(f"{PREFIX}/api/tokens").json()
    assert tokens["bots"][0]["state"] == "revoked"

    actions = [
        (r.row.rule, r.row.credential, r.row.bot, r.row.detail)
        for r in world.gateway.audit()
        if (r.row.rule or "").startswith("dashboard_") and r.row.rule != "dashboard_login"
    ]
    assert actions == [
        ("dashboard_halt", "bn", None, "admin alice halted bn from the dashboard: runaway"),
        ("dashboard_resume", "bn", None, "admin alice resumed bn from the dashboard"),
        ("dashboard_halt", "*", None, "admin alice halted every credential from the dashboard"),
        ("dashboard_resume", "*", None, "admin alice resumed every credential from the dashboard"),
        (
            "dashboard_revoke",
            None,
            "bot1",
            "admin alice revoked the token of bot bot1 from the dashboard",
        ),
    ]


def test_the_dashboard_takes_no_cross_origin_calls_and_keeps_the_host_check(
    world: World, browser: Browser, admin: str
) -> None:
    browser.login(admin)
    login = browser.client.post(
        f"{PREFIX}/login", data={"token": admin}, headers={"origin": "http://evil.example"}
    )
    assert login.status_code == 403
    rebound = browser.client.get(f"{PREFIX}/api/overview", headers={"host": "evil.example"})
    assert rebound.status_code == 400 and rebound.json()["error"] == "bad_host"
    preflight = browser.client.options(
        f"{PREFIX}/api/halt",
        headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers


def test_the_filters_and_the_live_reads_of_the_audit_and_alerts(
    world: World, browser: Browser, admin: str
) -> None:
    browser.login(admin)
    bot = world.gateway.client()
    assert bot.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    denied = bot.post("/bn/api/v3/order", data={**LIMIT_BUY, "symbol": "ETHUSDT"})
    assert denied.status_code == 403
    world.gateway.audit()  # every result row written
    api = f"{PREFIX}/api"
    rows = browser.client.get(f"{api}/audit", params={"kind": "denied"}).json()["rows"]
    assert [(r["bot"], r["rule"], r["order"]["symbol"]) for r in rows] == [
        ("bot1", "symbols", "ETHUSDT")
    ]
    everything = browser.client.get(f"{api}/audit", params={"bot": "bot1"}).json()["rows"]
    assert {r["kind"] for r in everything} == {"intent", "result", "denied"}
    intent = next(r for r in everything if r["kind"] == "intent")
    result = next(r for r in everything if r["kind"] == "result")
    assert result["intent_id"] == intent["id"] and result["status"] == 200
    assert intent["order"]["price"] == "50000" and "signature" not in str(everything)
    newer = browser.client.get(f"{api}/audit", params={"after": intent["id"]}).json()["rows"]
    assert all(row["id"] > intent["id"] for row in newer) and newer
    assert browser.client.get(f"{api}/audit", params={"bot": "nobody"}).json()["rows"] == []
    alerts = browser.client.get(f"{api}/alerts").json()
    assert [(a["alert"], a["rule"]) for a in alerts["alerts"]] == [("PolicyDenied", "symbols")]
    assert [d["rule"] for d in alerts["denials"]] == ["symbols"]
    seq, last = alerts["alerts"][-1]["seq"], alerts["denials"][-1]["id"]
    quiet = browser.client.get(f"{api}/alerts", params={"after": seq, "after_denial": last})
    assert quiet.json() == {"alerts": [], "denials": []}
    overview = browser.client.get(f"{api}/overview").json()["credentials"][0]
    assert overview["last_error"]["text"].startswith("denied: symbols")


def test_no_secret_or_token_in_any_dashboard_answer(
    world: World, browser: Browser, admin: str
) -> None:
    bot = world.gateway.client()
    bot.post("/bn/api/v3/order", data=LIMIT_BUY)
    bot.post("/bn/api/v3/order", data={**LIMIT_BUY, "symbol": "ETHUSDT"})
    login = browser.login(admin)
    answers = [login]
    answers += [browser.client.get(f"{PREFIX}/{page}") for page in PAGES]
    answers += [browser.client.get(f"{PREFIX}/api/{api}") for api in APIS]
    answers += [browser.client.get(f"{PREFIX}/static/{name}") for name in ("dashboard.js",)]
    for answer in answers:
        text = answer.text + str(answer.headers)
        assert_no_secret(text)
        for token in (admin, world.gateway.token, BINANCE_API_KEY, *SECRETS):
            assert token not in text


def test_the_assets_come_from_the_package_and_nothing_else_is_served(
    world: World, browser: Browser
) -> None:
    script = browser.client.get(f"{PREFIX}/static/dashboard.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    # No way to turn data into markup or code, and no other host to load from.
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script.text
    assert re.findall(r"https?://[^\s\"']+", script.text) == ["http://www.w3.org/2000/svg"]
    assert browser.client.get(f"{PREFIX}/static/dashboard.css").status_code == 200
    for name in ("../routes.py", "..%2Froutes.py", "nope.js", "%2e%2e/pages.py"):
        assert browser.client.get(f"{PREFIX}/static/{name}").status_code == 404
    assert browser.client.get(f"{PREFIX}/nope").status_code == 404


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        # What Chromium sends from our own page under no-referrer.
        ({"origin": "null", "sec-fetch-site": "same-origin"}, True),
        ({"sec-fetch-site": "same-origin"}, True),
        ({"origin": "null"}, False),  # a sandboxed frame anywhere sends this
        ({"origin": "null", "sec-fetch-site": "cross-site"}, False),
        ({"origin": "null", "sec-fetch-site": "same-site"}, False),  # another port or subdomain
        ({"sec-fetch-site": "none"}, False),
        ({}, False),
    ],
)
def test_where_an_action_came_from_is_checked(
    world: World, browser: Browser, admin: str, headers: dict[str, str], allowed: bool
) -> None:
    browser.login(admin)
    response = browser.client.post(
        f"{PREFIX}/api/halt",
        json={"credential": "bn", "confirm": "bn"},
        headers={**headers, "x-keybroker-csrf": browser.csrf},
    )
    assert (response.status_code == 200) is allowed, response.text
    assert ("bn" in world.gateway.vault.halted()) is allowed


def test_under_tls_the_session_cookie_is_secure(tmp_path: Path, emulator: StartEmulator) -> None:
    from test_gateway_serve import _self_signed  # the throwaway 127.0.0.1 certificate

    exchange = emulator("binance")
    home = tmp_path / "home"
    vault = make_vault(home, {"bn": ("binance", exchange.url)}, policies={"bn": TRADER})
    admin, _ = vault.create_admin_token("alice", expires_at=None)
    vault.close()
    cert, key = _self_signed(tmp_path)
    process = serve_process(
        tmp_path / "home", "--port", "0", "--tls-cert", str(cert), "--tls-key", str(key)
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:"), url
        trust = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=trust, timeout=30) as client:
            login = client.post(
                f"{PREFIX}/login", data={"token": admin.reveal_text()}, headers={"origin": url}
            )
            assert login.status_code == 303
            cookie = login.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert client.get(f"{PREFIX}/api/overview").status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=15)
