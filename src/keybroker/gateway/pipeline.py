"""The request's way through the gateway, steps 2-9 of ARCHITECTURE.md, in order.

    >>> response = await handle(gateway, Incoming("POST", "binance-main", b"/api/v3/order",
    ...                                           b"", headers, body, bot))

Step 1 (the bot token) is ``auth.py``'s, before this runs. ``handle`` reads as
the list of steps; each helper below it does one. What leaves the machine is
decided here: a request is sent only after the policy allowed it, the limiter
gave it budget and its intent row is durable in the audit log. A withdrawal,
a key-management call or an unknown private endpoint never gets that far.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote

import httpx
from starlette.responses import Response

from keybroker.audit import AuditRow
from keybroker.crypto.keys import RemoteKey
from keybroker.errors import (
    AuthenticationFailed,
    IPBanned,
    KeybrokerError,
    OrderRejected,
    RateLimited,
    RateLimitedUpstream,
    UpstreamError,
)
from keybroker.exchanges import ExchangeProfile, get_profile
from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.gateway import paper_route
from keybroker.gateway.facts import NOTHING_KNOWN, Known, gather, settle
from keybroker.gateway.nonces import key_id
from keybroker.gateway.outgoing import request_for
from keybroker.gateway.remote_keys import RemoteKeys, SignAhead
from keybroker.gateway.responses import denial, error_response, refusal
from keybroker.gateway.state import Gateway
from keybroker.gateway.upstream import Build, Failure, Received, forwardable_request_headers
from keybroker.model import Credential
from keybroker.policy import Policy, PolicyContext, evaluate, order_notional
from keybroker.policy.rules import HALTED_DETAIL
from keybroker.ratelimit import Charge, Prepaid, charges_for, host_prefix, request_prefix
from keybroker.vault import BotToken

log = logging.getLogger("keybroker.gateway")

READ_KINDS = frozenset({"public", "account_read", "order_read"})
ORDER_KINDS = frozenset({"order_place", "order_cancel"})
RECOVERED_HEADER = "x-keybroker-order-lookup"
WAITED_S = 0.001
"""A budget wait at least this long reads the halts again (``halted_while_waiting``)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A bot's request after authentication: ``raw_path`` is the exchange path exactly as sent."""

    method: str
    credential: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes
    bot: BotToken


@dataclass(frozen=True, slots=True)
class Job:
    """One request on its way: everything the steps after classification need."""

    incoming: Incoming
    credential: Credential
    profile: ExchangeProfile
    request: httpx.Request
    classified: ClassifiedRequest
    intents: tuple[OrderIntent, ...]
    paper: bool = False
    """The paper venue answers it (a paper credential's order, cancel, order query, balance)."""
    notional: Decimal | None = None
    """What ``count_orders`` counted for an allowed order; its intent row records it."""
    prepaid: Prepaid | None = None
    """What the order's admission did: its budget taken (``take_budget`` then takes none)
    and its shared counts; ``refund`` undoes both if the policy refuses it."""
    spend: tuple[Charge, ...] = ()
    """What ``request`` spends from the rate-limit budgets (``charges``), worked out once."""
    intent_id: int | None = None
    """Its intent row, when ``judge`` already made it durable (``admit_beside_intent``)."""
    ahead: SignAhead | None = None
    """Its signature in OpenBao, started as soon as the request was final (``sign_ahead``)."""


async def handle(gateway: Gateway, incoming: Incoming) -> Response:
    """Steps 2-9 for one request; every refusal is audited, nothing refused leaves the machine."""
    started = time.perf_counter()
    gateway.in_flight += 1
    try:
        judged = await judge(gateway, incoming, started, early=True)
        if isinstance(judged, Response):
            return judged
        job = judged
        try:
            if job.classified.kind == "public" and job.request.method == "GET":
                outcome = await gateway.dedup.run(dedup_key(job), lambda: send(gateway, job))
            else:
                outcome = await send(gateway, job)  # 5.-9. limit, audit, sign, forward, audit
        finally:
            if job.ahead is not None:
                job.ahead.discard()  # unless sent: signed, never sent, nothing lost
    finally:
        gateway.in_flight -= 1
    response = answer(gateway, job, outcome)
    observe_added(gateway, job.classified.kind, started, outcome)
    return response


