"""The dashboard's routes under ``/_/dashboard``: login, pages, their JSON, and three actions.

    >>> app = Starlette(routes=[*dashboard_routes(PaperView(), clock), ...])

Who gets in: an admin token, pasted once into the login page (POSTed in the
body, never in a URL), buys a server-side session whose random id goes into
an HttpOnly, SameSite=Strict cookie (Secure under TLS). Each request then
asks the vault whether that admin token is still active, so logout,
revocation (``keybroker tokens revoke-admin``) and expiry take effect on the
very next request. A bot token is refused at login.

What it may do: read everything the gateway knows but no secret, and three
actions only: halt or resume a credential (or all), and revoke a bot token.
An action needs the session, a same-origin request, the session's CSRF
token in ``X-Keybroker-CSRF``, and ``confirm`` equal to its target (the
page's confirmation dialog sends it); each is written to the audit log with
the admin's name. The gateway's Host check applies here as everywhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from keybroker.audit import AuditRow
from keybroker.clock import Clock
from keybroker.errors import BadToken, CredentialNotFound, InvalidInput, KeybrokerError
from keybroker.gateway.dashboard import data
from keybroker.gateway.dashboard.pages import PAGES, PREFIX, login, page
from keybroker.gateway.dashboard.paper import PaperView, summary_json
from keybroker.gateway.dashboard.security import (
    COOKIE,
    CSRF_HEADER,
    cross_site_problem,
    csrf_matches,
    is_tls,
    new_nonce,
    secure,
)
from keybroker.gateway.dashboard.sessions import Session, Sessions
from keybroker.gateway.state import Gateway
from keybroker.vault.tokens import token_hash

log = logging.getLogger("keybroker.gateway")

MAX_FORM_BYTES = 4096
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css"}
_FILTERS = ("bot", "credential", "kind", "decision")
ACTIONS = ("halt", "resume", "revoke")
"""Everything the dashboard can change; nothing else is ever offered."""

Handler = Callable[[Request], Awaitable[Response]]


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.state.gateway
    return gateway


def _json(body: object, status: int = 200) -> Response:
    return secure(JSONResponse(body, status))


def _refused(status: int, error: str, detail: str) -> Response:
    return _json({"error": error, "detail": detail}, status)


async def _body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than a login or an action ever is."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Dashboard:
    """The dashboard of one gateway app: its sessions and its paper seam."""

    def __init__(self, paper: PaperView, clock: Clock) -> None:
        self.paper = paper
        self.sessions = Sessions(clock)
        self._static: dict[str, bytes] = {}

    # -- who is asking -----------------------------------------------------------------

    def admin(self, request: Request) -> Session | None:
        """The request's live session whose admin token is still active, else None."""
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.find(session_id)
        if session is None:
            return None
        vault = gateway_of(request).access.vault
        try:
            vault.check_admin_digest(session.token_digest)
        except BadToken:  # revoked or expired since login: the session ends now
            self.sessions.end(session_id)
            return None
        # last_used_at, off the event loop (an fsync at most once a minute).
        asyncio.get_running_loop().run_in_executor(None, _touch, vault, session.admin)
        return session

    def page_view(self, name: str) -> Handler:
        async def view(request: Request) -> Response:
            session = self.admin(request)
            if session is None:
                return secure(RedirectResponse(f"{PREFIX}/login", 303))
            nonce = new_nonce()
            html = page(name, admin=session.admin, csrf=session.csrf, nonce=nonce)
            return secure(HTMLResponse(html), nonce)

        return view

    def api_view(self, read: Callable[[Request, Gateway], Awaitable[object]]) -> Handler:
        async def view(request: Request) -> Response:
            if self.admin(request) is None:
                return _refused(401, "login_required", "log in to the dashboard first")
            try:
                return _json(await read(request, gateway_of(request)))
            except InvalidInput as error:
                return _refused(400, "invalid_input", str(error))

        return view

    # -- login and logout --------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if self.admin(request) is not None:
            return secure(RedirectResponse(f"{PREFIX}/", 303))
        nonce = new_nonce()
        return secure(HTMLResponse(login(nonce=nonce)), nonce)

    async def login(self, request: Request) -> Response:
        gateway = gateway_of(request)
        nonce = new_nonce()

        def again(status: int, problem: str) -> Response:
            outcome = "cross_site" if status == 403 else "refused"
            gateway.metrics.count("keybroker_dashboard_logins_total", outcome=outcome)
            return secure(HTMLResponse(login(nonce=nonce, problem=problem), status), nonce)

        problem = cross_site_problem(request)
        if problem is not None:
            return again(403, f"Refused: {problem}.")
        body = await _body(request)
        if body is None:
            return again(413, "That is far longer than an admin token.")
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
        try:
            admin = gateway.access.vault.check_admin_token(given)
        except BadToken as error:
            return again(401, f"Not logged in: {error}.")
        self.sessions.end(request.cookies.get(COOKIE))  # a fresh id at every login
        session_id, _ = self.sessions.open(admin.name, token_hash(given))
        gateway.metrics.count("keybroker_dashboard_logins_total", outcome="ok")
        await gateway.audit.append(
            AuditRow("event", rule="dashboard_login", detail=f"admin {admin.name} logged in")
        )
        response = RedirectResponse(f"{PREFIX}/", 303)
        response.set_cookie(
            COOKIE,
            session_id,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=is_tls(request),
        )
        return secure(response)

    async def logout(self, request: Request) -> Response:
        gateway = gateway_of(request)
        session_id = request.cookies.get(COOKIE)
        session = self.sessions.find(session_id)
        problem = cross_site_problem(request)
        if problem is not None:
            return _refused(403, "cross_site", problem)
        body = await _body(request)
        given = parse_qs((body or b"").decode("utf-8", "replace")).get("csrf", [""])[0]
        if session is not None:
            if not csrf_matches(session.csrf, given):
                return _refused(403, "csrf", "the logout form's CSRF token does not match")
            self.sessions.end(session_id)
            await gateway.audit.append(
                AuditRow(
                    "event", rule="dashboard_logout", detail=f"admin {session.admin} logged out"
                )
            )
        response = RedirectResponse(f"{PREFIX}/login", 303)
        response.delete_cookie(
            COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=is_tls(request)
        )
        return secure(response)

    # -- actions -----------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        """POST /api/{halt,resume,revoke}: checked, confirmed, done, audited with the admin."""
        action = request.path_params["action"]
        if action not in ACTIONS:
            return _refused(404, "not_found", f"the actions are: {', '.join(ACTIONS)}")
        session = self.admin(request)
        if session is None:
            return _refused(401, "login_required", "log in to the dashboard first")
        problem = cross_site_problem(request)
        if problem is not None:
            return _refused(403, "cross_site", problem)
        if not csrf_matches(session.csrf, request.headers.get(CSRF_HEADER)):
            return _refused(403, "csrf", f"send the page's CSRF token in {CSRF_HEADER}")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _refused(415, "json_required", "send the action as application/json")
        raw = await _body(request)
        try:
            body = json.loads(raw or b"") if raw is not None else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _refused(400, "invalid_input", "send a JSON object")
        field = "bot" if action == "revoke" else "credential"
        target = body.get(field)
        if not isinstance(target, str) or not target:
            return _refused(400, "invalid_input", f"name the {field} ('*' for every credential)")
        if body.get("confirm") != target:
            return _refused(
                400, "confirmation_required", f"confirm the {action}: send confirm equal to {field}"
            )
        reason = body.get("reason")
        try:
            detail = self._perform(gateway_of(request), session.admin, action, target, reason)
        except CredentialNotFound as error:
            return _refused(404, "not_found", str(error))
        except InvalidInput as error:
            return _refused(400, "invalid_input", str(error))
        except KeybrokerError as error:
            return _refused(error.http_status, type(error).__name__, str(error))
        gateway = gateway_of(request)
        await gateway.audit.append(
            AuditRow(
                "event",
                bot=target if action == "revoke" else None,
                credential=None if action == "revoke" else target,
                rule=f"dashboard_{action}",
                detail=detail,
            )
        )
        gateway.metrics.count("keybroker_dashboard_actions_total", action=action)
        log.warning("dashboard: %s", detail)
        return _json({"ok": True, "action": action, "target": target, "detail": detail})

    def _perform(
        self, gateway: Gateway, admin: str, action: str, target: str, reason: object
    ) -> str:
        vault = gateway.access.vault
        every = target == "*"
        label = "every credential" if every else target
        if action == "halt":
            given = reason.strip() if isinstance(reason, str) else ""
            vault.halt(None if every else target, f"dashboard, admin {admin}: {given}".strip())
            detail = f"admin {admin} halted {label} from the dashboard"
            detail += f": {given}" if given else ""
        elif action == "resume":
            vault.resume(None if every else target)
            detail = f"admin {admin} resumed {label} from the dashboard"
        else:
            vault.revoke_token(target)
            detail = f"admin {admin} revoked the token of bot {target} from the dashboard"
        gateway.access.refresh()  # this gateway applies it now, not at the next poll
        return detail

    # -- the pages' data ---------------------------------------------------------------

    async def overview(self, request: Request, gateway: Gateway) -> object:
        document = data.overview(gateway, self.paper)
        credentials: list[dict[str, Any]] = document["credentials"]  # type: ignore[assignment]
        names = [str(item["name"]) for item in credentials]
        problems = await run_in_threadpool(data.last_problems, gateway.audit, names)
        for item in credentials:
            item["last_error"] = problems.get(str(item["name"]))
        return document

    async def limits(self, request: Request, gateway: Gateway) -> object:
        return data.limits(gateway)

    async def audit(self, request: Request, gateway: Gateway) -> object:
        query = request.query_params
        match = {key: query[key][:64] for key in _FILTERS if query.get(key) and query[key] != "all"}
        return await run_in_threadpool(
            lambda: data.audit(
                gateway.audit,
                after_id=_int(query.get("after")),
                match=match,
                limit=_int(query.get("limit")) or 200,
            )
        )

    async def alerts(self, request: Request, gateway: Gateway) -> object:
        after = _int(request.query_params.get("after"))
        after_denial = _int(request.query_params.get("after_denial"))
        recent = data.alerts_raised(gateway, after=after)
        denials = await run_in_threadpool(data.denials, gateway.audit, after_id=after_denial)
        return {"alerts": recent, "denials": denials}

    async def tokens(self, request: Request, gateway: Gateway) -> object:
        return data.tokens(gateway)

    async def paper_figures(self, request: Request, gateway: Gateway) -> object:
        names = [record.name for record in gateway.access.vault.list_credentials()]

        def gather() -> list[dict[str, object]]:
            out: list[dict[str, object]] = []
            for name in names:
                try:
                    summary = self.paper.summary(name)
                except Exception as exc:  # its message may quote a path; the type is enough
                    out.append({"name": name, "summary": None, "note": type(exc).__name__})
                    continue
                if summary is None:
                    out.append({"name": name, "summary": None, "note": "no paper ledger"})
                else:
                    out.append({"name": name, "summary": summary_json(summary), "note": None})
            return out

        return {"credentials": await run_in_threadpool(gather)}

    # -- assets ------------------------------------------------------------------------

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        media_type = STATIC.get(name)
        if media_type is None:
            return secure(Response("not found", 404, media_type="text/plain"))
        content = self._static.get(name)
        if content is None:
            content = (resources.files(__package__) / "static" / name).read_bytes()
            self._static[name] = content
        return secure(
            Response(content, 200, media_type=media_type, headers={"cache-control": "no-cache"})
        )


