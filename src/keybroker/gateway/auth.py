"""Who may talk to the gateway: pure ASGI middleware for Host, browser origins and bot tokens.

    >>> app = HostCheck(OriginCheck(TokenAuth(router), origins=()), host_names=("gw.lan",))

Three checks, outermost first, each answering with the gateway's own JSON:

- ``HostCheck`` (400 ``bad_host``): the Host header must be an IP literal,
  ``localhost`` or a configured name. DNS rebinding makes a browser send the
  attacker's own domain as the Host while connecting to 127.0.0.1; that name
  is refused here. Requests over the Unix socket skip it (no browser reaches one).
- ``OriginCheck`` (403 ``origin_not_allowed``): a request carrying an
  ``Origin`` header came from a browser page; it passes only if ``serve
  --cors-origin`` named that origin, and then gets the CORS headers (and its
  preflight an answer). Without that option no page anywhere may call.
  The dashboard (``/_/dashboard``) answers its own pages only: same origin,
  never a ``--cors-origin``.
- ``TokenAuth`` (401 ``bad_token``, 403 ``not_granted``): every request but
  ``/_/health`` and the dashboard (its own admin login) carries a bot token,
  loopback included (a browser page can reach localhost), as
  ``X-Keybroker-Token: kb_…`` or ``Authorization: Bearer kb_…``. The token
  must be granted the credential named by the first path segment. The vault
  compares token hashes in constant time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keybroker.errors import BadToken, KeybrokerError
from keybroker.gateway.responses import error_response, refusal
from keybroker.gateway.state import Gateway

log = logging.getLogger("keybroker.gateway")

TOKEN_HEADER = "x-keybroker-token"  # noqa: S105 - a header name
BOT_SCOPE_KEY = "keybroker.bot"
OPEN_PATHS = frozenset({"/_/health"})
DASHBOARD = "/_/dashboard"  # dashboard/pages.py PREFIX; it checks admin sessions itself


def is_dashboard(path: str) -> bool:
    """Whether ``path`` is the dashboard's (the same test its Mount applies)."""
    return path == DASHBOARD or path.startswith(DASHBOARD + "/")


_BEARER = "bearer "


def _host_name(value: str) -> str:
    # "127.0.0.1:8787" -> "127.0.0.1"; "[::1]:8787" -> "::1"; names lower-cased.
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_allowed_host(value: str, names: Iterable[str]) -> bool:
    """Whether a Host header names this gateway: an IP literal, localhost, or a listed name."""
    name = _host_name(value)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost" or name in {n.lower() for n in names}
    return True


def is_unix_socket(scope: Scope) -> bool:
    """uvicorn gives a Unix socket's path and no port as ``server`` (or no server at all)."""
    server = scope.get("server")
    return server is None or server[1] is None


