"""``evaluate``: may this classified request be signed for this credential? Pure, no I/O.

    >>> decision = evaluate(policy, profile.classify(request), profile.parse_order(request),
    ...                     PolicyContext(environment="testnet", last_price=market.last))
    >>> decision.allowed, decision.rule
    (False, 'max_notional')

The gateway gathers the facts (market prices, counts, halts) into a
``PolicyContext``; this module only decides, so every rule is a plain unit
test. Rules run in a fixed order and the first refusal wins; its ``rule`` and
``detail`` become the 403 body ``{"error": "policy_denied", "rule", "detail"}``
and the audit row, so a detail names rules, symbols and numbers only, never a
header, a body or a key.

Fail closed: where a rule needs a fact the gateway does not have (no last
price for a market order under ``max_notional``, no open-order count under
``max_open_orders``), the request is denied and the detail says which fact
was missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, Overflow, localcontext
from typing import TYPE_CHECKING, TypeAlias

from keybroker.policy.document import Policy

if TYPE_CHECKING:
    # Types only: importing keybroker.exchanges loads httpx and all nine
    # profiles, which the CLI's `policy` commands have no use for.
    from keybroker.exchanges.base import ClassifiedRequest, OrderIntent

READ_KINDS = frozenset({"account_read", "order_read"})
TRADE_KINDS = frozenset({"order_place", "order_cancel"})
HALTED_DETAIL = "trading is halted for this credential; cancels and reads still pass"
"""The kill switch's refusal: the policy's, and the gateway's for an order halted while
it waited for rate-limit budget (``pipeline.halted_while_waiting``)."""
_SHOWN = 40
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of ``evaluate``: allowed, or the rule that refused and why (safe to show)."""

    allowed: bool
    rule: str
    detail: str

    @classmethod
    def allow(cls) -> Decision:
        return _ALLOWED

    @classmethod
    def deny(cls, rule: str, detail: str) -> Decision:
        return cls(False, rule, detail)


_ALLOWED = Decision(True, "", "")


def _unknown(symbol: str) -> Decimal | None:
    return None


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Facts the gateway gathers for one request, so that ``evaluate`` stays pure.

    Counts do not include the request being decided. ``last_price`` and
    ``position_notional`` answer for a symbol in the exchange's spelling, or
    None when the gateway does not know; ``position_notional`` is the size of
    the current position in the quote currency (its absolute value is used).
    """

    environment: str
    """The credential's: "testnet" or "production"."""
    halted: bool = False
    last_price: Callable[[str], Decimal | None] = _unknown
    orders_last_minute: int = 0
    """Orders this credential placed in the last 60 s."""
    token_orders_last_minute: int = 0
    """Orders the calling bot token placed in the last 60 s."""
    token_max_orders_per_minute: int | None = None
    open_orders: int | None = None
    """Open orders of this credential; None when unknown."""
    daily_notional_used: Decimal = Decimal(0)
    """Notional this credential's orders used today (UTC)."""
    position_notional: Callable[[str], Decimal | None] = _unknown
    open_orders_unknown: str = ""
    """Why ``open_orders`` is None, for the denial's detail (names and codes only)."""
    position_unknown: str = ""
    """Why ``position_notional`` answers None, likewise."""


def evaluate(
    policy: Policy,
    request: ClassifiedRequest,
    intents: Sequence[OrderIntent],
    context: PolicyContext,
) -> Decision:
    """Decide one request; never raises for any request, intents or context values.

    The order: what is never allowed (withdrawals, key management, unknown
    private endpoints), then the credential as a whole (production, kill
    switch, scopes, transfers), then, for orders, each order rule in turn.
    """
    kind = request.kind
    if kind == "withdraw":
        return Decision.deny("never_withdraw", "withdrawals are never signed")
    if kind == "key_management":
        return Decision.deny("never_key_management", "calls that manage API keys are never signed")
    if kind not in _KNOWN_KINDS:
        # unknown_private, and any kind a newer profile might add: default deny.
        return Decision.deny(
            "unknown_endpoint",
            f"{request.method} {_shown(request.path)} is not a known endpoint of this exchange",
        )
    if context.environment != "testnet" and not policy.allow_production:
        return Decision.deny(
            "allow_production",
            "this is a production credential and its policy does not allow production",
        )
    if kind == "order_place" and context.halted:
        return Decision.deny("kill_switch", HALTED_DETAIL)
    if kind in TRADE_KINDS and "trade" not in policy.scopes:
        return Decision.deny("scope", "the policy does not grant the trade scope")
    if kind in READ_KINDS and "read" not in policy.scopes:
        return Decision.deny("scope", "the policy does not grant the read scope")
    if kind == "transfer" and not policy.allow_transfers:
        return Decision.deny("transfers", "the policy does not allow transfers")
    if kind == "order_place":
        return _check_orders(policy, tuple(intents), context)
    return _ALLOWED


