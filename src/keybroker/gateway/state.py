"""Everything one running gateway holds, built by the lifespan in ``app.py``.

    >>> gateway: Gateway = scope["state"]["gateway"]
    >>> gateway.access.check_token(token)

One object, so that the pipeline, the middleware and the status endpoints
reach the same vault view, limiter, audit log and connection pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from keybroker.audit import AuditLog
from keybroker.audit.alerts import Alerter
from keybroker.clock import Clock
from keybroker.gateway.access import VaultAccess
from keybroker.gateway.activity import Activity
from keybroker.gateway.config import GatewayConfig
from keybroker.gateway.dedup import Dedup
from keybroker.gateway.hardening import Step
from keybroker.gateway.metrics import Metrics
from keybroker.gateway.nonces import NonceLease
from keybroker.gateway.upstream import Failure, Received, Upstream
from keybroker.paper import Desk
from keybroker.ratelimit import Limiter

log = logging.getLogger("keybroker.gateway")


@dataclass
class Gateway:
    """The running gateway's parts; see ``app.create_app`` for how each is made."""

    config: GatewayConfig
    access: VaultAccess
    audit: AuditLog
    limiter: Limiter
    upstream: Upstream
    nonces: NonceLease
    alerter: Alerter
    clock: Clock
    hardening: tuple[Step, ...] = ()
    started_ms: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    activity: Activity = field(init=False)
    dedup: Dedup[Received | Failure | Response] = field(init=False)
    prices: dict[tuple[str, str], tuple[int, Decimal]] = field(default_factory=dict)
    """(environment, price URL) -> (when, last price): the gateway's own market data."""

    background: set[asyncio.Task[None]] = field(default_factory=set)
    """Result rows being written after their answer went out."""

    paper: Desk | None = None
    """The paper venue (``paper_route.desk``), made when a paper credential first needs it."""

    def __post_init__(self) -> None:
        self.activity = Activity(self.clock)
        self.dedup = Dedup(self.clock, self.config.public_cache_ms)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` after the answer; ``drain`` waits for it (shutdown)."""
        task = asyncio.get_running_loop().create_task(work)
        self.background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # An audit row that could not be written; the type says which failure.
            log.error("a result row was not written: %s", type(task.exception()).__name__)

    async def drain(self) -> None:
        """Wait for every result row still being written."""
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)

    def alert(self, name: str, **fields: str | None) -> None:
        """One alert of seed 000 §8 (a log line, plus webhook and command); never blocks."""
        event = {"alert": name, **{key: value for key, value in fields.items() if value}}
        self.alerter.notify(event)