async def judge(
    gateway: Gateway,
    incoming: Incoming,
    started: float,
    read: tuple[Credential, Policy] | None = None,
    *,
    early: bool = False,
) -> Job | Response:
    """Steps 2-4: the allowed request as a counted Job, or the audited refusal to answer.

    WebSocket frames (``websocket.py``) come through here too, as their REST
    twins, so every rule, shared halt and count applies to them alike. ``read``:
    the caller's own ``credential_and_policy`` of this request, made just before
    with no wait since (the WebSocket's paper check), so one vault read serves both.
    ``early``: the caller (REST's ``handle``) takes work started before the
    decision: a signature in OpenBao (``sign_ahead``) and, with a shared store,
    an order's intent row made during its admission (``admit_beside_intent``).
    The Job carries both; a refusal drops the signature.
    """
    try:
        # 2. resolve the credential; its policy and the halts come with the same vault read
        credential, policy = read or gateway.access.credential_and_policy(incoming.credential)
        profile = get_profile(credential.exchange)
        request = outgoing_request(profile, credential, incoming)
        classified = profile.classify(request)  # 3. classify
        request, intents = read_orders(profile, request, classified)
        paper = paper_route.takes(policy, credential, classified)
        spend = tuple(
            charges_for(
                profile,
                classified,
                host=host_of(request.url),
                account=credential.name,
                environment=credential.environment,
                intents=intents,
            )
        )
        job = Job(incoming, credential, profile, request, classified, intents, paper, spend=spend)
        shared = gateway.coordination is not None and gateway.coordination.backend != "memory"
        # Halts were read with the credential. An order that waits on the network before its
        # decision (a shared store, a price, open orders) reads them again at the decision.
        reread_halts = classified.kind == "order_place" and (
            shared or needs_prices(policy, job) or needs_exchange_facts(policy, job)
        )
    except KeybrokerError as error:
        refused = await refuse(gateway, incoming, error_response(error), str(error))
        observe_added(gateway, "unknown", started, None)
        return refused
    ahead = sign_ahead(gateway, job) if early else None
    try:
        judged = await decide(
            gateway, job, policy, started, early=early, shared=shared, reread_halts=reread_halts
        )
    except BaseException:
        if ahead is not None:
            ahead.discard()
        raise
    if ahead is None:
        return judged
    if isinstance(judged, Response):
        ahead.discard()  # refused: signed, never sent
        return judged
    return dataclasses.replace(judged, ahead=ahead)


def sign_ahead(gateway: Gateway, job: Job) -> SignAhead | None:
    """Step 7 started now, for a key in OpenBao: its round trip then overlaps the policy,
    the admission and the intent row's fsync; it is sent only if all of them allow it.

    Not for paper or public requests (nothing to sign in OpenBao), nor for exchanges
    with nonces: a nonce drawn before a wait for budget could reach the exchange after
    a later one.
    """
    if job.paper or job.classified.kind == "public" or job.profile.uses_nonce:
        return None
    if not isinstance(job.credential.secret, RemoteKey):
        return None
    return SignAhead(functools.partial(sign, gateway, job, job.request))


async def decide(
    gateway: Gateway,
    job: Job,
    policy: Policy,
    started: float,
    *,
    early: bool,
    shared: bool,
    reread_halts: bool,
) -> Job | Response:
    """Step 4 of ``judge``: prices and exchange facts where the policy needs them, a shared
    store's admission, the policy's decision; the counted Job, or the audited refusal."""
    incoming, credential = job.incoming, job.credential
    classified, intents = job.classified, job.intents
    prices = await last_prices(gateway, job) if needs_prices(policy, job) else {}
    known = await exchange_facts(gateway, job, policy, prices)
    intent_id = None
    try:
        if (
            early
            and shared
            and classified.kind == "order_place"
            and gateway.coordination is not None
            and gateway.coordination.answering  # an order refused at once needs no intent
        ):
            notional = counted_notional(job, prices) if intents else None  # as count_orders
            sent = admission(gateway, job, notional)  # on its way while the policy looks
            try:  # as things stood before the admission: is it worth an intent row now?
                looks_allowed = evaluate(
                    policy,
                    classified,
                    intents,
                    facts(gateway, job, prices, known, reread_halts=False),
                ).allowed
            except BaseException:
                give_back_when_answered(gateway, sent)
                raise
            if looks_allowed:
                pending, intent_id = await admit_beside_intent(
                    gateway, job, prices, known, sent, notional, reread_halts=reread_halts
                )
                prepaid, context = await pending
            else:
                prepaid, context = await admitted(
                    gateway, job, prices, known, reread_halts=reread_halts, sent=sent
                )
        else:
            prepaid, context = await admitted(
                gateway, job, prices, known, reread_halts=reread_halts
            )
    except KeybrokerError as error:
        response = error_response(error)
        refused = await refuse(gateway, incoming, response, str(error), intent_id=intent_id)
        observe_added(gateway, "unknown", started, None)
        return refused
    decision = evaluate(policy, classified, intents, context)  # 4. the policy
    if not decision.allowed:
        if prepaid is not None and gateway.coordination is not None:
            gateway.coordination.refund(prepaid)  # it never leaves: budget, counts back
        denied = await deny(gateway, job, decision.rule, decision.detail, intent_id=intent_id)
        observe_added(gateway, classified.kind, started, None)
        return denied
    settle(gateway.facts, credential, classified.kind, known)  # open orders, positions
    return count_orders(gateway, job, prices, prepaid=prepaid, intent_id=intent_id)


