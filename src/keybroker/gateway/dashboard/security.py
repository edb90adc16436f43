"""The dashboard's browser defences: headers on every answer, same-origin and CSRF checks.

    >>> nonce = new_nonce()
    >>> secure(response, nonce)                 # CSP with this nonce, no framing, no referrer
    >>> problem = cross_site_problem(request)   # None for the dashboard's own pages

The Content-Security-Policy allows scripts and styles only from this
gateway and, for scripts, only with the page's nonce; no inline script,
no eval, no plugin, no other host (the pages load nothing from a CDN);
``connect-src 'self'`` keeps even a script that got in from sending data
anywhere else; ``frame-ancestors 'none'`` stops clickjacking the halt
buttons. Actions need three things a cross-site page cannot give: the
SameSite=Strict session cookie, a same-origin ``Sec-Fetch-Site`` (or
``Origin``), and the session's CSRF token in a header.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

CSRF_HEADER = "x-keybroker-csrf"
COOKIE = "kb_dashboard"


def new_nonce() -> str:
    """128 random bits for one page's CSP nonce."""
    return secrets.token_urlsafe(16)


def content_security_policy(nonce: str | None) -> str:
    scripts = f"'self' 'nonce-{nonce}'" if nonce else "'none'"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {scripts}",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def secure(response: Response, nonce: str | None = None) -> Response:
    """Add the dashboard's security headers to ``response`` (every answer gets them)."""
    headers = response.headers
    headers["content-security-policy"] = content_security_policy(nonce)
    headers["referrer-policy"] = "no-referrer"
    headers["x-frame-options"] = "DENY"
    headers["x-content-type-options"] = "nosniff"
    headers["cross-origin-opener-policy"] = "same-origin"
    headers["cross-origin-resource-policy"] = "same-origin"
    headers["permissions-policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    headers.setdefault("cache-control", "no-store")
    return response


def own_origin(request: Request) -> str:
    """``scheme://host[:port]`` as the browser addressed this gateway (Host was checked)."""
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def cross_site_problem(request: Request) -> str | None:
    """Why a state-changing request may come from another site, or None if it is our own.

    ``Sec-Fetch-Site`` is set by the browser itself (a page cannot forge it):
    where present it must say ``same-origin``. ``Origin``, where it names an
    origin, must be this gateway's. Our own pages send ``Origin: null`` (the
    no-referrer policy makes the browser hide it), so ``null`` counts only
    beside a same-origin ``Sec-Fetch-Site``; a request with neither is refused.
    """
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None and site != "same-origin":
        return "the request came from another site"
    if origin not in (None, "null") and str(origin).rstrip("/") != own_origin(request):
        return "the request came from another origin"
    if site is None and origin in (None, "null"):
        return "the request does not say where it came from (no Origin or Sec-Fetch-Site)"
    return None


def csrf_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison of the session's CSRF token with the one sent."""
    if not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"