class HostCheck:
    """400 ``bad_host`` unless the Host header names this gateway (TCP listeners only)."""

    def __init__(self, app: ASGIApp, host_names: Iterable[str] = ()) -> None:
        self.app = app
        self.names = frozenset(name.lower() for name in host_names)
        self._verdicts: dict[str, bool] = {}  # Host value -> allowed; a bot sends one or two

    def allowed(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = is_allowed_host(host, self.names)
            if len(self._verdicts) >= 1000:  # the header is the caller's: keep this bounded
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not is_unix_socket(scope):
            host = Headers(scope=scope).get("host", "")
            if not self.allowed(host):
                response = refusal(400, "bad_host", "the Host header does not name this gateway")
                await _answer(scope, receive, send, response)
                return
        await self.app(scope, receive, send)


class OriginCheck:
    """Browser requests only from ``--cors-origin`` origins, with CORS headers; others 403."""

    def __init__(self, app: ASGIApp, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.origins = frozenset(origin.rstrip("/") for origin in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if is_dashboard(scope.get("path", "")):
            # Its own pages only: no CORS, not even for a --cors-origin. "null" is what
            # its own pages send under no-referrer; the dashboard checks those itself.
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin.rstrip("/") in (own, "null"):
                await self.app(scope, receive, send)
                return
            response = refusal(
                403, "origin_not_allowed", "the dashboard answers its own pages only"
            )
            await _answer(scope, receive, send, response)
            return
        if origin.rstrip("/") not in self.origins:
            response = refusal(
                403, "origin_not_allowed", "browser pages may call only from a --cors-origin"
            )
            await _answer(scope, receive, send, response)
            return
        cors = {"access-control-allow-origin": origin, "vary": "origin"}
        if scope.get("method") == "OPTIONS" and "access-control-request-method" in headers:
            requested = headers.get("access-control-request-headers", "")
            preflight = Response(
                status_code=204,
                headers={
                    **cors,
                    "access-control-allow-methods": "GET, POST, PUT, DELETE, PATCH",
                    "access-control-allow-headers": requested or TOKEN_HEADER,
                    "access-control-max-age": "600",
                },
            )
            await _answer(scope, receive, send, preflight)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                raw.extend((name.encode(), value.encode("latin-1")) for name, value in cors.items())
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def token_of(headers: Headers) -> str:
    """The bot token from X-Keybroker-Token, else from ``Authorization: Bearer kb_…``.

    Raises BadToken when there is none, or more than one copy of the header.
    """
    given = headers.getlist(TOKEN_HEADER)
    if len(given) > 1:
        raise BadToken("more than one X-Keybroker-Token header")
    if given:
        return given[0].strip()
    for value in headers.getlist("authorization"):
        if value[: len(_BEARER)].lower() == _BEARER and value[len(_BEARER) :].startswith("kb_"):
            return value[len(_BEARER) :].strip()
    raise BadToken("no bot token was given (X-Keybroker-Token or Authorization: Bearer kb_…)")


def credential_of(raw_path: bytes) -> str:
    """The credential named by the first path segment (``/binance-main/api/v3/order``)."""
    segment = raw_path.lstrip(b"/").split(b"/", 1)[0].split(b"?", 1)[0]
    return unquote(segment.decode("ascii", "replace"))


class TokenAuth:
    """401 without an active token; 403 when the token was not granted the credential."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path_now = scope.get("path", "")
        if scope["type"] == "lifespan" or path_now in OPEN_PATHS or is_dashboard(path_now):
            await self.app(scope, receive, send)
            return
        gateway: Gateway | None = scope.get("state", {}).get("gateway")
        if gateway is None:
            response = refusal(503, "not_ready", "the gateway is starting or stopping")
            await _answer(scope, receive, send, response)
            return
        try:
            bot = gateway.access.check_token(token_of(Headers(scope=scope)))
        except BadToken as error:
            gateway.metrics.count("keybroker_auth_failures_total")
            await _answer(scope, receive, send, error_response(error))
            return
        except KeybrokerError as error:  # the vault could not answer
            await _answer(scope, receive, send, error_response(error))
            return
        path: str = scope.get("path", "")
        if not path.startswith("/_/"):
            raw_path: bytes = scope.get("raw_path") or path.encode("utf-8")
            credential = credential_of(raw_path)
            if not bot.allows(credential):
                response = refusal(
                    403,
                    "not_granted",
                    f"bot {bot.bot!r} is not granted credential {credential!r}",
                )
                await _answer(scope, receive, send, response)
                return
        if gateway.access.due_for_touch(bot.bot):
            # last_used_at is for `tokens list`; a write (and fsync) stays off the event loop.
            asyncio.get_running_loop().run_in_executor(None, _touch, gateway, bot.bot)
        scope[BOT_SCOPE_KEY] = bot
        await self.app(scope, receive, send)


def _touch(gateway: Gateway, bot: str) -> None:
    try:
        gateway.access.vault.touch_token(bot)
    except Exception as exc:  # best effort by contract
        log.debug("could not record last use of a token: %s", type(exc).__name__)


async def _answer(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await response(scope, receive, send)
