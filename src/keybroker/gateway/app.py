"""The composition root: ``create_app`` wires the gateway's parts into one Starlette app.

    >>> vault = Vault.open(settings.vault_path); vault.unlock(passphrase)
    >>> app = create_app(vault, GatewayConfig(audit_path=settings.audit_path))
    >>> base_url, stop = serve_in_thread(app)            # keybroker.gateway.server

The lifespan builds what lives as long as the server: the gateway's view of
the vault, the limiter, the audit log and ONE ``Upstream`` (a bounded
keep-alive pool, TLS verification on, no redirects followed: a redirect
would carry a signed request somewhere the policy never judged). A
background task polls the vault for token revocations and halts.

Routes: ``/_/health``, ``/_/status``, ``/_/metrics``, ``/_/credentials`` (the
token's own credentials, ``listing.py``), the dashboard under ``/_/dashboard``
(its own admin login; ``dashboard/``), and everything else as
``/{credential}/{exchange path}`` through ``pipeline.handle``. The
middleware around them, outermost first: Host check, browser origin check,
bot token (``auth.py``), then ``ProxyLane``, which takes exchange requests
straight to ``proxy``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from keybroker.audit import AuditLog, AuditRow
from keybroker.audit.alerts import Alerter
from keybroker.clock import Clock, SystemClock
from keybroker.errors import KeybrokerError
from keybroker.gateway import listing, paper_route, status
from keybroker.gateway.access import VaultAccess
from keybroker.gateway.auth import BOT_SCOPE_KEY, HostCheck, OriginCheck, TokenAuth, credential_of
from keybroker.gateway.config import GatewayConfig
from keybroker.gateway.coordination import Coordination, open_coordination
from keybroker.gateway.dashboard import PaperView, dashboard_routes
from keybroker.gateway.hardening import Step
from keybroker.gateway.pipeline import Incoming, handle, refuse
from keybroker.gateway.remote_keys import RemoteKeys
from keybroker.gateway.responses import error_response, refusal
from keybroker.gateway.state import Gateway
from keybroker.gateway.upstream import Upstream
from keybroker.gateway.websocket import websocket_entry
from keybroker.openbao import Connection
from keybroker.ratelimit import Limiter
from keybroker.vault import BotToken, Vault

log = logging.getLogger("keybroker.gateway")

METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


def create_app(
    vault: Vault,
    config: GatewayConfig,
    *,
    limiter: Limiter | None = None,
    clock: Clock | None = None,
    hardening: Sequence[Step] = (),
    transport: httpx.AsyncBaseTransport | None = None,
    paper: PaperView | None = None,
    openbao: Connection | None = None,
    coordination: Coordination | None = None,
) -> Starlette:
    """The gateway as an ASGI app, for uvicorn; ``vault`` must be open and unlocked.

    ``limiter`` defaults to an in-memory one; ``hardening`` is what
    ``hardening.harden()`` reported at start (shown in ``/_/status``);
    ``transport`` sends upstream through httpx with that transport (tests only);
    ``paper`` is where the dashboard reads modes and paper figures (default: the
    vault's policies and this gateway's paper ledger).
    ``openbao`` is how to reach OpenBao for credentials whose key is there
    (``<home>/openbao.json``; its spent secret id is removed from that file).
    ``coordination`` is what several gateways share; by default
    ``open_coordination(config, ...)``: Redis with ``config.redis_url``, else
    nothing (in this process), and the limiter comes from it.
    Raises InvalidInput for an unusable alert webhook or command, or Redis URL.
    """
    clock = clock or SystemClock()
    alerter = Alerter(config.alert_webhook, config.alert_command, clock=clock)
    shared = coordination or open_coordination(config, vault, clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Gateway]]:
        audit = AuditLog.open(config.audit_path, clock=clock)
        upstream = Upstream(
            timeout_s=config.upstream_timeout_s,
            retries=config.read_retries,
            backoff_s=config.retry_backoff_s,
            transport=transport,
        )
        gateway = Gateway(
            config=config,
            access=VaultAccess(vault, clock),
            audit=audit,
            limiter=limiter or shared.limiter(),
            upstream=upstream,
            nonces=shared.nonces(),
            alerter=alerter,
            clock=clock,
            hardening=tuple(hardening),
            started_ms=clock.now_ms(),
            coordination=shared,
        )
        # Per-minute counts and the daily notional cap hold across restarts.
        gateway.activity.rebuild(audit)  # the open log: see Activity.rebuild
        audit.on_append = functools.partial(
            gateway.metrics.observe, "keybroker_audit_write_seconds"
        )
        if openbao is not None:
            gateway.remote_keys = await RemoteKeys.start(
                openbao,
                vault.path.parent,
                alert=gateway.alert,
                timeout_s=config.openbao_timeout_s,
            )
        await audit.append(AuditRow("event", detail=_started(gateway)))
        await shared.start(gateway)
        poller = asyncio.create_task(_poll(gateway), name="keybroker-vault-poller")
        paper_route.start(gateway)  # resting paper orders of an earlier run keep filling
        try:
            yield {"gateway": gateway}
        finally:
            poller.cancel()
            try:
                await paper_route.close(gateway)
                await shared.close()
                await audit.append(AuditRow("event", detail="gateway stopped"))
            finally:
                await upstream.aclose()
                if gateway.remote_keys is not None:
                    await gateway.remote_keys.aclose()
                audit.close()
                alerter.close()

    app = Starlette(
        routes=[
            Route("/_/health", status.health, methods=["GET"]),
            Route("/_/status", status.status, methods=["GET"]),
            Route("/_/metrics", status.metrics, methods=["GET"]),
            Route("/_/credentials", listing.credentials, methods=["GET"]),
            *dashboard_routes(paper or paper_route.dashboard_view(vault, config), clock),
            Route("/_/{rest:path}", _unknown_own_endpoint, methods=METHODS),
            Route("/{path:path}", proxy, methods=METHODS),
            WebSocketRoute("/{path:path}", websocket_entry),
        ],
        middleware=[
            Middleware(HostCheck, host_names=config.host_names),
            Middleware(OriginCheck, origins=config.cors_origins),
            Middleware(TokenAuth),
            Middleware(ProxyLane),
        ],
        lifespan=lifespan,
    )
    return app


def _started(gateway: Gateway) -> str:
    held = ", ".join(step.line() for step in gateway.hardening) or "hardening not run"
    return f"gateway started; {held}"


async def _poll(gateway: Gateway) -> None:
    """Every poll interval: token revocations and halts from the vault (other processes write),
    then what other gateways share (halts and revocations published elsewhere)."""
    while True:
        await asyncio.sleep(gateway.config.poll_interval_s)
        try:
            gateway.access.refresh()
            if gateway.coordination is not None:
                await gateway.coordination.sync(gateway)
        except Exception as exc:  # keep polling; a busy vault is read next time
            log.warning(
                "could not read the vault for revocations and halts: %s", type(exc).__name__
            )


async def _unknown_own_endpoint(request: Request) -> Response:
    return refusal(
        404,
        "not_found",
        "the gateway's own endpoints are /_/health, /_/status, /_/metrics, /_/credentials, "
        "/_/dashboard",
    )


class ProxyLane:
    """Exchange requests (``/{credential}/...``) straight to ``proxy``, past the router.

    The router would try every own and dashboard route before the catch-all one,
    and Starlette's exception middleware would wrap a handler that catches its
    own errors: work on every order for no decision. This is the innermost
    middleware, so the Host, origin and token checks have run; anything else
    (``/_/``, WebSockets, other methods) goes on to the router as before.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _PROXY_METHODS
            and not scope["path"].startswith("/_/")
        ):
            response = await proxy(Request(scope, receive, send))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