async def send(gateway: Gateway, job: Job) -> Received | Failure | Response:
    """Steps 5-9: budget, durable intent row, signature, the exchange, result row."""
    waited_from = time.perf_counter()
    try:
        await take_budget(gateway, job, job.request)  # 5. rate limit (or 429 here)
    except RateLimited as limited:
        paper_route.not_on_the_way(gateway, job)  # an allowed paper order that never arrives
        return await deny(
            gateway, job, "rate_limited", str(limited), error=limited, intent_id=job.intent_id
        )
    if halted_while_waiting(gateway, job, waited_from):
        paper_route.not_on_the_way(gateway, job)
        return await deny(gateway, job, "kill_switch", HALTED_DETAIL, intent_id=job.intent_id)
    build: Build = job.ahead or functools.partial(sign, gateway, job, job.request)
    if job.intent_id is not None:
        intent_id = job.intent_id  # 6. made durable during the shared store's admission
    else:
        ahead = job.ahead
        if ahead is None and not job.paper and isinstance(job.credential.secret, RemoteKey):
            build = ahead = SignAhead(build)  # 7. starts now: OpenBao's round trip overlaps 6.
        try:
            intent_id = await gateway.write_now(  # 6. audit
                row(job, "intent", decision="allow"), beside=ahead is not None
            )
        except BaseException:
            if ahead is not None:
                ahead.discard()  # signed, never sent: nothing leaves without its intent row
            raise
    try:
        if job.paper:  # 8. the paper venue answers in the exchange's format; nothing is sent
            outcome = await paper_route.answer(gateway, job)
        else:
            outcome = await gateway.upstream.send(  # 7.-8. sign (per attempt) and forward
                build, retry=job.classified.kind in READ_KINDS
            )
    except KeybrokerError as refused:  # the signer or the nonce lease refused: nothing left
        await gateway.write_now(row(job, "result", intent_id=intent_id, detail=str(refused)))
        return error_response(refused)
    note = None
    if job.classified.kind == "order_place" and is_ambiguous(outcome):
        outcome, note = await look_up(gateway, job, outcome)
    error = take_answer(gateway, job, outcome)  # 9. map errors, correct the limiter at once
    # The result row is made once the answer is on its way (the loop's next turn, after
    # this task hands the answer to the transport) and written with the next commit:
    # only the intent row must be durable first. Closing the log writes what is queued.
    asyncio.get_running_loop().call_soon(
        record_result, gateway, job, intent_id, outcome, error, note
    )
    return outcome


# -- step 2 and 3: the outgoing request, classified --------------------------------------


def outgoing_request(
    profile: ExchangeProfile, credential: Credential, incoming: Incoming
) -> httpx.Request:
    """The unsigned request for the exchange: its base URL, the bot's path, query and body.

    The path and query bytes go on exactly as the bot sent them; classification
    runs on this very request, so what is judged is what is sent.
    """
    path = incoming.raw_path.decode("ascii", "surrogateescape")
    base = credential.base_url or profile.base_url(
        unquote(path.split("?", 1)[0]), credential.environment
    )
    query = incoming.query.decode("ascii", "surrogateescape")
    headers = forwardable_request_headers(incoming.headers)
    return request_for(incoming.method, base, path, query, headers, incoming.body)


def read_orders(
    profile: ExchangeProfile, request: httpx.Request, classified: ClassifiedRequest
) -> tuple[httpx.Request, tuple[OrderIntent, ...]]:
    """The order intents, after a client order id was added to every new order without one.

    Classified once (``classified`` is this request's own); the order is read
    once where the exchange can add the id to its intents as it adds it to the
    request (``OrderTools.with_client_order_id``), else read again once added.
    """
    if classified.kind not in ORDER_KINDS:
        return request, ()
    # InvalidInput: refused, never guessed at
    intents = profile.parse_order(request, classified=classified)
    tools = profile.orders
    missing_id = any(intent.client_order_id is None for intent in intents)
    if classified.kind == "order_place" and tools is not None and missing_id:
        both = None
        if tools.with_client_order_id is not None:
            both = tools.with_client_order_id(request, new_client_order_id, classified, intents)
        if both is not None:
            request, intents = both
        else:
            added = tools.add_client_order_id(request, new_client_order_id, classified=classified)
            if added is not request:
                request, intents = added, profile.parse_order(added, classified=classified)
    return request, tuple(intents)


def new_client_order_id() -> str:
    """32 letters and digits, ``kb`` first: valid at every exchange keybroker speaks."""
    return "kb" + secrets.token_hex(15)


# -- step 4: the facts a policy needs --------------------------------------------------------


