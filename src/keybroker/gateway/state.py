"""Everything one running gateway holds, built by the lifespan in ``app.py``.

    >>> gateway: Gateway = scope["state"]["gateway"]
    >>> gateway.access.check_token(token)

One object, so that the pipeline, the middleware and the status endpoints
reach the same vault view, limiter, audit log and connection pool.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from decimal import Decimal

from starlette.responses import Response

from keybroker.audit import AuditLog, AuditRow
from keybroker.audit.alerts import Alerter
from keybroker.clock import Clock
from keybroker.gateway import public_cache
from keybroker.gateway.access import VaultAccess
from keybroker.gateway.activity import Activity
from keybroker.gateway.config import GatewayConfig
from keybroker.gateway.coordination import Coordination, InProcess
from keybroker.gateway.dedup import Dedup
from keybroker.gateway.facts import FactCache
from keybroker.gateway.hardening import Step
from keybroker.gateway.metrics import Metrics
from keybroker.gateway.nonces import Nonces
from keybroker.gateway.remote_keys import RemoteKeys
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
    nonces: Nonces
    alerter: Alerter
    clock: Clock
    hardening: tuple[Step, ...] = ()
    remote_keys: RemoteKeys | None = None
    """OpenBao, for credentials whose key lives there (step 7 of those)."""
    started_ms: int = 0
    coordination: Coordination | None = None
    """What is shared with other gateways (None: ``InProcess``, nothing is)."""

    metrics: Metrics = field(default_factory=Metrics)
    activity: Activity = field(init=False)
    facts: FactCache = field(init=False)
    """Open orders and positions the exchange reported, for the policy (``facts.py``)."""
    dedup: Dedup[Received | Failure | Response] = field(init=False)
    prices: dict[tuple[str, str], tuple[int, Decimal]] = field(default_factory=dict)
    """(environment, price URL) -> (when, last price): the gateway's own market data."""

    recent_alerts: deque[tuple[int, int, dict[str, str]]] = field(
        default_factory=lambda: deque(maxlen=500)
    )
    """(sequence, ms, event) of the last alerts, newest last: the dashboard's alerts page."""
    _alert_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    paper: Desk | None = None
    """The paper venue (``paper_route.desk``), made when a paper credential first needs it."""
    in_flight: int = 0
    """Requests (REST, or WebSocket calls) between their first step and their answer.
    One alone commits the rows it waits for on the event loop's own thread
    (``write_now``): nothing else is there to be held up."""

    def __post_init__(self) -> None:
        if self.coordination is None:
            self.coordination = InProcess(self.access.vault, self.clock)
        self.activity = self.coordination.activity(self.clock)
        self.facts = FactCache(self.clock)
        self.dedup = Dedup(
            self.clock,
            self.config.public_cache_ms,
            shared=self.coordination.shared_fetches,
            keep=public_cache.cacheable,
            aged=public_cache.aged,
        )

    async def write_now(self, row: AuditRow, *, beside: bool = False) -> int:
        """Append a row the request waits for (an intent, a refusal): its id once durable.

        A request alone in the gateway commits it inline (``AuditLog.append``), skipping
        two thread wake-ups; with company it goes to the writer thread's group commit,
        so the loop is never held while others could run.

        ``beside``: the request started a round trip just before (its admission in
        Redis, its signature in OpenBao) that is to overlap the commit. Its request
        must be on the wire before an inline commit holds the loop (``let_writes_out``);
        its answer then waits in the socket's buffer, not behind the commit.
        """
        if beside:
            await let_writes_out()
        return await self.audit.append(row, inline=self.in_flight <= 1)

    def write_later(self, row: AuditRow) -> None:
        """Queue a row nothing waits for (a result row, once its answer went out): it joins
        the next commit (``AuditLog.append_later``), and ``audit.close()`` writes what is
        still queued. A row that cannot be written is logged by its failure's type."""
        try:
            self.audit.append_later(row).add_done_callback(_log_unwritten)
        except Exception as exc:  # a bug or a closed log: the answer is out either way
            log.error("a result row was not written: %s", type(exc).__name__)

    def alert(self, name: str, **fields: str | None) -> None:
        """One alert of seed 000 §8 (a log line, plus webhook and command); never blocks."""
        event = {"alert": name, **{key: value for key, value in fields.items() if value}}
        if self.alerter.notify(event):  # a repeat held back is not news on the dashboard either
            self.recent_alerts.append((next(self._alert_numbers), self.clock.now_ms(), event))


async def let_writes_out() -> None:
    """Return once what tasks started just before have written is on the wire.

    uvloop (the gateway's loop) does not send a transport's write at once: it
    queues it and sends the queued writes after the batch of callbacks that was
    ready when the loop woke. A task created just before runs in the next batch;
    the first turn lets it write, the second comes after that batch's writes went
    out. Without the second, a Redis script written by the order's admission left
    only after the inline commit, and its answer came 0.4 ms after the commit
    instead of during it. On asyncio's own loop a write goes at once and the
    second turn costs a few microseconds.
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _log_unwritten(future: Future[int]) -> None:
    # Runs on the audit writer's thread; logging is thread-safe.
    if not future.cancelled() and future.exception() is not None:
        log.error("a result row was not written: %s", type(future.exception()).__name__)
