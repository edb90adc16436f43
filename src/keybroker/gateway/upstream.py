"""Talking to exchanges: one pooled httpx client, hop-by-hop headers removed, careful retries.

    >>> upstream = Upstream(client, timeout_s=30, retries=2, backoff_s=0.2)
    >>> outcome = await upstream.send(build, retry=True)     # Received, or Failure

``send`` takes a coroutine function that builds (and signs) the request, and
calls it again for each attempt, so a retried read carries a fresh timestamp
and nonce. Only idempotent reads are retried (on 5xx and network failures,
with backoff and jitter); anything else is sent exactly once. A failure says
whether the request may have reached the exchange: a refused connection
means it did not, a timeout or dropped connection means it may have, and for
an order the pipeline then looks it up by its client order id.

The exchange's body is kept as it came off the wire (compressed if the bot
asked for compression), so the bot gets exactly the exchange's bytes;
``Received.content()`` decodes it when the gateway itself must read it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never forwarded from a bot: our token and any auth it carries (signers set
# their own), framing that is recomputed, the gateway's own host, and what
# only a browser sends or a proxy adds.
_DROP_FROM_BOT = HOP_BY_HOP | {
    "host",
    "content-length",
    "x-keybroker-token",
    "authorization",
    "cookie",
    "origin",
    "referer",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
}
# Dropped from an exchange's answer: hop-by-hop, and the length (recomputed).
_DROP_FROM_EXCHANGE = HOP_BY_HOP | {"content-length"}
RETRY_STATUSES = frozenset({500, 502, 503, 504})


def _connection_named(headers: Iterable[tuple[str, str]]) -> set[str]:
    # RFC 9110 7.6.1: headers named in Connection are hop-by-hop too.
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named


def forwardable_request_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A bot's headers less hop-by-hop ones, our token, auth fields, host and framing."""
    items = list(headers)
    dropped = _DROP_FROM_BOT | _connection_named(items)
    return [(name, value) for name, value in items if name.lower() not in dropped]


def forwardable_response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """An exchange's headers less hop-by-hop ones and Content-Length."""
    items = list(headers)
    dropped = _DROP_FROM_EXCHANGE | _connection_named(items)
    return [(name, value) for name, value in items if name.lower() not in dropped]


@dataclass(frozen=True, slots=True)
class Received:
    """An exchange's answer: status, headers (hop-by-hop removed) and the body as sent."""

    status: int
    headers: tuple[tuple[str, str], ...]
    raw: bytes
    elapsed_ms: float

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_map(self) -> dict[str, str]:
        return {key.lower(): value for key, value in self.headers}

    def content(self) -> bytes:
        """The body decoded (gzip, deflate, br as httpx knows them); the raw body if it cannot."""
        if self.header("content-encoding") is None:
            return self.raw
        try:
            return httpx.Response(self.status, headers=self.headers, content=self.raw).read()
        except httpx.DecodingError:
            return self.raw


@dataclass(frozen=True, slots=True)
class Failure:
    """No answer; ``may_have_arrived``: the exchange may have received (and acted on) it."""

    reason: str
    may_have_arrived: bool
    elapsed_ms: float


Build = Callable[[], Awaitable[httpx.Request]]


class Upstream:
    """Sends built requests through one keep-alive pool; TLS verification stays on."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float,
    ) -> None:
        self._client = client
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        self._retries = retries
        self._backoff_s = backoff_s

    async def send(self, build: Build, *, retry: bool) -> Received | Failure:
        """Send once, or up to 1 + retries times when ``retry`` (idempotent reads only)."""
        attempts = 1 + (self._retries if retry else 0)
        outcome: Received | Failure = Failure("not sent", False, 0.0)
        for attempt in range(attempts):
            if attempt:
                delay = self._backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311
                await asyncio.sleep(delay)
            outcome = await self.send_once(await build())
            if isinstance(outcome, Received) and outcome.status not in RETRY_STATUSES:
                return outcome
        return outcome

    async def send_once(self, request: httpx.Request) -> Received | Failure:
        """One request, one answer or one Failure; never raises for network trouble."""
        # A request built outside client.build_request carries no timeout of its own.
        request.extensions["timeout"] = self._timeout
        started = time.perf_counter()
        try:
            response = await self._client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Failure(_reason(exc), False, _since(started))
        except httpx.TransportError as exc:
            return Failure(_reason(exc), True, _since(started))
        headers = tuple(forwardable_response_headers(response.headers.multi_items()))
        return Received(response.status_code, headers, raw, _since(started))


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _reason(exc: httpx.TransportError) -> str:
    # Our own words: httpx's messages can quote the URL, and a URL can carry a query.
    if isinstance(exc, httpx.TimeoutException):
        return "the exchange did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "the exchange refused the connection or could not be reached"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the exchange closed the connection without an answer"
    return "the connection to the exchange failed"