def facts(
    gateway: Gateway,
    job: Job,
    prices: dict[str, Decimal],
    known: Known = NOTHING_KNOWN,
    *,
    reread_halts: bool = True,
) -> PolicyContext:
    """What the gateway knows now: halts, counts, last prices, and what the exchange said
    of open orders and positions.

    Halts are as of the vault read that resolved the credential; an order
    that waited on the network since has them read afresh (``reread_halts``).
    """
    name, kind = job.credential.name, job.classified.kind
    return PolicyContext(
        environment=job.credential.environment,
        halted=gateway.access.is_halted(name, fresh=reread_halts and kind == "order_place"),
        last_price=prices.get,
        orders_last_minute=gateway.activity.orders_last_minute(name),
        token_orders_last_minute=gateway.activity.bot_orders_last_minute(job.incoming.bot.bot),
        token_max_orders_per_minute=job.incoming.bot.max_orders_per_minute,
        open_orders=known.open_orders,
        daily_notional_used=gateway.activity.daily_notional(name),
        position_notional=known.position,
        open_orders_unknown=known.open_orders_unknown,
        position_unknown=known.position_unknown,
    )


def needs_exchange_facts(policy: Policy, job: Job) -> bool:
    """Whether this is an order and the policy has a rule on open orders or positions."""
    return job.classified.kind == "order_place" and (
        policy.max_open_orders is not None or policy.max_position_notional is not None
    )


async def exchange_facts(
    gateway: Gateway, job: Job, policy: Policy, prices: dict[str, Decimal]
) -> Known:
    """Open orders and positions, when the policy has a rule on them and this is an order."""
    if not needs_exchange_facts(policy, job):
        return NOTHING_KNOWN
    notional = functools.partial(order_notional, last_price=prices.get)
    if job.paper:  # the paper desk's open orders and positions, never the exchange's
        return paper_route.known(gateway, job, policy, notional=notional)
    return await gather(
        gateway.facts,
        job.profile,
        job.credential,
        job.request,
        job.intents,
        policy,
        read=functools.partial(read_fact, gateway, job),
        notional=notional,
    )


async def read_fact(gateway: Gateway, job: Job, query: httpx.Request) -> Received | Failure | None:
    """The gateway's own signed read for a policy fact: budget, audit rows, like a bot's read.

    None when the limiter had no budget for it in time.
    """
    try:
        await take_budget(gateway, job, query, fairness_key="keybroker")
    except RateLimited:
        return None
    classified = job.profile.classify(query)
    read = dataclasses.replace(
        job,
        request=query,
        classified=classified,
        intents=(),
        notional=None,
        prepaid=None,
        spend=tuple(charges(job, query, classified)),
    )
    detail = "the gateway's own read, for the policy"
    intent_id = await gateway.write_now(row(read, "intent", decision="allow", detail=detail))
    try:
        outcome = await gateway.upstream.send_once(await sign(gateway, read, query))
    except KeybrokerError as refused:
        await gateway.write_now(row(read, "result", intent_id=intent_id, detail=str(refused)))
        return Failure(type(refused).__name__, False, 0.0)
    error = take_answer(gateway, read, outcome)
    record_result(gateway, read, intent_id, outcome, error, None)
    return outcome


def needs_prices(policy: Policy, job: Job) -> bool:
    """Whether a rule of ``policy`` needs a last price for this request's orders.

    The price collar always does; the notional rules only for an order that
    names neither a limit price nor a quote amount (a market order).
    """
    if job.classified.kind != "order_place" or not job.intents:
        return False
    if policy.price_collar_pct is not None:
        return True
    notional_rules = (policy.max_notional, policy.daily_notional, policy.max_position_notional)
    unpriced = any(i.price is None and i.quote_quantity is None for i in job.intents)
    return unpriced and any(rule is not None for rule in notional_rules)


async def last_prices(gateway: Gateway, job: Job) -> dict[str, Decimal]:
    """Last prices of the order's symbols from the exchange's public ticker (cached briefly)."""
    tools = job.profile.orders
    prices: dict[str, Decimal] = {}
    if tools is None:
        return prices
    now = gateway.clock.now_ms()
    for symbol in {intent.symbol for intent in job.intents}:
        ticker = tools.price_request(job.request, symbol)
        if ticker is None:
            continue
        key = (job.credential.environment, str(ticker.url))
        cached = gateway.prices.get(key)
        if cached is not None and now - cached[0] <= gateway.config.price_max_age_ms:
            prices[symbol] = cached[1]
            continue
        try:
            await take_budget(gateway, job, ticker, fairness_key="keybroker")
        except RateLimited:
            continue  # unknown price: rules that need one deny the order
        outcome = await gateway.dedup.run(
            ("price", *key), functools.partial(gateway.upstream.send_once, ticker)
        )
        if isinstance(outcome, Received) and outcome.status == 200:
            price = tools.parse_price(outcome.content())
            if price is not None:
                gateway.prices[key] = (now, price)
                prices[symbol] = price
    return prices


