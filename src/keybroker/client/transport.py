"""HTTP for the adapters: signing through the profile, the clock offset, retries and back-off.

    >>> transport = Transport(profile, credential, base_url, time_call, parse_time)
    >>> reply = transport.request(Call("GET", "/api/v3/klines", (("symbol", "BTCUSDT"),)))
    >>> reply.data[0][0]          # parsed JSON, decimals as Decimal

Exchange-neutral: the adapter modules describe each request as a ``Call``
(plain data), the profile signs it and reads error bodies into the typed
UpstreamError tree, and this module only moves bytes and decides what may be
tried again:

- **reads** (``idempotent=True``) are retried on 5xx, timeouts and dropped
  connections, with exponential back-off and jitter, ``RetryPolicy.tries`` times;
- **orders** (``idempotent=False``) are sent once; what to do after an
  ambiguous failure is the adapter's business (it looks the order up);
- a **429** holds every request back until its ``Retry-After`` has passed:
  reads wait (up to ``max_retry_after``), orders fail at once without being sent;
- a **418** (IP ban) raises IPBanned with the ban's end and retries nothing, and
  nothing more is sent until the ban is over;
- a **timestamp refusal** (the exchange checked our clock before acting) re-measures
  the clock offset and, for reads, tries again.

TLS verification is always on (there is no switch), and the config allows
plain http only to loopback hosts.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from keybroker.client.calls import Call, Reply, RetryPolicy
from keybroker.client.errors import UNSUPPORTED
from keybroker.clock import Clock
from keybroker.errors import (
    AuthenticationFailed,
    ExchangeError,
    ExchangeUnavailable,
    GatewayDenied,
    InvalidInput,
    IPBanned,
    NetworkError,
    RateLimitedUpstream,
    TimestampOutsideWindow,
    UpstreamError,
)
from keybroker.exchanges.base import ExchangeProfile
from keybroker.model import Credential
from keybroker.secret import Secret

Sleep = Callable[[float], None]


class Transport:
    """Sends Calls for one credential; thread-safe, one connection pool."""

    def __init__(
        self,
        profile: ExchangeProfile,
        credential: Credential,
        base_url: Callable[[str], str],
        time_call: Call,
        parse_time: Callable[[Any], int],
        *,
        timeout: float,
        retry: RetryPolicy,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random | None = None,
        headers: tuple[tuple[str, Secret], ...] = (),
    ) -> None:
        self.profile = profile
        self.retry = retry
        self.clock = clock
        self.sleep = sleep
        self._credential = credential
        self._base_url = base_url
        self._time_call = time_call
        self._parse_time = parse_time
        # Sent with every request before signing (a gateway's bot token); the
        # signers replace only their own auth fields, so these pass untouched.
        self._headers = headers
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._lock = threading.Lock()
        self._offset_ms: int | None = None
        self.rtt_ms = 0
        # Local clock ms before which nothing is sent (429), and the ban (418).
        self._hold_until_ms = 0
        self._ban: IPBanned | None = None
        self._ban_until_local_ms = 0
        # verify=True is spelled out: TLS verification is not configurable.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), verify=True)

    def close(self) -> None:
        self._http.close()

    # -- the clock -----------------------------------------------------------------------
    def now_ms(self, *, sync: bool = True) -> int:
        """The exchange's time as we best know it: local clock + measured offset.

        The first call measures the offset (one request) unless ``sync`` is False,
        which then answers with the local clock.
        """
        offset = self._offset_ms
        if offset is None:
            if not sync:
                return self.clock.now_ms()
            self.sync_time()
            offset = self._offset_ms or 0
        return self.clock.now_ms() + offset

    def sync_time(self) -> int:
        """Ask the exchange for its time, store the offset, return the server time (ms).

        The offset is taken against the midpoint of the round trip, so it is off
        by at most half the round trip time (kept as ``rtt_ms``).
        """
        before = self.clock.now_ms()
        reply = self.request(self._time_call)
        after = self.clock.now_ms()
        server_ms = self._parse_time(reply.data)
        with self._lock:
            self._offset_ms = server_ms - (before + after) // 2
            self.rtt_ms = max(0, after - before)
        return server_ms

    # -- requests ------------------------------------------------------------------------
    def request(self, call: Call, *, now_ms: int | None = None, idempotent: bool = True) -> Reply:
        """Send ``call``; retry it only if ``idempotent``. Raises the profile's UpstreamError.

        ``now_ms`` is the signing time for a non-idempotent call (the adapter
        needs it to know how long the exchange may still act on it); reads are
        signed with a fresh time on every try.
        """
        tries = self.retry.tries if idempotent else 1
        resynced = False
        attempt = 0
        while True:
            self._hold_back(idempotent)
            try:
                stamp = now_ms if (now_ms is not None and attempt == 0) else None
                return self._send(call, stamp)
            except IPBanned as exc:
                self._remember_ban(exc)
                raise
            except RateLimitedUpstream as exc:
                wait = exc.retry_after if exc.retry_after is not None else self.retry.backoff
                with self._lock:
                    self._hold_until_ms = max(
                        self._hold_until_ms, self.clock.now_ms() + int(wait * 1000)
                    )
                attempt += 1
                if attempt >= tries or wait > self.retry.max_retry_after:
                    raise
            except TimestampOutsideWindow:
                # Refused before being acted on, so even an order could be resent;
                # the adapter decides that for orders. One re-measure per request.
                if resynced or not idempotent or call is self._time_call:
                    raise
                resynced = True
                self.sync_time()
            except ExchangeUnavailable:
                attempt += 1
                if attempt >= tries:
                    raise
                self.sleep(self.retry.delay(attempt, self._rng))

    def _hold_back(self, idempotent: bool) -> None:
        now = self.clock.now_ms()
        if self._ban is not None and now < self._ban_until_local_ms:
            ban = self._ban
            raise IPBanned(
                f"{ban.message} (not sent: still banned)",
                exchange=ban.exchange,
                code=ban.code,
                status=ban.status,
                retry_after=(self._ban_until_local_ms - now) / 1000,
                ban_until_ms=ban.ban_until_ms,
            )
        wait_ms = self._hold_until_ms - now
        if wait_ms <= 0:
            return
        if idempotent and wait_ms <= self.retry.max_retry_after * 1000:
            self.sleep(wait_ms / 1000)
            return
        raise RateLimitedUpstream(
            f"{self.profile.name} asked us to wait {wait_ms / 1000:.1f} s more "
            "(Retry-After); not sent",
            exchange=self.profile.name,
            status=429,
            retry_after=wait_ms / 1000,
        )

    def _remember_ban(self, ban: IPBanned) -> None:
        now = self.clock.now_ms()
        if ban.retry_after is not None:
            until = now + int(ban.retry_after * 1000)
        elif ban.ban_until_ms is not None:
            until = ban.ban_until_ms - (self._offset_ms or 0)
        else:
            until = now + 120_000  # Binance's shortest ban, when it says nothing
        with self._lock:
            self._ban = ban
            self._ban_until_local_ms = max(self._ban_until_local_ms, until)

    def _send(self, call: Call, now_ms: int | None) -> Reply:
        request = self._build(call)
        if call.signed:
            stamp = now_ms if now_ms is not None else self.now_ms()
            request = self.profile.sign(request, self._credential, now_ms=stamp)
        name = self.profile.name
        try:
            response = self._http.send(request)
        except httpx.TimeoutException as exc:
            raise NetworkError(
                f"{name}: no answer to {call.method} {call.path} in time "
                f"({type(exc).__name__}); the outcome is unknown",
                exchange=name,
            ) from exc
        except httpx.TransportError as exc:
            raise NetworkError(
                f"{name}: {call.method} {call.path} failed on the connection "
                f"({type(exc).__name__}); the outcome is unknown",
                exchange=name,
            ) from exc
        content = response.content
        refused = response.headers.get(GATEWAY_ERROR_HEADER)
        if refused is not None:
            raise gateway_error(name, response.status_code, refused, content, response.headers)
        error = self.profile.map_error(response.status_code, content, response.headers)
        if error is not None:
            raise error
        try:
            data = json.loads(content, parse_float=Decimal)
        except ValueError:
            data = _NOT_JSON
        if data is _NOT_JSON or not 200 <= response.status_code < 300:
            # An answer we cannot read says nothing about what happened.
            raise ExchangeUnavailable(
                f"{name}: {call.method} {call.path} answered HTTP {response.status_code} "
                "with a body that is not JSON; the outcome is unknown",
                exchange=name,
                status=response.status_code,
            )
        return Reply(content, data, response.status_code)

    def _build(self, call: Call) -> httpx.Request:
        try:
            url = self._base_url(call.path) + call.path
        except InvalidInput as exc:
            # The profile has no host for this path here (Binance serves no /sapi on its testnet).
            raise ExchangeError(exc.message, code=UNSUPPORTED, exchange=self.profile.name) from None
        headers = [(name, value.reveal_text()) for name, value in self._headers]
        headers.extend(call.headers)
        content: bytes | None = None
        if call.form:
            content = urlencode(call.params, quote_via=quote).encode("ascii")
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        elif call.params:
            url += "?" + urlencode(call.params, quote_via=quote)
        if call.json is not None:
            content = json.dumps(call.json, separators=(",", ":")).encode("utf-8")
            headers.append(("Content-Type", "application/json"))
        return httpx.Request(call.method, url, headers=headers, content=content)


_NOT_JSON: Any = object()

# The keybroker gateway marks its own answers (as opposed to the exchange's, which it
# passes on unchanged) with this header; the exchange profile cannot read them.
GATEWAY_ERROR_HEADER = "x-keybroker-error"
_GATEWAY_UNAVAILABLE = frozenset(
    {"upstream_unreachable", "upstream_unavailable", "not_ready", "vault_locked",
     "audit_unavailable", "internal_error"}
)  # fmt: skip


def gateway_error(
    exchange: str, status: int, error: str, content: bytes, headers: httpx.Headers
) -> UpstreamError:
    """The gateway's own refusal as the adapters' typed error, its rule and detail in the text.

    A denial or a bad token was decided before anything left the machine; a 429 is
    the gateway's queue deadline (also nothing sent); the rest say the gateway or
    the exchange behind it is unavailable, which for an order means "look it up".
    """
    try:
        document = json.loads(content)
    except ValueError:
        document = None
    detail = ""
    if isinstance(document, dict):
        rule = document.get("rule")
        detail = (f"{rule}: " if rule else "") + str(document.get("detail", ""))
    message = f"{exchange} via the keybroker gateway: {error} (HTTP {status}) {detail}".rstrip()
    if error == "bad_token":
        return AuthenticationFailed(message, exchange=exchange, code=error, status=status)
    if error == "rate_limited":
        try:
            wait: float | None = float(headers.get("retry-after", ""))
        except ValueError:
            wait = None
        return RateLimitedUpstream(
            message, exchange=exchange, code=error, status=status, retry_after=wait
        )
    if error in _GATEWAY_UNAVAILABLE or status >= 500:
        return ExchangeUnavailable(message, exchange=exchange, code=error, status=status)
    return GatewayDenied(message, exchange=exchange, code=error, status=status)


# httpx logs every request URL at INFO, and a Binance GET carries its signature
# in the query: a replayable request for as long as recvWindow. The filter
# redacts it in httpx's own log records (for every httpx user in the process,
# which only ever loses a signature).
_SIGNATURE = re.compile(r"(signature=)[^&\s\"]+", re.IGNORECASE)


class _RedactSignatures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _SIGNATURE.sub(r"\1<redacted>", str(arg))
                if isinstance(arg, httpx.URL | str) and "ignature=" in str(arg)
                else arg
                for arg in record.args
            )
        return True


def _install_log_filter() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactSignatures) for f in logger.filters):
        logger.addFilter(_RedactSignatures())


_install_log_filter()
