"""What one request costs, against which budgets: the exchange's tables turned into charges.

    >>> charges = charges_for(get_profile("binance"), classified,
    ...                       host="api.binance.com", account="main", environment="production")
    >>> [(c.key, c.amount) for c in charges]
    [('binance:production:api.binance.com:REQUEST_WEIGHT', 1.0), ...,
     ('binance:production:api.binance.com:main:ORDERS_10S', 1.0), ...]

Keys name a budget the way the exchange counts it, so that every request
sharing one exchange budget shares one key:

    <exchange>:<environment>:<host>:<NAME>                       scope "ip"
    <exchange>:<environment>:<host>:<account>:<NAME>             scope "account"
    <exchange>:<environment>:<host>:<account>:<METHOD pattern>:<NAME>   scope "endpoint", private
    <exchange>:<environment>:<host>:<METHOD pattern>:<NAME>      scope "endpoint", public

and a ``per_symbol`` budget puts ``:<symbol>`` before the name. Everything
before the last ``:`` is the charge's *owner*; ``host_prefix`` is the owner
of the IP-wide budgets, and ``request_prefix`` the deepest owner of one
request, which is what ``Limiter.observe`` wants after its response.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keybroker.exchanges.base import (
    ClassifiedRequest,
    ExchangeProfile,
    OrderIntent,
    RateLimit,
    endpoint_id,
)


@dataclass(frozen=True, slots=True)
class Charge:
    """``amount`` to spend from the budget ``key``, which ``limit`` describes.

    ``host`` is the exchange host the request goes to (for the 418 breaker).
    """

    key: str
    amount: float
    limit: RateLimit
    host: str = ""

    @property
    def owner(self) -> str:
        """The key without its limit name: whose budget this is."""
        return self.key.rsplit(":", 1)[0]


@dataclass(slots=True)
class Prepaid:
    """Budget a shared limiter took together with an order's admission (one store round trip).

    The request then skips its own ``acquire`` (``claim`` says so, once);
    if the policy refuses the order, the limiter gives the budget back.
    """

    charges: tuple[Charge, ...]
    taken_ms: int
    claimed: bool = False

    def claim(self) -> bool:
        """True the first time: the request's budget is already taken (never when
        ``charges`` is empty: a store that counted the order but took no budget)."""
        if self.claimed or not self.charges:
            return False
        self.claimed = True
        return True


@functools.lru_cache(maxsize=1024)
def owners_of(key: str) -> tuple[str, ...]:
    """Every prefix of ``key`` ending before a ``:``, and ``key`` itself: the owners whose
    budgets and pauses cover it. Remembered: each response asks it for the same few keys."""
    return (*(key[:i] for i, ch in enumerate(key) if ch == ":"), key)


def host_prefix(exchange: str, environment: str, host: str) -> str:
    """The owner of ``host``'s IP-wide budgets; every key for that host starts with it.

    ``Limiter.pause(host_prefix(...), retry_after)`` stops every budget there
    (a Binance 429 is about the IP's weight, whichever account sent it).
    """
    return f"{exchange}:{environment}:{host}"


def request_prefix(charges: Sequence[Charge]) -> str:
    """The deepest owner among one request's charges ("" for none), for ``Limiter.observe``.

    A request's budgets lie on one line (IP, then account, then endpoint), so
    observing the usage headers of its response against this prefix corrects
    the budgets this request spent from and no other account's.
    """
    return max((charge.owner for charge in charges), key=len, default="")


def charges_for(
    profile: ExchangeProfile,
    classified: ClassifiedRequest,
    *,
    host: str,
    account: str,
    environment: str = "production",
    intents: Sequence[OrderIntent] = (),
    limit_overrides: Mapping[str, float] | None = None,
) -> list[Charge]:
    """What ``classified`` spends from each of ``profile``'s budgets that covers it.

    ``host`` is where it goes (``api.binance.com``, or ``127.0.0.1:8080`` for
    the emulator), ``account`` whose account-wide budgets it spends from (the
    credential's name), ``environment`` keeps testnet and production apart.
    ``intents`` (from ``profile.parse_order``) count a batch's orders and
    split per-symbol budgets; without them a batch counts as the catalogue
    says and per-symbol budgets fall back to one for the account.

    ``limit_overrides`` replace capacities: a key is a charge key, an
    ``"exchange:NAME"`` or a bare ``NAME``, the most specific winning; e.g.
    ``{"binance:REQUEST_WEIGHT": 6000}`` for Binance's 2026 spot limit, where
    the default is seed 001's 1,200. A capacity of zero or less switches
    that budget off (no charge at all).

    Worked out once per kind of request: the same inputs (overrides aside) give the
    same charges, remembered in ``_WORKED_OUT`` (every order of a bot spends the same).
    """
    memo = None
    if limit_overrides is None:
        memo = (id(profile), classified, host, account, environment, _symbols(intents))
        known = _WORKED_OUT.get(memo)
        if known is not None and known[0] is profile:
            return list(known[1])
    charges = _work_out(profile, classified, host, account, environment, intents, limit_overrides)
    if memo is not None:
        if len(_WORKED_OUT) >= _WORKED_OUT_MAX:
            _WORKED_OUT.clear()  # many hosts, accounts or paths: start again
        _WORKED_OUT[memo] = (profile, tuple(charges))
    return charges


# (id(profile), classified, host, account, environment, order symbols) -> (profile, charges).
# The profile is held, so its id names no other profile while the entry lives; charges
# depend on nothing else (a batch's size and per-symbol counts are in its symbols).
_WORKED_OUT: dict[tuple[object, ...], tuple[ExchangeProfile, tuple[Charge, ...]]] = {}
_WORKED_OUT_MAX = 4096


def _symbols(intents: Sequence[OrderIntent]) -> tuple[str, ...]:
    if not intents:
        return ()
    if len(intents) == 1:
        return (intents[0].symbol,)
    return tuple(intent.symbol for intent in intents)


def _work_out(
    profile: ExchangeProfile,
    classified: ClassifiedRequest,
    host: str,
    account: str,
    environment: str,
    intents: Sequence[OrderIntent],
    limit_overrides: Mapping[str, float] | None,
) -> list[Charge]:
    base = host_prefix(profile.name, environment, host)
    charges: list[Charge] = []
    endpoint = endpoint_id(classified)
    for limit in profile.rate_limits:
        if not limit.covers(classified):
            continue
        owner = _owner(limit, classified, base, account, endpoint)
        limit = _for_endpoint(limit, endpoint)
        for symbol, amount in _amounts(limit, classified, intents):
            if amount <= 0:
                continue
            key = f"{owner}:{symbol}:{limit.name}" if symbol else f"{owner}:{limit.name}"
            charged = apply_overrides(limit, key, profile.name, limit_overrides)
            if charged is not None:
                charges.append(Charge(key, float(amount), charged, host))
    return charges


def apply_overrides(
    limit: RateLimit, key: str, exchange: str, overrides: Mapping[str, float] | None
) -> RateLimit | None:
    """``limit`` with the capacity ``overrides`` gives it; None when that capacity is <= 0.

    Looked up by the charge key, then ``exchange:NAME``, then ``NAME``.
    """
    if not overrides:
        return limit
    for name in (key, f"{exchange}:{limit.name}", limit.name):
        capacity = overrides.get(name)
        if capacity is not None:
            return _with_capacity(limit, float(capacity)) if capacity > 0 else None
    return limit


def _owner(
    limit: RateLimit, classified: ClassifiedRequest, base: str, account: str, endpoint: str
) -> str:
    if limit.scope == "ip":
        return base
    if limit.scope == "account":
        return f"{base}:{account}"
    # Per-endpoint budgets are the account's for private calls and the IP's
    # for public ones (OKX and Bybit count them so).
    if classified.kind == "public":
        return f"{base}:{endpoint}"
    return f"{base}:{account}:{endpoint}"


def _amounts(
    limit: RateLimit, classified: ClassifiedRequest, intents: Sequence[OrderIntent]
) -> list[tuple[str, float]]:
    """(symbol or "", amount) pairs: one pair, or one per symbol of a per-symbol budget."""
    endpoint = classified.endpoint
    is_batch = endpoint is not None and endpoint.is_batch
    if limit.per_symbol and intents:
        counts: dict[str, int] = {}
        for intent in intents:
            counts[intent.symbol] = counts.get(intent.symbol, 0) + 1
        return [
            (symbol, _amount(limit, classified, count, is_batch))
            for symbol, count in counts.items()
        ]
    return [("", _amount(limit, classified, len(intents), is_batch))]


def _amount(limit: RateLimit, classified: ClassifiedRequest, orders: int, is_batch: bool) -> float:
    endpoint = classified.endpoint
    if limit.counts == "weight":
        # An uncatalogued (public) path costs the smallest weight.
        return float(endpoint.weight) if endpoint is not None else 1.0
    if limit.counts == "orders":
        if endpoint is None:
            return 0.0
        # A batch spends one per order it carries (OKX, Bybit and Binance count
        # them so); the catalogue's order_count is its size when unknown.
        if is_batch and orders:
            return float(orders)
        return float(endpoint.order_count)
    return float(orders) if is_batch and orders else 1.0


@functools.lru_cache(maxsize=64)
def _capacity_table(limit: RateLimit) -> dict[str, float]:
    return dict(limit.endpoint_capacities)


@functools.lru_cache(maxsize=4096)
def _with_capacity(limit: RateLimit, capacity: float) -> RateLimit:
    return dataclasses.replace(limit, capacity=capacity, endpoint_capacities=())


def _for_endpoint(limit: RateLimit, endpoint: str) -> RateLimit:
    if not limit.endpoint_capacities:
        return limit
    capacity = _capacity_table(limit).get(endpoint)
    return _with_capacity(limit, limit.capacity if capacity is None else capacity)
