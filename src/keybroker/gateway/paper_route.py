"""Step 8 for paper credentials: the paper venue answers instead of the exchange.

    >>> paper = takes(policy, credential, classified)       # in handle(): Job.paper
    >>> outcome = await answer(gateway, job)                  # in send(): instead of forwarding

A credential whose policy says ``mode: paper`` goes through steps 1-7 like
any other (token, policy, rate limits, the durable intent row; its rows are
marked ``paper``), and then its orders, cancels, order queries and balances
are answered by ``keybroker.paper``'s desk in the exchange's own format:
nothing that places, cancels or reads an order leaves the machine. Public
market data, and other signed reads when the credential has a key, are
forwarded as usual. The desk's own market data (books, trades, instruments)
is fetched here through the gateway's limiter and in-flight deduplication,
unsigned, on the credential's budget.

Step 4 for a paper credential reads the policy's facts (open orders for
``max_open_orders``, positions for ``max_position_notional``) from the paper
desk (``known``): the real account behind a key is not what the bot trades,
and nothing asks the exchange for them. Paper orders spend the same rate
budgets as live ones (step 5): the exchange's order budgets are what the bot
must live within once it goes live, so it meets them while on paper.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from keybroker.errors import KeybrokerError, PaperRefused, RateLimited
from keybroker.exchanges import get_profile
from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.gateway.config import GatewayConfig
from keybroker.gateway.dashboard import PaperView
from keybroker.gateway.facts import Known, new_orders
from keybroker.gateway.upstream import Failure, Received, Upstream
from keybroker.model import Credential
from keybroker.paper import (
    Desk,
    Ledger,
    MarketDataUnavailable,
    PaperCall,
    PaperSummary,
    get_venue,
    is_keyless,
    summarize,
)
from keybroker.policy import Policy
from keybroker.ratelimit import charges_for
from keybroker.vault import Vault

if TYPE_CHECKING:
    from keybroker.gateway.pipeline import Job
    from keybroker.gateway.state import Gateway

VENUE_HEADER = "x-keybroker-venue"
"""``paper`` on every answer the paper venue gave (bots ignore it; people debugging see it)."""


def takes(policy: Policy, credential: Credential, classified: ClassifiedRequest) -> bool:
    """Whether the paper venue answers this request (True) or it goes to the exchange.

    Raises PaperRefused for what a paper or keyless credential must not do:
    a keyless credential outside paper mode, a signed read the paper venue
    does not answer for a keyless one, anything but market data on an
    exchange the paper venue does not speak.
    """
    keyless = is_keyless(credential)
    if not policy.is_paper:
        if keyless:
            raise PaperRefused(
                f"{credential.name} has no exchange key and can only be used in paper mode "
                f"(keybroker policy set {credential.name} --mode paper)"
            )
        return False
    if classified.kind == "public":
        return False
    venue = get_venue(credential.exchange)
    if venue is None:
        raise PaperRefused(f"paper trading is not available for {credential.exchange} yet")
    if venue.answers(classified):
        return True
    if keyless:
        raise PaperRefused(
            f"{credential.name} is a paper credential without an exchange key: only public "
            "market data goes to the exchange, and this request needs a key "
            f"(add one: keybroker keys rotate {credential.name})"
        )
    return False  # a signed read (fees, permissions) goes to the exchange with the real key


def unsigned(credential: Credential) -> bool:
    """Whether requests of ``credential`` go out unsigned (a keyless paper credential)."""
    return is_keyless(credential)


async def answer(gateway: Gateway, job: Job) -> Received | Failure:
    """The paper venue's answer, as if the exchange had sent it (PaperRefused: refused)."""
    started = time.perf_counter()
    call = PaperCall(
        job.credential.name,
        job.credential.exchange,
        job.credential.environment,
        job.request,
        job.classified,
        job.intents,
    )
    try:
        result = await desk(gateway).answer(call)
    except MarketDataUnavailable as exc:
        return Failure(str(exc), False, (time.perf_counter() - started) * 1000)
    finally:
        not_on_the_way(gateway, job)
    gateway.metrics.count(
        "keybroker_paper_answers_total", exchange=job.credential.exchange, status=str(result.status)
    )
    headers = (*result.headers, (VENUE_HEADER, "paper"))
    return Received(result.status, headers, result.body, (time.perf_counter() - started) * 1000)


# -- step 4 for paper credentials: the policy's facts from the paper ledger -----------------


@dataclass
class PaperKnown(Known):
    """Open orders and positions of a paper account, from the desk; nothing asks the exchange.

    ``commit`` (the policy allowed the order) counts the request's orders as
    on their way to the desk until it answers them (``Desk.expect``).
    """

    desk: Desk | None = None
    credential: str = ""
    client_order_ids: tuple[str, ...] = ()
    grows: dict[str, Decimal] = field(default_factory=dict)

    @property
    def asked(self) -> bool:
        return True

    def commit(self) -> None:
        if self.desk is not None:
            self.desk.expect(
                self.credential,
                self.client_order_ids,
                orders=self._new_orders,
                grows=self.grows,
            )