def count_orders(
    gateway: Gateway,
    job: Job,
    prices: dict[str, Decimal],
    *,
    prepaid: Prepaid | None = None,
    intent_id: int | None = None,
) -> Job:
    """Count allowed orders at once, so that requests arriving together share one limit.

    Notional is quote quantity, or quantity times the limit price, or (market
    orders) times the last price where the gateway fetched one. The job that
    comes back carries it, for the intent row (a restart counts it again),
    with what the order's admission did (``prepaid``) and the intent row
    already made for it (``intent_id``), if any: one copy of the job.
    """
    if job.classified.kind != "order_place" or not job.intents:
        if prepaid is None and intent_id is None:
            return job
        return dataclasses.replace(job, prepaid=prepaid, intent_id=intent_id)
    notional = counted_notional(job, prices)
    gateway.activity.record(
        job.credential.name, job.incoming.bot.bot, orders=len(job.intents), notional=notional
    )
    return dataclasses.replace(job, notional=notional, prepaid=prepaid, intent_id=intent_id)


def counted_notional(job: Job, prices: dict[str, Decimal]) -> Decimal:
    """What ``count_orders`` counts for the job's orders (see there)."""
    notional = Decimal(0)
    for intent in job.intents:
        price = intent.price if intent.price is not None else prices.get(intent.symbol)
        if intent.quote_quantity is not None:
            notional += intent.quote_quantity
        elif intent.quantity is not None and price is not None:
            notional += intent.quantity * price
    return notional


def admission(
    gateway: Gateway, job: Job, notional: Decimal | None
) -> Awaitable[Prepaid | None] | None:
    """A new order's admission in a shared store, sent now: its fresh halts and counts, the
    order counted in them and, when it fits now, its budget taken, in one round trip; None
    where there is no shared store or this is no order. CoordinationUnavailable (503) when
    the store is known to be down. ``notional``: what ``count_orders`` will count."""
    coordination = gateway.coordination
    if job.classified.kind != "order_place" or coordination is None:
        return None
    if coordination.backend == "memory":
        return None  # this gateway's own counts are the only ones (count_orders)
    return coordination.admit_order(
        job.credential.name,
        job.incoming.bot.bot,
        budget_now(gateway, job),
        orders=len(job.intents),
        notional=notional or Decimal(0),
    )


async def admitted(
    gateway: Gateway,
    job: Job,
    prices: dict[str, Decimal],
    known: Known,
    *,
    reread_halts: bool,
    sent: Awaitable[Prepaid | None] | None = None,
) -> tuple[Prepaid | None, PolicyContext]:
    """The order admitted (``admission``, or ``sent``, one already under way): what the
    admission did (``refund`` undoes it), and the policy's context as it left it.

    Right before the policy decides, so the count is one step with the check
    for every gateway. The context is read with no wait after the admission:
    the counts a shared store answered are those from just before this order
    (which it counted), and an order admitted after it must not lend this one
    its counts, which already hold this order.
    """
    if sent is None:
        sent = admission(gateway, job, counted_notional(job, prices) if job.intents else None)
    prepaid = await sent if sent is not None else None
    return prepaid, facts(gateway, job, prices, known, reread_halts=reread_halts)


async def admit_beside_intent(
    gateway: Gateway,
    job: Job,
    prices: dict[str, Decimal],
    known: Known,
    sent: Awaitable[Prepaid | None] | None,
    notional: Decimal | None,
    *,
    reread_halts: bool,
) -> tuple[Awaitable[tuple[Prepaid | None, PolicyContext]], int]:
    """``admitted`` for an admission already sent, and the order's intent row, committed
    while the store answers.

    The fsync and a shared store's round trip (Redis: about 0.7 ms from an
    idle gateway here) each cost more than the p50 the store may add (#9), so
    they run side by side; an order then waits for the slower, not the sum.
    The admission is on the wire before the commit holds the loop (the link
    writes at once; otherwise ``write_now`` lets the loop turn first), and
    its answer, there by the time the commit is done, is read at once.
    The row is written before the store's word, for an order the policy
    allowed as things stood: if the store refuses it (a halt, a shared count,
    the store down) or the policy does with the fresh counts, the row that
    follows is a refusal naming this intent (``intent_id``), and nothing leaves.
    Await the first result exactly once.
    """
    coordination = gateway.coordination
    beside = sent is not None and coordination is not None and not coordination.writes_at_once
    try:
        intent = row(job, "intent", notional=notional, decision="allow")
        intent_id = await gateway.write_now(intent, beside=beside)
    except BaseException:
        give_back_when_answered(gateway, sent)
        raise
    return admitted(gateway, job, prices, known, reread_halts=reread_halts, sent=sent), intent_id


def give_back_when_answered(gateway: Gateway, sent: Awaitable[Prepaid | None] | None) -> None:
    """For an admission sent whose order goes no further (its intent row failed): its
    answer still comes, and what it counted and took then goes back (``refund``)."""
    if sent is not None:
        answered = asyncio.ensure_future(sent)
        answered.add_done_callback(functools.partial(_refund, gateway))


def _refund(gateway: Gateway, answered: asyncio.Future[Prepaid | None]) -> None:
    """Give back what an admission took for an order that goes no further."""
    if answered.cancelled() or answered.exception() is not None:
        return
    prepaid = answered.result()
    if prepaid is not None and gateway.coordination is not None:
        gateway.coordination.refund(prepaid)