_KNOWN_KINDS = frozenset(
    {"public", "account_read", "order_read", "order_place", "order_cancel", "transfer"}
)


def _check_orders(
    policy: Policy, intents: tuple[OrderIntent, ...], context: PolicyContext
) -> Decision:
    if not intents:
        # An empty symbol allowlist denies everything, so the symbol rule is
        # always configured: an order nobody could read is never signed.
        return Decision.deny(
            "symbols", "the order could not be read, so its symbol cannot be checked"
        )
    # Each check looks at every intent before the next check runs, so a batch
    # is refused by the same rule whatever position its bad order has.
    with localcontext() as arithmetic:
        # A hostile amount like 1E+999999 must give Infinity (and a denial),
        # not an exception out of the policy engine.
        arithmetic.traps[Overflow] = False
        for rule, check in _ORDER_CHECKS:
            try:
                decision = check(policy, intents, context)
            except (ArithmeticError, TypeError, ValueError):
                # Amounts no parser gives (NaN, a str where a Decimal belongs):
                # the rule cannot be checked, so it refuses.
                decision = Decision.deny(rule, "the order's amounts could not be checked")
            if not decision.allowed:
                return decision
    return _ALLOWED


def _symbols(policy: Policy, intents: tuple[OrderIntent, ...], _: PolicyContext) -> Decision:
    allowed = {symbol.casefold() for symbol in policy.symbols}
    for intent in intents:
        if not intent.symbol:
            return Decision.deny("symbols", "the order names no symbol")
        if intent.symbol.casefold() not in allowed:
            if not allowed:
                return Decision.deny("symbols", "the policy allows no symbol to trade")
            return Decision.deny(
                "symbols", f"{_shown(intent.symbol)} is not in the policy's symbol list"
            )
    return _ALLOWED


def _order_types(policy: Policy, intents: tuple[OrderIntent, ...], _: PolicyContext) -> Decision:
    if not policy.order_types:
        return _ALLOWED
    allowed = {name.casefold() for name in policy.order_types}
    for intent in _new_orders(intents):
        if intent.type is None:
            return Decision.deny("order_types", "the order does not say its type")
        if intent.type.casefold() not in allowed:
            return Decision.deny(
                "order_types", f"order type {_shown(intent.type)} is not allowed by the policy"
            )
    return _ALLOWED


def _max_notional(policy: Policy, intents: tuple[OrderIntent, ...], ctx: PolicyContext) -> Decision:
    if policy.max_notional is None:
        return _ALLOWED
    for intent in _sized(intents):
        notional = _notional(intent, ctx)
        if notional is None:
            return _no_notional("max_notional", intent)
        if notional > policy.max_notional:
            return Decision.deny(
                "max_notional",
                f"order notional {_amount(notional)} on {_shown(intent.symbol)} is over "
                f"the policy's {policy.max_notional}",
            )
    return _ALLOWED


