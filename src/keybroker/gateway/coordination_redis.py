"""Several gateways, one Redis: halts, revocations, nonces, order counts and in-flight GETs shared.

    >>> coordination = RedisCoordination.from_url(Secret("redis://10.0.0.5:6379/0"),
    ...                                           vault=vault, clock=clock, gateways=3)

Each decision that must be atomic across gateways is one Lua script (Redis
runs a script alone); everything else is plain keys under ``keybroker:``.

- **Halts.** ``keybroker halt`` writes this host's vault; this gateway's
  poller sees it within ``poll_interval_s`` and publishes it (the hash
  ``keybroker:halts``, one field per credential, ``*`` for all). Every
  gateway reads that hash with each order (the same script that reads the
  order counts) and with each poll, so a halt on one host stops new orders
  on all within about half a second. A halt in a host's own vault always
  holds there, published or not.
- **Resume.** ``keybroker resume`` removes the halt from this host's vault;
  the gateway notices the halt gone and deletes it from Redis, which lifts it
  everywhere except on hosts whose own vault still holds a halt of that name
  (resume there too). ``keybroker resume --redis URL`` deletes it from Redis
  directly, from any host.
- **Revocations.** When the vault's token counter moves, the gateway
  publishes the SHA-256 of every revoked token (``keybroker:revoked``; a
  revoked token's hash is no credential); every gateway reads the set when
  its version counter moves, each poll, and refuses those tokens.
- **Nonces.** One counter per key: ``max(now, last + 1, floor)`` in one
  script, so nonces are strictly increasing across gateways. Before a nonce
  is used, this host's vault ceiling is raised above it (durably, in blocks,
  as ``NonceLease`` does), and ``floor`` is that persisted high-water mark,
  so a Redis that lost its data never hands out a nonce below what this host
  used; on an empty key the counter also starts ``RESTART_JUMP_MS`` ahead,
  past what other hosts may have drawn just before the loss.
- **Order counts.** Right before its policy decides, each new order reads
  the credential's and the bot's last-minute counts and the day's notional
  (and the halts) and is counted in them, in one script, ``ADMIT_ORDER``,
  which also takes the order's rate-limit budgets when they all fit now;
  a halted credential's order is neither counted nor given budget. That is
  the only round trip before the order leaves, and since reading and
  counting are one step for all gateways, two gateways cannot each pass a
  limit by the other's order. A policy refusal takes the counts and the
  budget back (``refund``); until it has, another gateway's order may see
  one order too many (a refusal, never an order too many).
- **The connection.** Scripts go over ``redis_link.Link``, one pipelined
  connection parsed by hiredis; redis-py's per-command cost was larger than
  the round trip itself. Probes and the CLI keep using redis-py.
- **In-flight GETs.** The first gateway to claim a public GET fetches it and
  leaves the answer in Redis for a few seconds; the others wait for that
  answer instead of asking the exchange again.

When Redis does not answer: new orders get 503 ``coordination_unavailable``
(limits, halts and counts cannot be honoured), nonces are refused, reads go
on within 1/N of each budget (``RedisLimiter``), fetches are not shared, and
one alert says so. A probe every half second notices Redis back; the
gateway then republishes its halts and revocations and carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from keybroker.clock import Clock
from keybroker.errors import CoordinationUnavailable, InvalidInput
from keybroker.gateway.activity import Activity
from keybroker.gateway.dedup import SharedFetches
from keybroker.gateway.nonces import BLOCK, Nonces
from keybroker.gateway.upstream import Received
from keybroker.ratelimit import Charge, Limiter, Prepaid
from keybroker.ratelimit.redis import (
    NAMESPACE,
    STORE_FAILURES,
    Offer,
    RedisLimiter,
    StoreHealth,
)
from keybroker.ratelimit.redis_link import Link, LinkScript
from keybroker.ratelimit.redis_scripts import PRELUDE, TRY_ALL
from keybroker.secret import Secret
from keybroker.vault import Vault

if TYPE_CHECKING:
    from keybroker.gateway.state import Gateway

log = logging.getLogger("keybroker.gateway")

T = TypeVar("T")

RESTART_JUMP_MS = 10_000
_TIMEOUT_S = 0.5
_PROBE_S = 0.5
_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
_RESULT_KEEP_MS = 5_000
_CLAIM_MS = 35_000  # longer than an upstream request with its retries may take

_NEXT_NONCE = r"""
-- KEYS[1]: the counter; ARGV: now, floor, jump. Strictly above every earlier answer.
local now, floor, jump = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[1]) or '')
local value
if last == nil then
  value = math.max(now, floor) + jump
