"""Step 7 for credentials whose key lives in OpenBao: sign on the event loop, batched, or 503.

    >>> remote = await RemoteKeys.start(connection, home, alert=gateway.alert, timeout_s=5)
    >>> signed = await remote.sign(profile, request, credential, now_ms=now, nonce=nonce)

The exchange signer is the same synchronous function as for a local key. It
runs on the event loop in two passes (``openbao.two_pass``): once to learn
what it asks OpenBao to sign, once more with the answers, which the
``Batcher`` fetched in between (one transit call for every request of a
burst that waits on the same key, and none of waiting when nothing else is
in flight). ``now_ms`` and ``nonce`` are pinned for both passes; a profile
without nonces of its own gets a random 256-bit one, the only randomness a
signer may use (Coinbase's JWT nonce; others ignore it), so that its second
pass asks the very same thing. A signer that still asks something else is
run once more in a worker thread with a ``ThreadSigner``, as before.

When OpenBao cannot sign, the request fails with ``KeyStoreUnavailable``
(503) and an ``openbao_unavailable`` alert goes out once per outage; there
is no local copy to fall back on, by design.

``SignAhead`` starts step 7 for such a key while step 6 (the durable intent
row: an fsync) is still under way, so that OpenBao's round trip overlaps it
instead of adding to it. The signed request is only used, and so only
leaves, after the intent row is durable, as ARCHITECTURE's "audit before
action" requires; if the row fails it is dropped unsent. A signature made
more than ``FRESH_S`` before it would be sent is dropped too and made anew,
so a slow disk cannot make the exchange see a stale timestamp.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx

from keybroker.crypto.keys import RemoteKey, RemoteSigner
from keybroker.errors import KeyStoreError, KeyStoreUnavailable
from keybroker.exchanges import ExchangeProfile
from keybroker.model import Credential
from keybroker.openbao import AsyncOpenBao, Batcher, Connection, Session, ThreadSigner
from keybroker.openbao import connection as connection_file
from keybroker.openbao.two_pass import sign_in_two_passes

T = TypeVar("T")

log = logging.getLogger("keybroker.gateway")

Alert = Callable[..., None]
Build = Callable[[], Awaitable[httpx.Request]]

FRESH_S = 1.0
"""A request signed ahead is sent only if signed at most this long before (else signed anew)."""


class RemoteKeys:
    """The gateway's OpenBao: its session, the batcher and the outage state for alerts."""

    def __init__(
        self,
        session: Session | None,
        batcher: Batcher | None,
        signer: ThreadSigner | None,
        alert: Alert,
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self.session = session
        self.batcher = batcher
        self._signer = signer
        self._alert = alert
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.threaded = 0
        """Requests whose signer did not replay and were signed in a worker thread."""
        self._unreplayable: set[str] = set()

    @classmethod
    def absent(cls, alert: Alert) -> RemoteKeys:
        """For a gateway with no ``openbao.json``: remote credentials answer 503, saying why."""
        return cls(None, None, None, alert)

    @classmethod
    async def start(
        cls,
        connection: Connection,
        home: Path | None,
        *,
        alert: Alert,
        timeout_s: float,
    ) -> RemoteKeys:
        """Log in (or keep trying in the background) and start renewing the token."""
        client = AsyncOpenBao(connection.addr, ca_cert=connection.ca_path, timeout_s=timeout_s)

        def spent() -> None:
            if home is not None:
                _forget_wrapping_token(home, connection)

        session = Session(connection, client, on_spent=spent, alert=alert)
        batcher = Batcher(session, connection.mount)
        signer = ThreadSigner(batcher, asyncio.get_running_loop(), timeout_s=timeout_s)
        remote = cls(session, batcher, signer, alert, timeout_s=timeout_s)
        try:
            await session.start()
        except KeyStoreError as error:
            log.warning("OpenBao: %s", error)
            alert("openbao_unavailable", detail=str(error))
            remote._failing = True
        remote._task = asyncio.get_running_loop().create_task(
            session.run(), name="keybroker-openbao-session"
        )
        return remote

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.session is not None:
            await self.session.client.aclose()

    @property
    def state(self) -> str:
        """ "absent", "ready" or the reason it cannot sign."""
        if self.session is None:
            return "absent"
        return "ready" if self.session.is_ready else (self.session.problem or "not ready")

    def status(self) -> dict[str, object]:
        """For /_/status: the state, and how many signatures took how many transit calls."""
        batcher = self.batcher
        wire = None if self.session is None else self.session.client.wire
        return {
            "state": self.state,
            "addr": None if self.session is None else self.session.connection.addr,
            "transit_calls": 0 if batcher is None else batcher.calls,
            "signatures": 0 if batcher is None else batcher.signatures,
            "connections": 0 if wire is None else wire.connections_opened,
            "threaded": self.threaded,
        }

    def _note_unreplayable(self, exchange: str) -> None:
        self.threaded += 1
        if exchange not in self._unreplayable:  # once per exchange: a signer to look at
            self._unreplayable.add(exchange)
            log.warning(
                "the %s signer asked OpenBao for something else on its second pass; its "
                "requests are signed in a worker thread (slower, still correct)",
                exchange,
            )

    async def sign(
        self,
        profile: ExchangeProfile,
        request: httpx.Request,
        credential: Credential,
        *,
        now_ms: int,
        nonce: int | None,
    ) -> httpx.Request:
        """``profile.sign`` with the key in OpenBao; KeyStoreError/Unavailable (503) otherwise."""
        if nonce is None and not profile.uses_nonce:
            nonce = secrets.randbits(256)  # pinned for both passes; see the module docstring

        def sign(bound: Credential) -> httpx.Request:
            return profile.sign(request, bound, now_ms=now_ms, nonce=nonce)

        return await self.run(profile.name, credential, sign)

    async def run(
        self, exchange: str, credential: Credential, work: Callable[[Credential], T]
    ) -> T:
        """``work(credential)`` with the credential's key in OpenBao, for any signer of
        ``exchange`` (REST requests, WebSocket logins and frames).

        ``work`` must be deterministic: it runs twice (see ``sign_in_two_passes``).
        KeyStoreError/Unavailable (503) when OpenBao cannot sign.
        """
        key = credential.secret
        assert isinstance(key, RemoteKey)
        if self._signer is None:
            raise KeyStoreUnavailable(
                f"the key of {credential.name} is in OpenBao, and this gateway is not connected "
                "to it: run `keybroker openbao setup` and restart the gateway"
            )

        def run(signer: RemoteSigner) -> T:
            return work(credential.replace(secret=key.bind(signer)))

        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    assert self.batcher is not None
                    signed = await sign_in_two_passes(run, self.batcher)
                    if signed is None:  # the signer asked something else the second time
                        self._note_unreplayable(exchange)
                        signed = await asyncio.to_thread(run, self._signer)
            except TimeoutError:
                raise KeyStoreUnavailable(
                    f"OpenBao did not sign within {self._timeout_s:g} s"
                ) from None
        except KeyStoreError as error:
            if not self._failing:
                self._failing = True
                log.error("OpenBao cannot sign for %s: %s", credential.name, error)
                self._alert("openbao_unavailable", credential=credential.name, detail=str(error))
            raise
        if self._failing:
            self._failing = False
            log.info("OpenBao signs again")
            self._alert("openbao_recovered", credential=credential.name)
        return signed


def _forget_wrapping_token(home: Path, used: Connection) -> None:
    # Only if the file still holds the token this gateway used: a rerun of
    # setup meanwhile wrote a fresh one, which must stay for the next start.
    try:
        current = connection_file.load(home)
        if current is not None and current.wrapped_secret_id == used.wrapped_secret_id:
            connection_file.spend_secret_id(home, current)
    except Exception as exc:  # the login matters more than tidying the file
        log.warning("could not remove the used secret id from openbao.json: %s", type(exc).__name__)


class SignAhead:
    """The ``upstream.Build`` of a request whose first signature was started early.

    >>> ahead = SignAhead(lambda: sign(gateway, job, job.request))   # before the intent row
    >>> intent_id = await gateway.write_now(...)                     # OpenBao answers meanwhile
    >>> outcome = await gateway.upstream.send(ahead, retry=...)      # attempt 1: that signature

    Later attempts (retried reads) sign anew, as without it. ``discard`` drops
    a signature that must not be sent (the intent row failed).
    """

    def __init__(self, build: Build) -> None:
        self._build = build
        self._started = time.monotonic()
        self._early: asyncio.Future[httpx.Request] | None = asyncio.ensure_future(build())

    async def __call__(self) -> httpx.Request:
        early, self._early = self._early, None
        if early is None:
            return await self._build()
        if time.monotonic() - self._started <= FRESH_S:
            return await early
        _drop(early)
        return await self._build()

    def discard(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            _drop(early)


def _drop(early: asyncio.Future[httpx.Request]) -> None:
    if not early.done():
        early.cancel()
    elif not early.cancelled():
        early.exception()  # seen: its error (if any) was alerted where it happened