def known(
    gateway: Gateway,
    job: Job,
    policy: Policy,
    *,
    notional: Callable[[OrderIntent], Decimal | None],
) -> Known:
    """What ``max_open_orders`` and ``max_position_notional`` need, from the paper ledger.

    A paper credential's real account (if it has a key at all) is not what
    its bot trades: its open orders and positions are the paper desk's.
    """
    paper = desk(gateway)
    credential = job.credential
    grows: dict[str, Decimal] = {}
    for intent in job.intents:
        if intent.reduce_only is True:
            continue
        if intent.side is None and intent.quantity is None and intent.quote_quantity is None:
            continue
        grows[intent.symbol] = grows.get(intent.symbol, Decimal(0)) + (
            notional(intent) or Decimal(0)
        )
    facts = PaperKnown(
        gateway.facts,
        desk=paper,
        credential=credential.name,
        client_order_ids=on_the_way_key(job),
        grows=grows,
    )
    facts._new_orders = new_orders(job.intents)
    if policy.max_open_orders is not None:
        facts.open_orders = paper.open_orders(credential.name)
    if policy.max_position_notional is not None:
        facts.positions = {
            symbol: paper.position_notional(
                credential.name, credential.exchange, credential.environment, symbol
            )
            for symbol in grows
        }
    return facts


def on_the_way_key(job: Job) -> tuple[str, ...]:
    """The request's client order ids: how the desk knows an allowed order has arrived."""
    return tuple(intent.client_order_id or "" for intent in job.intents)


def not_on_the_way(gateway: Gateway, job: Job) -> None:
    """The paper order was answered or refused after step 4: it no longer counts as coming."""
    if job.paper and job.classified.kind == "order_place" and gateway.paper is not None:
        gateway.paper.arrived(job.credential.name, on_the_way_key(job))


def ledger_path(config: GatewayConfig) -> Path:
    """The paper ledger: ``config.paper_path``, else ``paper.db`` beside the audit log."""
    return config.paper_path or config.audit_path.with_name("paper.db")


def dashboard_view(vault: Vault, config: GatewayConfig) -> PaperView:
    """The dashboard's paper page over this gateway's ledger and the vault's policies."""
    path = ledger_path(config)

    def mode(name: str) -> str:
        try:
            document = vault.policy_document(name)
            return "paper" if document and Policy.from_json(document).is_paper else "live"
        except KeybrokerError:
            return "live"  # an unreadable policy refuses every request; it trades nothing

    def summary(name: str) -> PaperSummary | None:
        if not path.exists():
            return None  # no paper credential has traded or been reset yet
        ledger = Ledger.open(path)
        try:
            if ledger.account(name) is None:
                return None
        finally:
            ledger.close()
        return summarize(path, name)

    return PaperView(mode=mode, summary=summary)


def desk(gateway: Gateway) -> Desk:
    """The gateway's paper desk, made on first use (its ledger file too)."""
    if gateway.paper is None:
        path = ledger_path(gateway.config)
        gateway.paper = Desk(
            path,
            gateway.clock,
            GatewayMarket(gateway),
            poll_interval_s=gateway.config.paper_poll_s,
            book_max_age_ms=gateway.config.paper_book_max_age_ms,
        )
    return gateway.paper


def start(gateway: Gateway) -> None:
    """At startup: resting orders left by an earlier run keep filling."""
    desk(gateway).start()


async def close(gateway: Gateway) -> None:
    if gateway.paper is not None:
        await gateway.paper.close()


class GatewayMarket:
    """Public market data for the desk: the gateway's limiter, dedup and connection pool."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    async def fetch(
        self, credential: str, exchange: str, environment: str, request: httpx.Request
    ) -> bytes | None:
        gateway = self._gateway
        key = (environment, str(request.url), "")
        fetch = functools.partial(self._send, credential, exchange, environment, request)
        # Fresh: the public cache (serve --public-cache-ms) must not hand the fill model a
        # book from before the order; the desk keeps its own short reuse window.
        outcome = await gateway.dedup.run(key, fetch, fresh=True)
        if isinstance(outcome, Received) and outcome.status == 200:
            return outcome.content()
        return None

    async def _send(
        self, credential: str, exchange: str, environment: str, request: httpx.Request
    ) -> Received | Failure:
        gateway = self._gateway
        profile = get_profile(exchange)
        host = request.url.netloc.decode("ascii")
        now = gateway.clock.now_ms()
        until = gateway.limiter.breaker_until(host)
        if until is not None and until > now:
            return Failure("the exchange banned this IP; waiting out the ban", False, 0.0)
        spend = charges_for(
            profile,
            profile.classify(request),
            host=host,
            account=credential,
            environment=environment,
            intents=(),
        )
        try:
            await gateway.limiter.acquire(
                spend,
                fairness_key="keybroker-paper",
                deadline_s=gateway.config.rate_limit_deadline_s,
            )
        except RateLimited:
            return Failure("no rate-limit budget left for market data", False, 0.0)
        upstream: Upstream = gateway.upstream
        return await upstream.send_once(request)