def _price_collar(policy: Policy, intents: tuple[OrderIntent, ...], ctx: PolicyContext) -> Decision:
    if policy.price_collar_pct is None:
        return _ALLOWED
    for intent in intents:
        if intent.price is None:
            continue
        if not intent.price.is_finite():
            return Decision.deny("price_collar", "the order's price is not a number")
        last = _known_price(ctx.last_price, intent.symbol)
        if last is None:
            return Decision.deny(
                "price_collar", f"no last price for {_shown(intent.symbol)} to check the price"
            )
        deviation = abs(intent.price - last) / last * _HUNDRED
        if deviation > policy.price_collar_pct:
            return Decision.deny(
                "price_collar",
                f"price {_amount(intent.price)} is {_amount(deviation, places=2)}% from "
                f"the last price {_amount(last)} of {_shown(intent.symbol)}; the policy allows "
                f"{policy.price_collar_pct}%",
            )
    return _ALLOWED


def _daily_notional(
    policy: Policy, intents: tuple[OrderIntent, ...], ctx: PolicyContext
) -> Decision:
    if policy.daily_notional is None:
        return _ALLOWED
    total = _known_amount(ctx.daily_notional_used)
    if total is None:
        return Decision.deny("daily_notional", "the notional already used today is unknown")
    for intent in _sized(intents):
        notional = _notional(intent, ctx)
        if notional is None:
            return _no_notional("daily_notional", intent)
        total += notional
    if total > policy.daily_notional:
        return Decision.deny(
            "daily_notional",
            f"today's notional would be {_amount(total)}, over the policy's "
            f"{policy.daily_notional} a day",
        )
    return _ALLOWED


def _max_orders_per_minute(
    policy: Policy, intents: tuple[OrderIntent, ...], ctx: PolicyContext
) -> Decision:
    count = len(intents)
    limit = policy.max_orders_per_minute
    if limit is not None and ctx.orders_last_minute + count > limit:
        return Decision.deny(
            "max_orders_per_minute",
            f"the credential placed {ctx.orders_last_minute} orders in the last minute; "
            f"the policy allows {limit}",
        )
    token_limit = ctx.token_max_orders_per_minute
    if token_limit is not None and ctx.token_orders_last_minute + count > token_limit:
        return Decision.deny(
            "max_orders_per_minute",
            f"this bot token placed {ctx.token_orders_last_minute} orders in the last minute; "
            f"its limit is {token_limit}",
        )
    return _ALLOWED


def _max_open_orders(
    policy: Policy, intents: tuple[OrderIntent, ...], ctx: PolicyContext
) -> Decision:
    if policy.max_open_orders is None:
        return _ALLOWED
    count = len(_new_orders(intents))
    if count == 0:
        return _ALLOWED
    if ctx.open_orders is None:
        why = f": {ctx.open_orders_unknown}" if ctx.open_orders_unknown else ""
        return Decision.deny("max_open_orders", f"the number of open orders is unknown{why}")
    if ctx.open_orders + count > policy.max_open_orders:
        return Decision.deny(
            "max_open_orders",
            f"{ctx.open_orders} orders are open; the policy allows {policy.max_open_orders}",
        )
    return _ALLOWED


def _max_leverage(policy: Policy, intents: tuple[OrderIntent, ...], _: PolicyContext) -> Decision:
    if policy.max_leverage is None:
        return _ALLOWED
    for intent in intents:
        if intent.leverage is None:
            continue
        if not intent.leverage.is_finite() or intent.leverage > policy.max_leverage:
            return Decision.deny(
                "max_leverage",
                f"leverage {_amount(intent.leverage)} on {_shown(intent.symbol)} is over "
                f"the policy's {policy.max_leverage}",
            )
    return _ALLOWED


def _max_position_notional(
    policy: Policy, intents: tuple[OrderIntent, ...], ctx: PolicyContext
) -> Decision:
    limit = policy.max_position_notional
    if limit is None:
        return _ALLOWED
    # Orders that can only shrink a position pass; every other sized order is
    # assumed to grow it (the side alone cannot tell a long from a short).
    added: dict[str, Decimal] = {}
    for intent in _sized(intents):
        if intent.reduce_only is True:
            continue
        notional = _notional(intent, ctx)
        if notional is None:
            return _no_notional("max_position_notional", intent)
        added[intent.symbol] = added.get(intent.symbol, Decimal(0)) + notional
    for symbol, amount in added.items():
        current = _known_amount(_ask(ctx.position_notional, symbol))
        if current is None:
            why = f": {ctx.position_unknown}" if ctx.position_unknown else ""
            return Decision.deny(
                "max_position_notional", f"the position in {_shown(symbol)} is unknown{why}"
            )
        projected = abs(current) + amount
        if projected > limit:
            return Decision.deny(
                "max_position_notional",
                f"the position in {_shown(symbol)} would be {_amount(projected)}, over "
                f"the policy's {limit}",
            )
    return _ALLOWED