else
  value = math.max(now, last + 1, floor)
end
redis.call('SET', KEYS[1], string.format('%d', value))
return string.format('%d', value)
"""

ADMIT_ORDER = (
    PRELUDE
    + TRY_ALL
    + r"""
-- KEYS: halts, credential's orders, bot's orders, credential's notional today, then try_all's
-- keys for the order's budgets. ARGV: now, credential, the orders this request places, their
-- notional ('0': none), the request's id, then 1 and try_all's arguments to take the budgets
-- in the same step, or 0. Unless the credential is halted, the orders are counted (members
-- id:1..n at now) with their notional, and the budgets taken if they all fit (try_all).
-- Returns the two counts and the notional as they were before this request, the halts and
-- try_all's answer (0: not tried).
local now = tonumber(ARGV[1])
local cutoff = now - 60000
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', cutoff)
local halts = redis.call('HGETALL', KEYS[1])
local answer = {redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
                redis.call('GET', KEYS[4]) or '0', halts, 0}
for i = 1, #halts, 2 do
  if halts[i] == ARGV[2] or halts[i] == '*' then return answer end
end
local orders = tonumber(ARGV[3])
if orders > 0 then
  local members = {}
  for i = 1, orders do
    members[#members + 1] = now
    members[#members + 1] = ARGV[5] .. ':' .. i
  end
  redis.call('ZADD', KEYS[2], unpack(members))
  redis.call('ZADD', KEYS[3], unpack(members))
  redis.call('PEXPIRE', KEYS[2], 61000)
  redis.call('PEXPIRE', KEYS[3], 61000)
end
if ARGV[4] ~= '0' then
  redis.call('INCRBYFLOAT', KEYS[4], ARGV[4])
  redis.call('PEXPIRE', KEYS[4], 2 * 86400000)
end
if ARGV[6] == '1' then answer[5] = try_all({unpack(KEYS, 5)}, {unpack(ARGV, 7)}) end
return answer
"""
)

_UNCOUNT = r"""
-- KEYS: credential's orders, bot's orders, notional that day; ARGV: id, orders, notional.
-- Takes back what ADMIT_ORDER counted for a request its policy then refused.
local members = {}
for i = 1, tonumber(ARGV[2]) do members[#members + 1] = ARGV[1] .. ':' .. i end
if #members > 0 then
  redis.call('ZREM', KEYS[1], unpack(members))
  redis.call('ZREM', KEYS[2], unpack(members))
end
if ARGV[3] ~= '0' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[3], '-' .. ARGV[3])  -- a notional is never negative
end
return #members
"""

_SYNC = r"""
-- KEYS: halts, revoked set, revoked version.
-- ARGV: n halts to publish (name, value pairs follow), m names to lift, then revoked hashes,
--       and last the revocation version this gateway has seen.
local n = tonumber(ARGV[1])
local at = 2
for _ = 1, n do redis.call('HSETNX', KEYS[1], ARGV[at], ARGV[at + 1]); at = at + 2 end
local m = tonumber(ARGV[at]); at = at + 1
for _ = 1, m do redis.call('HDEL', KEYS[1], ARGV[at]); at = at + 1 end
local added = 0
while at < #ARGV do added = added + redis.call('SADD', KEYS[2], ARGV[at]); at = at + 1 end
if added > 0 then redis.call('INCR', KEYS[3]) end
local version = redis.call('GET', KEYS[3]) or '0'
local members = false
if version ~= ARGV[#ARGV] then members = redis.call('SMEMBERS', KEYS[2]) end
return {redis.call('HGETALL', KEYS[1]), version, members}
"""

_CLAIM = r"""
-- KEYS: the claim, the recent answer; ARGV: token, claim ms.
-- Returns {'recent', answer} | {'claimed'} | {'wait', owner's token}.
local recent = redis.call('GET', KEYS[2])
if recent then return {'recent', recent} end
local owner = redis.call('GET', KEYS[1])
if owner then return {'wait', owner} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {'claimed'}
"""

_FINISH = r"""
-- KEYS: the claim, the answer for its token, the recent answer;
-- ARGV: token, answer, keep ms for answers arriving later (0: none).
redis.call('SET', KEYS[2], ARGV[2], 'PX', 5000)
if tonumber(ARGV[3]) > 0 and ARGV[2] ~= '-' then
  redis.call('SET', KEYS[3], ARGV[2], 'PX', tonumber(ARGV[3]))
end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def shown_url(url: str) -> str:
    """The URL without its password: ``rediss://***@10.0.0.5:6380/0``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ":?"
    auth = "***@" if parts.username or parts.password else ""
    return f"{parts.scheme}://{auth}{host}{port}{parts.path}"


def connect(url: Secret) -> Redis:
    """An asyncio Redis client for ``redis://`` or ``rediss://`` (TLS verified) URLs.

    Timeouts are short (half a second): a store that does not answer must
    turn into a quick 503 for orders, not a bot waiting. Raises InvalidInput.
    """
    text = url.reveal_text()
    scheme = urlsplit(text).scheme
    if scheme not in ("redis", "rediss"):
        raise InvalidInput("--redis takes a redis:// or rediss:// URL (rediss: TLS)")
    try:
        client: Redis = Redis.from_url(
            text,
            socket_timeout=_TIMEOUT_S,
            socket_connect_timeout=_TIMEOUT_S,
            retry_on_timeout=False,
            # A pooled connection the server has already closed fails its next command;
            # one immediate retry on a fresh connection tells that apart from an outage
            # (which fails the retry too), so orders do not fail closed for nothing.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
            health_check_interval=0,
        )
    except ValueError as exc:
        raise InvalidInput(f"--redis {shown_url(text)}: {exc}") from None
    return client


def publish_halt(url: Secret, name: str, at: datetime, origin: str) -> None:
    """Put a halt straight into the store (``keybroker halt --redis``); every gateway sees it.

    Raises CoordinationUnavailable when the store does not answer.
    """
    value = json.dumps({"at": at.isoformat(), "origin": origin})
    _with_store(url, lambda client: client.hsetnx(f"{NAMESPACE}:halts", name, value))


def lift_halt(url: Secret, name: str | None) -> None:
    """Remove a halt (None: every halt) from the store (``keybroker resume --redis``).

    Gateways whose own vault still holds that halt keep it. Raises
    CoordinationUnavailable when the store does not answer.
    """
    key = f"{NAMESPACE}:halts"
    _with_store(url, lambda client: client.delete(key) if name is None else client.hdel(key, name))


def _with_store(url: Secret, action: Callable[[SyncRedis], object]) -> None:
    text = url.reveal_text()
    if urlsplit(text).scheme not in ("redis", "rediss"):
        raise InvalidInput("--redis takes a redis:// or rediss:// URL (rediss: TLS)")
    try:
        with SyncRedis.from_url(text, socket_timeout=5, socket_connect_timeout=5) as client:
            action(client)
    except ValueError as exc:
        raise InvalidInput(f"--redis {shown_url(text)}: {exc}") from None
    except STORE_FAILURES as error:
        raise CoordinationUnavailable(
            f"coordination store unavailable ({shown_url(text)}: {type(error).__name__})"
        ) from None


class RedisCoordination:
    """The Redis-backed ``Coordination``; one per gateway process."""

    backend = "redis"

    def __init__(
        self,
        client: Redis,
        *,
        vault: Vault,
        clock: Clock,
        gateways: int = 1,
        shown: str = "redis",
        namespace: str = NAMESPACE,
    ) -> None:
        self.client = client
        self.health = StoreHealth(clock, probe_interval_s=_PROBE_S)
        self.gateways = gateways
        self.shown = shown
        self._vault = vault
        self._clock = clock
        self._ns = namespace
        self.origin = f"{socket.gethostname()}:{vault.path}"
        # The scripts on a request's way go over one pipelined connection (redis_link):
        # redis-py's per-call cost was most of what Redis added to an order.
        self.link = Link.of(client)
        script = self.link.script if self.link is not None else client.register_script
        self.script = script
        self._next_nonce = script(_NEXT_NONCE)
        self._admit = script(ADMIT_ORDER)
        self._uncount = script(_UNCOUNT)
        self._sync = script(_SYNC)
        self._limiter: RedisLimiter | None = None
        self._activity: SharedActivity | None = None
        self.shared_fetches: SharedFetches | None = RedisFetches(self)
        self._published_halts: set[str] = set()
        self._published_revocations: set[bytes] = set()
        self._tokens_version: int | None = None
        self._revoked_version = ""
        self._gateway: Gateway | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.health.listen(self._on_health)

    @classmethod
    def from_url(
        cls, url: Secret, *, vault: Vault, clock: Clock, gateways: int = 1
    ) -> RedisCoordination:
        """Connects lazily: the first command (in the gateway's event loop) opens the socket."""
        return cls(
            connect(url),
            vault=vault,
            clock=clock,
            gateways=gateways,
            shown=shown_url(url.reveal_text()),
        )

    def key(self, *parts: str) -> str:
        return ":".join((self._ns, *parts))

    # -- the Coordination interface ------------------------------------------------------------
    def limiter(self) -> Limiter:
        if self._limiter is None:
            self._limiter = RedisLimiter(
                self.client,
                clock=self._clock,
                gateways=self.gateways,
                health=self.health,
                namespace=self._ns,
                link=self.link,
            )
        return self._limiter

    def nonces(self) -> Nonces:
        return RedisNonces(self, self._vault)

    def activity(self, clock: Clock) -> Activity:
        self._activity = SharedActivity(clock, self)
        return self._activity

    async def start(self, gateway: Gateway) -> None:
        """Publish this host's halts and revocations, read everyone's, start the health probe."""
        self._gateway = gateway
        limiter = gateway.limiter
        if isinstance(limiter, RedisLimiter) and limiter.client is self.client:
            self._limiter = limiter  # one made for this store elsewhere: orders use it too
        await self.sync(gateway)  # a store down at start is alerted by the health listener
        self._monitor = asyncio.get_running_loop().create_task(
            self._probe(), name="keybroker-redis-probe"
        )

    @property
    def writes_at_once(self) -> bool:
        """Whether ``admit_order`` puts the admission on the wire before it returns (the
        link's plain-TCP socket, open): the caller need not let the loop turn for it."""
        return self.link is not None and self.link.writes_at_once

    def admit_order(
        self,
        credential: str,
        bot: str,
        charges: Sequence[Charge] = (),
        *,
        orders: int = 0,
        notional: Decimal = Decimal(0),
    ) -> Awaitable[Prepaid | None]:
        """Fresh halts and order counts for this order; CoordinationUnavailable if none come.

        In the same script, unless the credential is halted, ``orders`` and
        ``notional`` are counted for every gateway (so two gateways cannot
        each pass a limit by the other's order) and ``charges`` (the order's
        budgets) are taken when they all fit at once: one round trip to
        Redis for the order. The counts this gateway learns are those from
        before the order (what its policy compares with its limits). The
        ``Admission`` that says what was done is undone by ``refund`` if
        the policy then refuses the order; None when nothing was done.

        The script is sent when this returns (``writes_at_once``: already on
        the wire), so the caller may commit the order's intent row before
        awaiting the answer; await it exactly once, or what it counted is
        never given back. CoordinationUnavailable is raised here, unsent,
        while the store is known to be down.
        """
        self.unavailable_unless_up()
        now = self._clock.now_ms()
        keys = [
            self.key("halts"),
            self.key("orders", "credential", credential),
            self.key("orders", "bot", bot),
            self.key("notional", credential, str(now // _DAY_MS)),
        ]
        counted = str(notional) if notional else "0"
        order_id = secrets.token_hex(8) if orders > 0 else ""
        args: list[str | int | float] = [now, credential, orders, counted, order_id, 0]
        limiter = self._limiter
        offer = limiter.offer(charges) if limiter is not None and charges else None
        if offer is not None:
            keys += offer.keys
            args[5] = 1
            args += offer.args
        script = self._admit
        if isinstance(script, LinkScript):
            answer = script.start(keys, args)
        else:  # redis-py's Script: a task, so that it goes out as soon as the loop turns
            answer = asyncio.ensure_future(script(keys=keys, args=args))
        # What the script counts, should it count: ``refund`` takes it back.
        counts = Admission(
            (),
            now,
            keys=(keys[1], keys[2], keys[3]),
            order_id=order_id,
            orders=orders,
            notional=counted,
        )
        return self._admitted(answer, counts, credential, bot, offer)

    async def _admitted(
        self,
        sent: Awaitable[Any],
        counts: Admission,
        credential: str,
        bot: str,
        offer: Offer | None,
    ) -> Prepaid | None:
        """``admit_order``'s answer read: the halts and counts learned, and what was done
        (``counts`` with the budget, if taken; only the budget for a halted credential)."""
        try:
            answer = await sent
        except STORE_FAILURES as error:
            self.health.failed(error)
            self.unavailable_unless_up()
            raise
        self.health.succeeded()
        by_credential, by_bot, used, halts, taken = answer
        shared = _halts(halts)
        if self._gateway is not None:
            self._gateway.access.shared_halts = shared
        if self._activity is not None:
            self._activity.learn(
                credential, bot, int(by_credential), int(by_bot), used, counts.taken_ms
            )
        limiter = self._limiter
        prepaid = limiter.accepted(offer, taken) if offer is not None and limiter else None
        if credential in shared or "*" in shared or (counts.orders <= 0 and counts.notional == "0"):
            return prepaid  # nothing was counted (a halted credential takes no budget either)
        if prepaid is not None:  # when try_all took the budget
            counts.charges, counts.taken_ms = prepaid.charges, prepaid.taken_ms
        return counts

    def refund(self, prepaid: Prepaid) -> None:
        """Undo an admission whose order the policy refused: its budget and its counts."""
        if self._limiter is not None:
            self._limiter.refund(prepaid)
        if isinstance(prepaid, Admission) and not prepaid.uncounted:
            prepaid.uncounted = True
            self.spawn(self._send_uncount(prepaid))

    async def _send_uncount(self, admission: Admission) -> None:
        args: list[str | int] = [admission.order_id, admission.orders, admission.notional]
        try:
            await self._uncount(keys=list(admission.keys), args=args)
        except STORE_FAILURES as error:
            self.health.failed(error)

    async def sync(self, gateway: Gateway) -> None:
        """Publish new local halts (and lift resumed ones) and revocations; read everyone's."""
        if not self.health.should_try():
            return
        access = gateway.access
        local = access.local_halts
        publish = {name: at for name, at in local.items() if name not in self._published_halts}
        lifted = sorted(self._published_halts - set(local))
        revoked: list[bytes] = []
        version = self._vault.tokens_version()
        if version != self._tokens_version:
            revoked = [
                digest
                for digest in self._vault.revoked_token_hashes()
                if digest not in self._published_revocations
            ]
        args: list[str | int] = [len(publish)]
        for name, at in publish.items():
            args += [name, json.dumps({"at": at.isoformat(), "origin": self.origin})]
        args += [len(lifted), *lifted, *(digest.hex() for digest in revoked)]
        args.append(self._revoked_version)
        keys = [self.key("halts"), self.key("revoked"), self.key("revoked", "version")]
        try:
            halts, revoked_version, members = await self._sync(keys=keys, args=args)
        except STORE_FAILURES as error:
            self.health.failed(error)
            return
        self.health.succeeded()
        self._published_halts = (self._published_halts | set(publish)) - set(lifted)
        self._published_revocations.update(revoked)
        self._tokens_version = version
        access.shared_halts = _halts(halts)
        if members:
            access.shared_revocations = frozenset(bytes.fromhex(_text(m)) for m in members)
        self._revoked_version = _text(revoked_version)
        if self._limiter is not None:
            await self._limiter.refresh()

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        if self._limiter is not None:
            await self._limiter.close()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        with contextlib.suppress(*STORE_FAILURES):
            if self.link is not None:
                await self.link.close()
            await self.client.aclose()

    def describe(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "store": self.shown,
            "available": self.health.up,
            "since": datetime.fromtimestamp(self.health.changed_ms / 1000, tz=UTC).isoformat(),
            "gateways": self.gateways,
            "last_error": self.health.last_error or None,
        }

    # -- health ------------------------------------------------------------------------------
    @property
    def answering(self) -> bool:
        """Whether Redis answered its last call (False while it is known to be down)."""
        return self.health.up

    def unavailable_unless_up(self) -> None:
        if not self.health.should_try():
            raise CoordinationUnavailable(
                f"coordination store unavailable ({self.shown}): new orders are refused "
                "until it answers, since shared limits and halts cannot be honoured"
            )

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_S)
            if self.health.up:
                continue
            try:
                await self.client.ping()
            except STORE_FAILURES as error:
                self.health.failed(error)
                continue
            self.health.succeeded()

    def _on_health(self, up: bool) -> None:
        self._alert(up)
        if up:
            # Redis may have lost everything: publish this host's state again.
            self._published_halts.clear()
            self._published_revocations.clear()
            self._tokens_version = None
            self._revoked_version = ""
            if self._gateway is not None:
                self.spawn(self.sync(self._gateway))

    def _alert(self, up: bool) -> None:
        gateway = self._gateway
        if up:
            log.warning("coordination store %s answers again", self.shown)
        else:
            log.error(
                "coordination store unavailable (%s): orders refused, reads on 1/%d of each "
                "budget (%s)",
                self.shown,
                self.gateways,
                self.health.last_error,
            )
        if gateway is not None:
            gateway.metrics.count("keybroker_coordination_changes_total", up=str(up).lower())
            gateway.alert(
                "CoordinationRestored" if up else "CoordinationUnavailable",
                store=self.shown,
                error=None if up else self.health.last_error,
            )

    def spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@dataclass(slots=True)
class Admission(Prepaid):
    """What ``ADMIT_ORDER`` did for an order: its budget (``Prepaid``; ``charges`` empty when
    none was taken) and its counts, which ``RedisCoordination.refund`` takes back."""

    keys: tuple[str, str, str] = ("", "", "")
    """The credential's and the bot's order counts and the day's notional."""
    order_id: str = ""
    orders: int = 0
    notional: str = "0"
    uncounted: bool = False


class SharedActivity(Activity):
    """Order counts as Redis last told them (``admit_order``), plus what was recorded since.

    An order's admission counted it in Redis already (``ADMIT_ORDER``), and
    told this gateway the counts from just before it; ``record`` adds it to
    the local view, so requests arriving together on this gateway still
    share one limit. The pipeline admits an order right before its policy
    decides and records it right after, with no wait in between, so no
    other admission's counts (which include this order) come between.
    """

    def __init__(self, clock: Clock, coordination: RedisCoordination) -> None:
        super().__init__(clock)
        self._coordination = coordination
        self._learned: dict[tuple[str, str], tuple[int, int]] = {}  # (kind, name) -> (count, ms)
        self._notional_learned: dict[str, tuple[int, Decimal]] = {}

    def learn(
        self, credential: str, bot: str, by_credential: int, by_bot: int, notional: Any, now: int
    ) -> None:
        self._learned[("credential", credential)] = (by_credential, now)
        self._learned[("bot", bot)] = (by_bot, now)
        try:
            used = Decimal(_text(notional))
        except InvalidOperation:
            used = Decimal(0)
        self._notional_learned[credential] = (now // _DAY_MS, used)

    def orders_last_minute(self, credential: str) -> int:
        return self._shared("credential", credential, super().orders_last_minute(credential))

    def bot_orders_last_minute(self, bot: str) -> int:
        return self._shared("bot", bot, super().bot_orders_last_minute(bot))

    def daily_notional(self, credential: str) -> Decimal:
        local = super().daily_notional(credential)
        day, shared = self._notional_learned.get(credential, (-1, Decimal(0)))
        return max(local, shared) if day == self._clock.now_ms() // _DAY_MS else local

    def record(
        self,
        credential: str,
        bot: str,
        *,
        orders: int,
        notional: Decimal,
        at_ms: int | None = None,
    ) -> None:
        super().record(credential, bot, orders=orders, notional=notional, at_ms=at_ms)
        if at_ms is not None:  # rebuilding this gateway's view from its audit log
            return
        now = self._clock.now_ms()
        for kind, name in (("credential", credential), ("bot", bot)):
            count, at = self._learned.get((kind, name), (0, now))
            self._learned[(kind, name)] = (count + orders, at)
        day, shared = self._notional_learned.get(credential, (now // _DAY_MS, Decimal(0)))
        self._notional_learned[credential] = (day, shared + notional)

    def _shared(self, kind: str, name: str, local: int) -> int:
        count, at = self._learned.get((kind, name), (0, 0))
        # A count read more than a minute ago says nothing about this minute.
        fresh = self._clock.now_ms() - at < _MINUTE_MS
        return max(local, count) if fresh else local


class RedisNonces:
    """Nonces strictly increasing across all gateways on a store, never below this vault's mark."""

    def __init__(self, coordination: RedisCoordination, vault: Vault, block: int = BLOCK) -> None:
        self._coordination = coordination
        self._vault = vault
        self._block = block
        self._floor: dict[str, int] = {}
        self._ceiling: dict[str, int] = {}
        self._lock = asyncio.Lock()

    async def next(self, key: str, now_ms: int) -> int:
        """The next nonce for ``key``; CoordinationUnavailable while Redis does not answer."""
        coordination = self._coordination
        coordination.unavailable_unless_up()
        async with self._lock:
            floor = self._floor.get(key)
            if floor is None:
                floor = await asyncio.to_thread(self._vault.nonce_ceiling, key) or 0
            try:
                answer = await coordination._next_nonce(
                    keys=[coordination.key("nonce", key)], args=[now_ms, floor, RESTART_JUMP_MS]
                )
            except STORE_FAILURES as error:
                coordination.health.failed(error)
                coordination.unavailable_unless_up()
                raise
            coordination.health.succeeded()
            value = int(_text(answer))
            ceiling = self._ceiling.get(key)
            if ceiling is None or value >= ceiling:
                # Durable before use: after a restart or a Redis that lost its data,
                # this host never goes below what it may have sent.
                ceiling = await asyncio.to_thread(
                    self._vault.reserve_nonces, key, value, self._block
                )
                self._ceiling[key] = ceiling
            self._floor[key] = value + 1
            return value


class RedisFetches:
    """Identical public GETs on several gateways: one claims and fetches, the others wait for it."""

    def __init__(self, coordination: RedisCoordination) -> None:
        self._coordination = coordination
        self._claim = coordination.script(_CLAIM)
        self._finish = coordination.script(_FINISH)
        self.shared = 0
        """Answers taken from another gateway's fetch (a metric)."""

    async def run(self, key: Hashable, fetch: Callable[[], Awaitable[T]], keep_ms: int) -> T:
        coordination = self._coordination
        if not coordination.health.up:
            return await fetch()
        digest = hashlib.sha256(repr(key).encode("utf-8", "replace")).hexdigest()[:32]
        claim = coordination.key("fetch", digest)
        recent = coordination.key("fetch", digest, "recent")
        token = secrets.token_hex(8)
        try:
            answer = await self._claim(keys=[claim, recent], args=[token, _CLAIM_MS])
        except STORE_FAILURES as error:
            coordination.health.failed(error)
            return await fetch()
        state = _text(answer[0])
        if state == "recent":
            shared = _decode(answer[1])
            if shared is not None:
                self.shared += 1
                return shared  # type: ignore[return-value]
            return await fetch()
        if state == "wait":
            shared = await self._wait(claim, _text(answer[1]))
            if shared is not None:
                self.shared += 1
                return shared  # type: ignore[return-value]
            return await fetch()
        encoded = b"-"  # no answer to share: the waiters fetch for themselves
        try:
            result = await fetch()
            if isinstance(result, Received):
                encoded = _encode(result)
            return result
        finally:
            try:
                await self._finish(
                    keys=[claim, coordination.key("fetch", digest, token), recent],
                    args=[token, encoded, keep_ms],
                )
            except STORE_FAILURES as error:
                coordination.health.failed(error)

    async def _wait(self, claim: str, owner: str) -> Received | None:
        """The owner's answer, or None if it gave none (a failure) or the store went away."""
        client = self._coordination.client
        result_key = f"{claim}:{owner}"
        pause = 0.001
        deadline = time.monotonic() + _CLAIM_MS / 1000
        while time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(0.01, pause * 1.5)
            try:
                done, still = await client.mget([result_key, claim])
            except STORE_FAILURES as error:
                self._coordination.health.failed(error)
                return None
            if done is not None:
                return _decode(done)
            if still is None or _text(still) != owner:
                return None  # finished without an answer for us, or the claim expired
        return None


def _encode(received: Received) -> bytes:
    head = json.dumps(
        {"status": received.status, "headers": received.headers, "ms": received.elapsed_ms}
    ).encode()
    return head + b"\n" + received.raw


def _decode(data: Any) -> Received | None:
    if not isinstance(data, bytes) or data == b"-":
        return None
    head, _, raw = data.partition(b"\n")
    try:
        fields = json.loads(head)
        headers = tuple((str(name), str(value)) for name, value in fields["headers"])
        return Received(int(fields["status"]), headers, raw, float(fields["ms"]))
    except (ValueError, KeyError, TypeError):
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _halts(flat: Any) -> dict[str, datetime]:
    """HGETALL's flat [name, value, ...] as {name: since}; an unreadable one is still a halt."""
    items = [_text(item) for item in flat or []]
    halts: dict[str, datetime] = {}
    for name, value in zip(items[::2], items[1::2], strict=True):
        try:
            halts[name] = datetime.fromisoformat(json.loads(value)["at"])
        except (ValueError, KeyError, TypeError):
            halts[name] = datetime.fromtimestamp(0, tz=UTC)  # a kill switch fails closed
    return halts