_PROXY_METHODS = frozenset(METHODS)


async def proxy(request: Request) -> Response:
    """``/{credential}/{exchange path}``: read the request, then the pipeline's steps 2-9."""
    gateway: Gateway = request.state.gateway
    bot: BotToken = request.scope[BOT_SCOPE_KEY]
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode("utf-8")
    segment, _, rest = raw_path.lstrip(b"/").partition(b"/")
    if not segment:
        return refusal(404, "not_found", "use /{credential}/{exchange path}")
    incoming = functools.partial(
        Incoming,
        method=request.method,
        credential=credential_of(segment),
        raw_path=b"/" + rest,
        query=request.scope.get("query_string", b""),
        headers=list(request.headers.items()),
        bot=bot,
    )
    try:
        body = await _read_body(request, gateway.config.max_body_bytes)
        if body is None:  # audited like every refusal; the rest is never read
            detail = f"the request body is larger than {gateway.config.max_body_bytes} bytes"
            refused = refusal(413, "body_too_large", detail)
            return await refuse(gateway, incoming(body=b""), refused, detail)
        return await handle(gateway, incoming(body=body))
    except KeybrokerError as error:
        return error_response(error)
    except Exception as exc:
        # Not ours: a bug. Its message may quote a request, so only its type is logged.
        log.error("request failed: %s", type(exc).__name__)
        return error_response(exc)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