async def deny(
    gateway: Gateway,
    job: Job,
    rule: str,
    detail: str,
    *,
    error: RateLimited | None = None,
    intent_id: int | None = None,
) -> Response:
    """Audit a refusal (durably), alert, and answer it; the request never left the machine.
    ``intent_id``: the intent row already made for it, which this refusal closes."""
    await gateway.write_now(
        row(job, "denied", decision="deny", rule=rule, detail=detail, intent_id=intent_id)
    )
    gateway.metrics.count("keybroker_denials_total", credential=job.credential.name, rule=rule)
    count(gateway, job, "rate_limited" if error else "denied")
    if error is not None:
        gateway.metrics.count(
            "keybroker_throttled_total",
            source="gateway",
            exchange=job.credential.exchange,
            status="429",
        )
    alert = "RateLimited" if error else "PolicyDenied"
    gateway.alert(alert, bot=job.incoming.bot.bot, credential=job.credential.name, rule=rule)
    if error is not None:
        return error_response(error)
    return denial(rule, detail)


async def refuse(
    gateway: Gateway,
    incoming: Incoming,
    response: Response,
    detail: str,
    *,
    intent_id: int | None = None,
) -> Response:
    """Audit and give ``response``: a request refused before it was classified (or its
    policy read, or a shared store's admission). The row's rule is the answer's error
    code; ``intent_id``: the intent row already made for it, which this refusal closes."""
    code = response.headers.get("x-keybroker-error", "error")
    await gateway.write_now(
        AuditRow(
            "denied",
            bot=incoming.bot.bot,
            credential=incoming.credential,
            method=incoming.method,
            path=incoming.raw_path.decode("ascii", "replace"),
            decision="deny",
            rule=code,
            detail=detail,
            intent_id=intent_id,
        )
    )
    gateway.metrics.count(
        "keybroker_requests_total", credential=incoming.credential, kind="unknown", outcome=code
    )
    gateway.metrics.count("keybroker_decisions_total", kind="unknown", decision="deny")
    return response


# -- step 5: the rate limit -------------------------------------------------------------------


def host_of(url: httpx.URL) -> str:
    """``host[:port]``: what the limiter's budgets and the 418 breaker are kept per."""
    return url.netloc.decode("ascii")


def charges(job: Job, request: httpx.Request, classified: ClassifiedRequest) -> list[Charge]:
    """What ``request`` (the job's own, or the gateway's read for it) spends from the budgets."""
    if request is job.request:
        return list(job.spend)
    return charges_for(
        job.profile,
        classified,
        host=host_of(request.url),
        account=job.credential.name,
        environment=job.credential.environment,
        intents=job.intents if request is job.request else (),
    )


async def take_budget(
    gateway: Gateway, job: Job, request: httpx.Request, *, fairness_key: str | None = None
) -> None:
    """Wait for budget (fair across bots) or raise RateLimited; a banned host is not tried."""
    if request is job.request and job.prepaid is not None and job.prepaid.claim():
        return  # taken with the order's admission (``budget_now``)
    host = host_of(request.url)
    until = gateway.limiter.breaker_until(host)
    now = gateway.clock.now_ms()
    if until is not None and until > now:
        raise RateLimited(
            f"the exchange banned this IP on {host}; waiting out the ban",
            retry_after=(until - now) / 1000,
        )
    classified = job.classified if request is job.request else job.profile.classify(request)
    await gateway.limiter.acquire(
        charges(job, request, classified),
        fairness_key=fairness_key or job.incoming.bot.bot,
        deadline_s=gateway.config.rate_limit_deadline_s,
    )


def halted_while_waiting(gateway: Gateway, job: Job, waited_from: float) -> bool:
    """Whether an order that queued for its budget since ``waited_from`` (``perf_counter``)
    was halted meanwhile: it must not leave then.

    Its halts were read when it was judged, but a queue can hold it for up to
    ``rate_limit_deadline_s`` (10 s): a runaway bot's queued orders would
    otherwise keep leaving after ``keybroker halt`` had said the halt was in
    force. An order granted at once pays for no second read.
    """
    if job.classified.kind != "order_place" or time.perf_counter() - waited_from < WAITED_S:
        return False
    return gateway.access.is_halted(job.credential.name, fresh=True)


def budget_now(gateway: Gateway, job: Job) -> list[Charge]:
    """The order's charges, for a shared store to take with its admission; none for a
    banned host (``take_budget`` refuses it then)."""
    host = host_of(job.request.url)
    until = gateway.limiter.breaker_until(host)
    if until is not None and until > gateway.clock.now_ms():
        return []
    return charges(job, job.request, job.classified)