_OrderCheck: TypeAlias = "Callable[[Policy, tuple[OrderIntent, ...], PolicyContext], Decision]"
_ORDER_CHECKS: tuple[tuple[str, _OrderCheck], ...] = (
    ("symbols", _symbols),
    ("order_types", _order_types),
    ("max_notional", _max_notional),
    ("price_collar", _price_collar),
    ("daily_notional", _daily_notional),
    ("max_orders_per_minute", _max_orders_per_minute),
    ("max_open_orders", _max_open_orders),
    ("max_leverage", _max_leverage),
    ("max_position_notional", _max_position_notional),
)


# -- what an intent says ------------------------------------------------------------------


def _new_orders(intents: tuple[OrderIntent, ...]) -> list[OrderIntent]:
    # A new order states its side; amends, leverage and margin settings do not
    # (they keep the type and side of the order or position they change).
    return [intent for intent in intents if intent.side is not None]


def _sized(intents: tuple[OrderIntent, ...]) -> list[OrderIntent]:
    # Intents that move an amount: every new order (even one that forgot its
    # size, which then cannot be priced and is refused) and every amend that
    # sets a quantity. Cancels and settings move none.
    return [
        intent
        for intent in intents
        if intent.side is not None
        or intent.quantity is not None
        or intent.quote_quantity is not None
    ]


def order_notional(
    intent: OrderIntent, last_price: Callable[[str], Decimal | None] = _unknown
) -> Decimal | None:
    """The order's value in the quote currency as the notional rules count it; None if unknown.

    An order sized in the quote currency counts at that size, a limit order
    at its own price, a market order (no price) at ``last_price``. The
    gateway adds what it lets through to ``daily_notional_used`` with this
    same function, so the day's total and the rule agree. Never raises; an
    absurdly large amount is Infinity.
    """
    with localcontext() as arithmetic:
        arithmetic.traps[Overflow] = False
        if intent.quote_quantity is not None:
            return _known_amount(abs(intent.quote_quantity))
        if intent.quantity is None or not intent.quantity.is_finite():
            return None
        price = (
            intent.price if intent.price is not None else _known_price(last_price, intent.symbol)
        )
        if price is None or not price.is_finite() or price <= 0:
            return None
        return _known_amount(abs(intent.quantity) * price)


def _notional(intent: OrderIntent, ctx: PolicyContext) -> Decimal | None:
    return order_notional(intent, ctx.last_price)


def _no_notional(rule: str, intent: OrderIntent) -> Decision:
    if intent.quantity is None and intent.quote_quantity is None:
        return Decision.deny(rule, f"the order on {_shown(intent.symbol)} does not say its size")
    return Decision.deny(rule, f"no last price for {_shown(intent.symbol)} to value the order")


def _ask(source: Callable[[str], Decimal | None], symbol: str) -> Decimal | None:
    try:
        return source(symbol)
    except Exception:
        # The gateway's market data failing must deny (fail closed), not crash the decision.
        return None


def _known_price(source: Callable[[str], Decimal | None], symbol: str) -> Decimal | None:
    price = _ask(source, symbol)
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        return None
    return price


def _known_amount(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        return None
    amount = Decimal(value)
    return amount if not amount.is_nan() else None


def _amount(value: Decimal, places: int = 8) -> str:
    if not value.is_finite():
        return "too large"
    if value.adjusted() > 20:
        return f"{value:.3e}"
    with localcontext() as wide:
        wide.prec = 60
        return f"{value.quantize(Decimal(1).scaleb(-places)).normalize():f}"


def _shown(text: str) -> str:
    # Symbols, types and paths come from the bot's request: shown short and printable only.
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:_SHOWN])
    return clean + ("…" if len(text) > _SHOWN else "")