def _int(text: str | None) -> int:
    return int(text) if text is not None and text.isdigit() and len(text) < 16 else 0


def _touch(vault: Any, name: str) -> None:
    try:
        vault.touch_admin_token(name)
    except Exception as exc:  # best effort by contract
        log.debug("could not record last use of an admin token: %s", type(exc).__name__)


async def _to_overview(request: Request) -> Response:
    return secure(RedirectResponse(f"{PREFIX}/", 307))


async def _not_found(request: Request) -> Response:
    return _refused(404, "not_found", "no such dashboard page")


def dashboard_routes(paper: PaperView, clock: Clock) -> list[BaseRoute]:
    """The routes to put before the gateway's ``/_/`` catch-all."""
    board = Dashboard(paper, clock)
    reads: dict[str, Callable[[Request, Gateway], Awaitable[object]]] = {
        "overview": board.overview,
        "limits": board.limits,
        "audit": board.audit,
        "alerts": board.alerts,
        "tokens": board.tokens,
        "paper": board.paper_figures,
    }
    routes: list[BaseRoute] = [
        Route("/login", board.login_page, methods=["GET"]),
        Route("/login", board.login, methods=["POST"]),
        Route("/logout", board.logout, methods=["POST"]),
        Route("/static/{name}", board.static, methods=["GET"]),
        Route("/api/{action:str}", board.act, methods=["POST"]),
    ]
    routes += [
        Route(f"/api/{name}", board.api_view(read), methods=["GET"]) for name, read in reads.items()
    ]
    routes += [
        Route(f"/{path}", board.page_view(name), methods=["GET"])
        for name, (path, _) in PAGES.items()
    ]
    routes.append(Route("/{rest:path}", _not_found, methods=["GET", "HEAD", "POST"]))
    return [Route(PREFIX, _to_overview, methods=["GET"]), Mount(PREFIX, routes=routes)]
