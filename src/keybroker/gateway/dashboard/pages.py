"""The dashboard's HTML: a login page and one shell per page, filled in by dashboard.js.

    >>> html = page("overview", admin="alice", csrf=session.csrf, nonce=nonce)

The server renders only what it knows at once (the page's name, the admin's
name, the CSRF token for actions); the data comes from ``/_/dashboard/api/*``
and is written into the page with ``textContent`` only, so no value from an
exchange, an audit row or a bot name is ever parsed as HTML. Every value put
into the HTML here goes through ``html.escape``.
"""

from __future__ import annotations

from html import escape

from keybroker import __version__

PREFIX = "/_/dashboard"

PAGES: dict[str, tuple[str, str]] = {
    "overview": ("", "Overview"),
    "limits": ("limits", "Rate limits"),
    "audit": ("audit", "Audit"),
    "alerts": ("alerts", "Alerts and denials"),
    "tokens": ("tokens", "Tokens"),
    "paper": ("paper", "Paper"),
}
"""page name → (path under the prefix, title)."""

_ASSET_VERSION = __version__  # a new release's browsers fetch the new script


def _head(title: str, nonce: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)} · keybroker</title>"
        f'<link rel="stylesheet" href="{PREFIX}/static/dashboard.css?v={escape(_ASSET_VERSION)}">'
        f'<script nonce="{escape(nonce)}" src="{PREFIX}/static/dashboard.js?v='
        f'{escape(_ASSET_VERSION)}" defer></script>'
        "</head>"
    )


def page(name: str, *, admin: str, csrf: str, nonce: str) -> str:
    """The shell of page ``name`` for a logged-in admin."""
    _, title = PAGES[name]
    links = "".join(
        f'<a href="{PREFIX}/{escape(path)}"'
        + (' aria-current="page"' if key == name else "")
        + f">{escape(label)}</a>"
        for key, (path, label) in PAGES.items()
    )
    return (
        _head(title, nonce)
        + f'<body data-page="{escape(name)}" data-prefix="{PREFIX}" data-csrf="{escape(csrf)}">'
        + '<header><span class="brand">keybroker</span>'
        + f'<nav aria-label="pages">{links}</nav>'
        + f'<span class="who">admin <b id="admin-name">{escape(admin)}</b></span>'
        + f'<form method="post" action="{PREFIX}/logout" class="logout">'
        + f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        + '<button type="submit" id="logout">Log out</button></form></header>'
        + f'<main id="main"><h1>{escape(title)}</h1>'
        + '<p id="status" class="status" role="status">Loading…</p>'
        + '<div id="content"></div></main>'
        + '<dialog id="confirm"><form method="dialog"><p id="confirm-text"></p>'
        + '<label id="confirm-reason-label">Reason <input id="confirm-reason" maxlength="200"'
        + ' autocomplete="off"></label>'
        + '<menu><button value="cancel" id="confirm-cancel">Cancel</button>'
        + '<button value="ok" id="confirm-ok" class="danger">Confirm</button></menu>'
        + "</form></dialog>"
        + "</body></html>"
    )


def login(*, nonce: str, problem: str | None = None) -> str:
    """The login page: one password field, posted in the body (never in a URL)."""
    error = (
        f'<p class="error" id="login-error" role="alert">{escape(problem)}</p>' if problem else ""
    )
    return (
        _head("Log in", nonce)
        + '<body data-page="login" class="login">'
        + "<main><h1>keybroker dashboard</h1>"
        + "<p>Paste an admin token (<code>keybroker tokens create-admin NAME</code>). "
        + "Bot tokens cannot log in here.</p>"
        + error
        + f'<form method="post" action="{PREFIX}/login" autocomplete="off">'
        + '<label for="token">Admin token</label>'
        + '<input type="password" id="token" name="token" required autocomplete="off"'
        + ' spellcheck="false" autocapitalize="off">'
        + '<button type="submit" id="login">Log in</button></form></main>'
        + "</body></html>"
    )
