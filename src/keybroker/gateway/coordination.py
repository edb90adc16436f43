"""What must be one for all gateways that share an exchange account, behind one small interface.

    >>> coordination = open_coordination(config, vault, clock)   # in-process, or Redis
    >>> limiter, nonces = coordination.limiter(), coordination.nonces()
    >>> await coordination.admit_order("binance-main", "grid-bot")   # 503 when Redis is down

One gateway keeps everything in its own memory and its vault: that is
``InProcess``, the default, and nothing about it changes. Several gateways
(``keybroker serve --redis URL``) share through Redis (``coordination_redis``):
the rate-limit budgets (``ratelimit.redis.RedisLimiter``), in-flight public
GETs, nonces, halts, token revocations and the per-token and per-credential
order counts.

The pieces, each with an in-process default:

- ``limiter()`` and ``nonces()``: the rate limiter and the nonce source;
- ``activity(clock)``: the order counts behind per-minute and per-day rules;
- ``shared_fetches``: how identical public GETs on several gateways become
  one upstream request (None: only within this gateway, ``dedup.Dedup``);
- ``admit_order``: called for each new order right before its policy is
  evaluated; refreshes what the policy needs from the shared store, counts
  the order there (``orders``, ``notional``) and raises
  ``CoordinationUnavailable`` when the store cannot answer, so that orders
  fail closed. Given the order's charges, a shared store may take its
  budget in the same round trip; what it did comes back as a ``Prepaid``,
  which ``refund`` undoes if the policy refuses the order. It is sent when
  the call returns (``writes_at_once``) and answered when awaited, so an
  order's intent row can be committed in between;
- ``sync``: called by the gateway's poller after it reread the vault;
  publishes this host's halts and revocations and reads everyone else's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from keybroker.clock import Clock
from keybroker.errors import InvalidInput
from keybroker.gateway.activity import Activity
from keybroker.gateway.config import GatewayConfig
from keybroker.gateway.dedup import SharedFetches
from keybroker.gateway.nonces import NonceLease, Nonces
from keybroker.ratelimit import Charge, Limiter, MemoryLimiter, Prepaid
from keybroker.vault import Vault

if TYPE_CHECKING:
    from keybroker.gateway.state import Gateway


class Coordination(Protocol):
    """Where the state lives that several gateways must share (see the module docstring)."""

    backend: str
    """``"memory"`` or ``"redis"``, shown in /_/status."""

    shared_fetches: SharedFetches | None

    @property
    def answering(self) -> bool:
        """Whether the store answered its last call (False while it is known to be down)."""
        ...

    def limiter(self) -> Limiter: ...
    def nonces(self) -> Nonces: ...
    def activity(self, clock: Clock) -> Activity: ...
    async def start(self, gateway: Gateway) -> None: ...
    @property
    def writes_at_once(self) -> bool:
        """Whether ``admit_order`` has sent its admission when it returns (nothing to send
        counts): otherwise the loop must turn before the admission is on its way."""
        ...

    def admit_order(
        self,
        credential: str,
        bot: str,
        charges: Sequence[Charge] = (),
        *,
        orders: int = 0,
        notional: Decimal = Decimal(0),
    ) -> Awaitable[Prepaid | None]: ...
    def refund(self, prepaid: Prepaid) -> None: ...
    async def sync(self, gateway: Gateway) -> None: ...
    async def close(self) -> None: ...
    def describe(self) -> dict[str, object]: ...


class InProcess:
    """Everything in this process and its vault: one gateway, no store to share."""

    backend = "memory"
    shared_fetches: SharedFetches | None = None

    def __init__(self, vault: Vault, clock: Clock) -> None:
        self._vault = vault
        self._clock = clock

    @property
    def answering(self) -> bool:
        return True  # this process is the store

    @property
    def writes_at_once(self) -> bool:
        return True  # nothing to send

    def limiter(self) -> Limiter:
        return MemoryLimiter(clock=self._clock)

    def nonces(self) -> Nonces:
        return NonceLease(self._vault)

    def activity(self, clock: Clock) -> Activity:
        return Activity(clock)

    async def start(self, gateway: Gateway) -> None:
        return None

    async def admit_order(
        self,
        credential: str,
        bot: str,
        charges: Sequence[Charge] = (),
        *,
        orders: int = 0,
        notional: Decimal = Decimal(0),
    ) -> Prepaid | None:
        return None

    def refund(self, prepaid: Prepaid) -> None:
        return None

    async def sync(self, gateway: Gateway) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, object]:
        return {"backend": self.backend}


def open_coordination(config: GatewayConfig, vault: Vault, clock: Clock) -> Coordination:
    """``InProcess`` without ``config.redis_url``; else the Redis one (the ``redis`` extra).

    Raises InvalidInput for a URL that is not ``redis://`` or ``rediss://``,
    or when the redis package is not installed.
    """
    if config.redis_url is None:
        return InProcess(vault, clock)
    try:
        from keybroker.gateway.coordination_redis import RedisCoordination
    except ImportError as exc:  # the optional extra
        raise InvalidInput(
            "--redis needs the redis package: pip install 'keybroker[redis]'"
        ) from exc

    return RedisCoordination.from_url(
        config.redis_url, vault=vault, clock=clock, gateways=config.gateways
    )
