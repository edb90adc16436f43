"""Facts from the exchange for the policy: open orders and position sizes, asked for and cached.

    >>> known = await gather(gateway.facts, job.profile, job.credential, job.request,
    ...                      job.intents, policy, read=read, notional=value_of)
    >>> known.open_orders, known.position("BTCUSDT")
    (3, Decimal('1520.5'))
    >>> known.commit()      # the order was allowed: count it at once

``max_open_orders`` needs the number of open orders of the credential on the
product the order goes to (spot, or USDⓈ-M futures, at Binance; the account
at OKX); ``max_position_notional`` the size of the position in the order's
symbol. Only the exchange knows either, so the gateway asks it with the
profile's own queries (``OrderTools.open_orders_request`` and
``position_request``), signed with the credential, through the rate limiter
and audited as reads like any other (``pipeline.read_fact`` does that part;
this module only decides when to ask and what the answers mean).

Asking for every order would spend the shared weight budget (an all-symbol
open-orders query weighs 40 at Binance), so answers are kept briefly
(``FactCache.max_age_ms``) and kept current by the gateway's own doing:
orders it lets through are added the moment they are allowed (so orders
arriving together cannot squeeze past a limit together), including those
allowed while a query was on its way; a cancel it lets through drops the
credential's answers, so the next order asks afresh. What the gateway cannot
see (fills, orders placed elsewhere) can only make its count too high, never
too low, for at most ``max_age_ms``; and when a kept count would refuse an
order, the gateway asks again first (at most every ``recheck_ms``), so a
bot at its limit is refused on a current count.

Where a profile has no such query (an exchange without ``OrderTools``, or
spot orders under ``max_position_notional``) or the exchange does not
answer, the fact stays unknown and the rule refuses, with the reason in the
denial's detail.

A paper credential's facts are the paper desk's, not the exchange's
(``paper_route.known``, a ``Known`` whose ``commit`` counts on the desk).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from keybroker.clock import Clock, SystemClock
from keybroker.exchanges import ExchangeProfile
from keybroker.exchanges.base import OrderIntent
from keybroker.gateway.dedup import Dedup
from keybroker.gateway.nonces import key_id
from keybroker.gateway.upstream import Failure, Received
from keybroker.model import Credential
from keybroker.policy import Policy

Read = Callable[[httpx.Request], Awaitable[Received | Failure | None]]
"""Send one signed, budgeted, audited read; None when the limiter refused it."""


@dataclass
class _Kept:
    value: Decimal
    asked_ms: int
    """When the query that gave ``value`` was sent: orders allowed after it are added."""


@dataclass
class FactCache:
    """Answers of the exchange per account (``nonces.key_id``: the same key under two
    credential names is one account) and query URL, and the gateway's own orders since."""

    clock: Clock
    max_age_ms: int = 5000
    recheck_ms: int = 1000
    _kept: dict[str, dict[str, _Kept]] = field(default_factory=dict)
    _added: dict[tuple[str, str], list[tuple[int, Decimal]]] = field(default_factory=dict)
    _asking: Dedup[Received | Failure | None] = field(init=False)

    def __post_init__(self) -> None:
        self._asking = Dedup(self.clock)  # one query in flight per key, shared

    def fresh(self, key: tuple[str, str], adding: Decimal, limit: Decimal) -> Decimal | None:
        """The kept value if young enough; one that would refuse must be younger still."""
        kept = self._kept.get(key[0], {}).get(key[1])
        if kept is None:
            return None
        age = self.clock.now_ms() - kept.asked_ms
        refusing = kept.value + adding > limit
        if age > self.max_age_ms or (refusing and age > self.recheck_ms):
            return None
        return kept.value

    async def ask(
        self, key: tuple[str, str], query: httpx.Request, read: Read
    ) -> tuple[int, Received | Failure | None]:
        asked = self.clock.now_ms()
        outcome = await self._asking.run(key, lambda: read(query))
        return asked, outcome

    def keep(self, key: tuple[str, str], value: Decimal, asked_ms: int) -> Decimal:
        """``value`` as the exchange said it at ``asked_ms``, plus what was allowed since."""
        added = [(at, amount) for at, amount in self._added.get(key, []) if at >= asked_ms]
        self._added[key] = added
        total = value + sum((amount for _, amount in added), start=Decimal(0))
        self._kept.setdefault(key[0], {})[key[1]] = _Kept(total, asked_ms)
        return total

    def add(self, key: tuple[str, str], amount: Decimal) -> None:
        """The gateway allowed an order: count it now, and again on top of answers in flight."""
        now = self.clock.now_ms()
        cutoff = now - self.max_age_ms
        added = [(at, n) for at, n in self._added.get(key, []) if at >= cutoff]
        added.append((now, amount))
        self._added[key] = added
        kept = self._kept.get(key[0], {}).get(key[1])
        if kept is not None:
            kept.value += amount

    def forget(self, account: str) -> None:
        """The account changed in a way not counted here: the next order asks again."""
        self._kept.pop(account, None)


@dataclass
class Known:
    """What ``gather`` learned for one order request; ``commit`` once the policy allowed it."""

    cache: FactCache
    open_orders: int | None = None
    open_orders_unknown: str = ""
    positions: dict[str, Decimal] = field(default_factory=dict)
    position_unknown: str = ""
    _open_key: tuple[str, str] | None = None
    _new_orders: int = 0
    _position_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    _added: dict[str, Decimal] = field(default_factory=dict)

    def position(self, symbol: str) -> Decimal | None:
        return self.positions.get(symbol)

    @property
    def asked(self) -> bool:
        return self._open_key is not None or bool(self._position_keys)

    def commit(self) -> None:
        """Count the allowed order's new orders and added position at once."""
        if self._open_key is not None and self._new_orders:
            self.cache.add(self._open_key, Decimal(self._new_orders))
        for symbol, amount in self._added.items():
            key = self._position_keys.get(symbol)
            if key is not None and amount:
                self.cache.add(key, amount)


