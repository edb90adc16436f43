"""Per-credential policy: what a bot may have signed with a key, decided before signing.

    >>> policy = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",), max_notional=Decimal(500))
    >>> evaluate(policy, classified, intents, PolicyContext(environment="testnet")).allowed

``Policy`` is the stored value (``to_json``/``from_json``; the vault keeps the
bytes, sealed). ``evaluate`` is pure: the gateway gathers the facts it needs
into a ``PolicyContext``. Withdrawals, key management and unknown private
endpoints are refused whatever a policy says.
"""

from __future__ import annotations

from keybroker.policy.document import DEFAULT_POLICY, Policy
from keybroker.policy.rules import Decision, PolicyContext, evaluate, order_notional

RULES: tuple[str, ...] = (
    "never_withdraw",
    "never_key_management",
    "unknown_endpoint",
    "allow_production",
    "kill_switch",
    "scope",
    "transfers",
    "symbols",
    "order_types",
    "max_notional",
    "price_collar",
    "daily_notional",
    "max_orders_per_minute",
    "max_open_orders",
    "max_leverage",
    "max_position_notional",
)
"""Every rule name a denial can carry, in the order the rules run."""

__all__ = [
    "DEFAULT_POLICY",
    "RULES",
    "Decision",
    "Policy",
    "PolicyContext",
    "evaluate",
    "order_notional",
]