def learn_limits(
    gateway: Gateway, job: Job, received: Received, error: UpstreamError | None
) -> None:
    """Correct the budgets from usage headers; pause the host on 429, open its breaker on 418."""
    host = host_of(job.request.url)
    if job.profile.read_usage is not None:
        usage = job.profile.read_usage(received.header_map())
        if usage:
            spent = charges(job, job.request, job.classified)
            gateway.limiter.observe(request_prefix(spent), usage)
    if received.status in (418, 429):
        gateway.metrics.count(
            "keybroker_throttled_total",
            source="exchange",
            exchange=job.profile.name,
            status=str(received.status),
        )
    retry = error.retry_after if isinstance(error, RateLimitedUpstream) else None
    if isinstance(error, IPBanned) or received.status == 418:
        until = error.ban_until_ms if isinstance(error, IPBanned) else None
        if until is None:
            until = gateway.clock.now_ms() + int(1000 * (retry or 60))
        gateway.limiter.open_breaker(host, until)
    elif received.status == 429:
        prefix = host_prefix(job.profile.name, job.credential.environment, host)
        gateway.limiter.pause(prefix, retry if retry is not None else 1.0)


# -- step 6 and 9: audit rows ---------------------------------------------------------------


def order_fields(
    intents: Sequence[OrderIntent], notional: Decimal | None = None
) -> dict[str, str] | None:
    """Order fields as text for the audit row: one order's fields, the batch size, and the
    notional the gateway counted against the daily cap."""
    if not intents:
        return None
    fields = {
        name: str(value)
        for name in ("symbol", "side", "type", "quantity", "price", "quote_quantity", "leverage")
        if (value := getattr(intents[0], name)) is not None
    }
    if len(intents) > 1:
        fields["batch_size"] = str(len(intents))
    if notional is not None:
        fields["notional"] = str(notional)
    return fields


def row(job: Job, kind: str, *, notional: Decimal | None = None, **values: object) -> AuditRow:
    """The audit row of ``kind`` for ``job``; ``notional``: the counted notional to record
    when the job does not carry it yet (an intent row made before the policy's decision)."""
    ids = [intent.client_order_id for intent in job.intents if intent.client_order_id]
    return AuditRow(
        kind,
        bot=job.incoming.bot.bot,
        credential=job.credential.name,
        exchange=job.credential.exchange,
        environment=job.credential.environment,
        method=job.request.method,
        path=job.request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace"),
        request_kind=job.classified.kind,
        order=order_fields(job.intents, job.notional if notional is None else notional),
        client_order_id=",".join(ids) if ids else None,
        paper=job.paper,
        **values,  # type: ignore[arg-type]
    )


def take_answer(gateway: Gateway, job: Job, outcome: Received | Failure) -> UpstreamError | None:
    """Read an exchange's answer at once: its error, limiter corrections, metrics, alerts."""
    exchange = job.credential.exchange
    if isinstance(outcome, Failure):
        gateway.metrics.count("keybroker_upstream_failures_total", exchange=exchange)
        return None
    error = job.profile.map_error(outcome.status, outcome.content(), outcome.header_map())
    learn_limits(gateway, job, outcome, error)
    gateway.metrics.count(
        "keybroker_upstream_requests_total", exchange=exchange, status=str(outcome.status)
    )
    gateway.metrics.observe(
        "keybroker_upstream_seconds", outcome.elapsed_ms / 1000, exchange=exchange
    )
    alert = None
    if isinstance(error, IPBanned):
        alert = "IPBanned"
    elif outcome.status == 429:
        alert = "RateLimited"
    elif isinstance(error, AuthenticationFailed):
        alert = "AuthenticationFailed"
    elif isinstance(error, OrderRejected):
        alert = "OrderRejected"
    if alert is not None:
        gateway.alert(
            alert,
            bot=job.incoming.bot.bot,
            credential=job.credential.name,
            status=str(outcome.status),
            venue_code=_venue_code(error),
        )
    return error


def record_result(
    gateway: Gateway,
    job: Job,
    intent_id: int,
    outcome: Received | Failure,
    error: UpstreamError | None,
    note: str | None,
) -> None:
    """The result row: status, the exchange's error code, latency, what a lookup learned.

    Written after the answer, with the next commit (``Gateway.write_later``): only
    the intent row must be durable before anything leaves.
    """
    if isinstance(outcome, Failure):
        detail = outcome.reason + (f"; {note}" if note else "")
        gateway.write_later(
            row(job, "result", intent_id=intent_id, detail=detail, latency_ms=outcome.elapsed_ms)
        )
        return
    gateway.write_later(
        row(
            job,
            "result",
            intent_id=intent_id,
            status=outcome.status,
            venue_code=_venue_code(error),
            latency_ms=outcome.elapsed_ms,
            detail=note or (type(error).__name__ if error is not None else None),
        )
    )


def _venue_code(error: UpstreamError | None) -> str | None:
    return None if error is None or error.code is None else str(error.code)


# -- step 7: signing ------------------------------------------------------------------------