def settle(cache: FactCache, credential: Credential, kind: str, known: Known) -> None:
    """After the policy allowed a request: count it where it was counted for, else forget.

    An order counted by ``known`` is added to what is kept. Any other order or
    cancel on the account (another credential of the same key, a policy without
    these rules, a cancel) changes what the exchange would say, so the kept
    answers of the account are dropped and the next order asks again.
    """
    if kind == "order_place" and known.asked:
        known.commit()
    elif kind in ("order_place", "order_cancel"):
        cache.forget(key_id(credential))


NOTHING_KNOWN = Known(FactCache(SystemClock()))
"""For requests whose policy needs no fact: shared, and ``commit`` on it does nothing."""


def new_orders(intents: Sequence[OrderIntent]) -> int:
    """Orders that would rest on the book: new orders state a side (as the policy counts)."""
    return sum(1 for intent in intents if intent.side is not None)


async def gather(
    cache: FactCache,
    profile: ExchangeProfile,
    credential: Credential,
    request: httpx.Request,
    intents: Sequence[OrderIntent],
    policy: Policy,
    *,
    read: Read,
    notional: Callable[[OrderIntent], Decimal | None],
) -> Known:
    """The facts ``policy`` needs for this order request, from the cache or the exchange.

    Asks nothing when no rule needs a fact, or the request places no order.
    ``notional`` values an intent as the policy does (for the position's growth).
    """
    known = Known(cache)
    if policy.max_open_orders is not None and new_orders(intents):
        limit = policy.max_open_orders
        await _open_orders(known, profile, credential, request, intents, limit, read)
    if policy.max_position_notional is not None:
        await _positions(known, profile, credential, request, intents, policy, read, notional)
    return known


async def _open_orders(
    known: Known,
    profile: ExchangeProfile,
    credential: Credential,
    request: httpx.Request,
    intents: Sequence[OrderIntent],
    limit: int,
    read: Read,
) -> None:
    tools = profile.orders
    query = None
    if tools is not None and tools.open_orders_request is not None:
        query = tools.open_orders_request(request)
    if tools is None or tools.count_open_orders is None or query is None:
        known.open_orders_unknown = f"the gateway has no open-orders query for {profile.name}"
        if tools is not None and tools.open_orders_request is not None:
            known.open_orders_unknown += " on this path"
        return
    key = (key_id(credential), str(query.url))
    known._open_key, known._new_orders = key, new_orders(intents)
    cache = known.cache
    kept = cache.fresh(key, Decimal(known._new_orders), Decimal(limit))
    if kept is None:
        asked, outcome = await cache.ask(key, query, read)
        why = _no_answer(outcome, "open-orders query")
        count = tools.count_open_orders(_body(outcome)) if not why else None
        if count is None:
            known.open_orders_unknown = (
                why or f"{profile.name}'s open-orders answer was not readable"
            )
            return
        kept = cache.keep(key, Decimal(count), asked)
    known.open_orders = int(kept)


async def _positions(
    known: Known,
    profile: ExchangeProfile,
    credential: Credential,
    request: httpx.Request,
    intents: Sequence[OrderIntent],
    policy: Policy,
    read: Read,
    notional: Callable[[OrderIntent], Decimal | None],
) -> None:
    tools = profile.orders
    if tools is None or tools.position_request is None or tools.position_notional is None:
        known.position_unknown = f"the gateway cannot read positions at {profile.name}"
        return
    grows: dict[str, Decimal] = {}
    for intent in intents:
        if intent.reduce_only is True:
            continue
        if intent.side is None and intent.quantity is None and intent.quote_quantity is None:
            continue
        grows[intent.symbol] = grows.get(intent.symbol, Decimal(0)) + (
            notional(intent) or Decimal(0)
        )
    for symbol, amount in grows.items():
        query = tools.position_request(request, symbol)
        if query is None:
            known.position_unknown = f"{profile.name} has positions on {tools.positions_on}"
            return
        key = (key_id(credential), str(query.url))
        known._position_keys[symbol], known._added[symbol] = key, amount
        cache = known.cache
        kept = cache.fresh(key, amount, policy.max_position_notional or Decimal(0))
        if kept is None:
            asked, outcome = await cache.ask(key, query, read)
            why = _no_answer(outcome, "position query")
            value = tools.position_notional(_body(outcome), symbol) if not why else None
            if value is None:
                known.position_unknown = why or f"{profile.name}'s position answer was not readable"
                return
            kept = cache.keep(key, value, asked)
        known.positions[symbol] = kept


def _no_answer(outcome: Received | Failure | None, what: str) -> str:
    """Why ``outcome`` is no usable answer, or "" when it is one."""
    if outcome is None:
        return f"the rate limit left no budget for the {what}"
    if isinstance(outcome, Failure):
        return f"the exchange did not answer the {what} ({outcome.reason})"
    if outcome.status != 200:
        return f"the exchange answered the {what} with HTTP {outcome.status}"
    return ""


def _body(outcome: Received | Failure | None) -> bytes:
    return outcome.content() if isinstance(outcome, Received) else b""