async def sign(gateway: Gateway, job: Job, request: httpx.Request) -> httpx.Request:
    """The request signed with the credential: the one place the secret is used."""
    if paper_route.unsigned(job.credential):
        return request  # a keyless paper credential: public market data, sent as it is
    now = gateway.clock.now_ms()
    nonce = None
    if job.profile.uses_nonce:
        nonce = await gateway.nonces.next(key_id(job.credential), now)
    if isinstance(job.credential.secret, RemoteKey):  # the key is in OpenBao: off the loop
        remote = gateway.remote_keys or RemoteKeys.absent(gateway.alert)
        return await remote.sign(job.profile, request, job.credential, now_ms=now, nonce=nonce)
    return job.profile.sign(request, job.credential, now_ms=now, nonce=nonce)


# -- step 8: after an ambiguous failure ---------------------------------------------------------


def is_ambiguous(outcome: Received | Failure) -> bool:
    """No answer after the order may have arrived, or a 5xx: the order may or may not exist."""
    if isinstance(outcome, Failure):
        return outcome.may_have_arrived
    return outcome.status >= 500


async def look_up(
    gateway: Gateway, job: Job, outcome: Received | Failure
) -> tuple[Received | Failure, str]:
    """Ask the exchange for the order by its client order id; never send the order again.

    Found: the exchange's answer to the lookup replaces the failure (header
    ``X-Keybroker-Order-Lookup: found``). Absent after every attempt, or no
    answer: the original outcome stays (an exchange's 5xx with that header
    saying ``absent`` or ``unknown``), and the note says what was learned.
    """
    tools = job.profile.orders
    gateway.metrics.count("keybroker_order_lookups_total", exchange=job.credential.exchange)
    query = None
    if tools is not None and len(job.intents) == 1 and job.intents[0].client_order_id:
        query = tools.lookup_request(job.request, job.intents[0])
    if tools is None or query is None:
        return outcome, "order lookup: not possible for this request"
    verdict = "unknown"
    for attempt in range(gateway.config.lookup_attempts):
        if attempt:
            await asyncio.sleep(gateway.config.lookup_pause_s)
        try:
            await take_budget(gateway, job, query)
        except RateLimited:
            continue
        found = await gateway.upstream.send_once(await sign(gateway, job, query))
        if isinstance(found, Received):
            verdict = tools.lookup_outcome(found.status, found.content())
            if verdict == "found":
                headers = (*found.headers, (RECOVERED_HEADER, "found"))
                return Received(found.status, headers, found.raw, found.elapsed_ms), (
                    "order lookup: found"
                )
    if isinstance(outcome, Received):  # the exchange's 5xx stays, marked with what was learned
        headers = (*outcome.headers, (RECOVERED_HEADER, verdict))
        outcome = Received(outcome.status, headers, outcome.raw, outcome.elapsed_ms)
    return outcome, f"order lookup: {verdict}"


# -- the answer ---------------------------------------------------------------------------------


def answer(gateway: Gateway, job: Job, outcome: Received | Failure | Response) -> Response:
    """The exchange's status, headers and body unchanged; or the gateway's own JSON."""
    if isinstance(outcome, Response):
        return outcome
    if isinstance(outcome, Received):
        count(gateway, job, "forwarded")
        return Response(outcome.raw, outcome.status, headers=dict_headers(outcome.headers))
    count(gateway, job, "no_answer")
    client_ids = [intent.client_order_id for intent in job.intents if intent.client_order_id]
    if job.classified.kind == "order_place" and outcome.may_have_arrived:
        return refusal(
            504,
            "order_outcome_unknown",
            f"{outcome.reason}; the order was not found by its client order id (yet). "
            "It may still arrive: look it up by that id before placing it again",
            client_order_ids=client_ids,
        )
    status = 504 if outcome.may_have_arrived else 502
    return refusal(status, "upstream_unreachable", outcome.reason)


def dict_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    # Starlette takes a mapping; repeated headers (Set-Cookie) are joined as RFC 9110 allows
    # for list-valued fields. Exchanges send none that must stay separate.
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def count(gateway: Gateway, job: Job, outcome: str) -> None:
    gateway.metrics.count(
        "keybroker_requests_total",
        credential=job.credential.name,
        kind=job.classified.kind,
        outcome=outcome,
    )
    decision = "deny" if outcome in ("denied", "rate_limited") else "allow"
    gateway.metrics.count("keybroker_decisions_total", kind=job.classified.kind, decision=decision)


def observe_added(
    gateway: Gateway, kind: str, started: float, outcome: Received | Failure | Response | None
) -> None:
    """The gateway-added latency: the whole handling time less the exchange's own.

    Queueing for rate-limit budget counts as added (the gateway chose to
    wait); so does an order lookup after an ambiguous answer.
    """
    total = time.perf_counter() - started
    upstream = outcome.elapsed_ms / 1000 if isinstance(outcome, Received | Failure) else 0.0
    gateway.metrics.observe(
        "keybroker_gateway_added_seconds", max(0.0, total - upstream), kind=kind
    )


def dedup_key(job: Job) -> tuple[str, ...]:
    """Same environment, same URL, same encoding asked for: the same answer."""
    return (
        job.credential.environment,
        str(job.request.url),
        job.request.headers.get("accept-encoding", ""),
    )
