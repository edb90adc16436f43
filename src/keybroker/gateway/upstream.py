"""Talking to exchanges: one keep-alive pool, hop-by-hop headers removed, careful retries.

    >>> upstream = Upstream(timeout_s=30, retries=2, backoff_s=0.2)   # inside the event loop
    >>> outcome = await upstream.send(build, retry=True)     # Received, or Failure
    >>> await upstream.aclose()

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

Requests are built, classified and signed as ``httpx.Request`` objects (the
exchange profiles speak httpx); the wire is aiohttp's client, which costs
about a fifth of httpx's CPU per request (and skips its pool's per-request
socket checks). What goes out is
exactly the built request: its raw path and query bytes, its headers (none
added: no User-Agent, Accept or Content-Type of the client's own), its body.
The pool is bounded, TLS is verified against the same CA bundle httpx uses,
redirects are never followed (a redirect would carry a signed request
somewhere the policy never judged), no cookie is kept, and the environment's
proxy variables apply as they did with httpx (but never ``.netrc``).
"""

from __future__ import annotations

import asyncio
import functools
import random
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import aiohttp
import httpx
from yarl import URL

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

# What aiohttp would add on its own; the request goes out as it was built and signed.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# Recomputed by aiohttp from the body (a signer may not set framing).
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
MAX_CONNECTIONS = 200
# An idle pooled connection is closed after this long: before the 5 s after which uvicorn
# (the emulator) and many servers close theirs, so a request is not written into a
# connection the server is closing (an order there would end as "may have arrived").
KEEPALIVE_S = 4.0


class Upstream:
    """Sends built requests through one bounded keep-alive pool; TLS verification stays on.

    Create it inside the running event loop (the lifespan) and ``aclose`` it
    there. ``transport`` sends through httpx with that transport instead
    (tests that stand in for the network).
    """

    def __init__(
        self,
        *,
        timeout_s: float,
        retries: int,
        backoff_s: float,
        max_connections: int = MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._retries = retries
        self._backoff_s = backoff_s
        self._wire: _Wire = (
            _HttpxWire(transport, timeout_s)
            if transport is not None
            else _AiohttpWire(timeout_s, max_connections)
        )

    async def aclose(self) -> None:
        await self._wire.aclose()

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
        return await self._wire.send(request)


class _Wire:
    async def send(self, request: httpx.Request) -> Received | Failure:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class _AiohttpWire(_Wire):
    """aiohttp's client: one session, a bounded pool, nothing added to what was signed."""

    def __init__(self, timeout_s: float, max_connections: int) -> None:
        connector = aiohttp.TCPConnector(
            limit=max_connections, ssl=_verified_tls(), keepalive_timeout=KEEPALIVE_S
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Connecting (and waiting for a pooled connection) has its own limit, so a
            # timeout there is known not to have sent anything.
            timeout=aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
            trust_env=False,  # proxies come from _proxy_for; .netrc never adds credentials
        )

    async def aclose(self) -> None:
        await self._session.close()

    async def send(self, request: httpx.Request) -> Received | Failure:
        url = request.url
        # httpx keeps header values ASCII (it refuses others), so these bytes go out unchanged.
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _FRAMING
        ]
        body = request.read()
        started = time.perf_counter()
        try:
            async with self._session.request(
                request.method,
                URL(str(url), encoded=True),  # the raw path and query bytes, untouched
                headers=headers,
                data=body or None,
                allow_redirects=False,
                proxy=_proxy_for(url.scheme, url.host),
            ) as response:
                raw = await response.read()
                items = [
                    (name.decode("latin-1").lower(), value.decode("latin-1"))
                    for name, value in response.raw_headers
                ]
                status = response.status
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            return Failure(_aiohttp_reason(exc), False, _since(started))
        except aiohttp.InvalidURL:
            return Failure("the exchange's address is not usable", False, _since(started))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Failure(_aiohttp_reason(exc), True, _since(started))
        dropped = _DROP_FROM_EXCHANGE
        if any(name == "connection" for name, _ in items):
            dropped = dropped | _connection_named(items)
        kept = tuple((name, value) for name, value in items if name not in dropped)
        return Received(status, kept, raw, _since(started))


class _HttpxWire(_Wire):
    """httpx with a given transport: for tests that stand in for the network."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False)
        self._timeout = httpx.Timeout(timeout_s).as_dict()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, request: httpx.Request) -> Received | Failure:
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
            return Failure(_httpx_reason(exc), False, _since(started))
        except httpx.TransportError as exc:
            return Failure(_httpx_reason(exc), True, _since(started))
        headers = tuple(forwardable_response_headers(response.headers.multi_items()))
        return Received(response.status_code, headers, raw, _since(started))


def _verified_tls() -> ssl.SSLContext:
    """The context httpx verifies with (its CA bundle, SSL_CERT_FILE/DIR when set)."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


@functools.lru_cache(maxsize=256)
def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy the environment names for ``scheme://host`` (HTTPS_PROXY, NO_PROXY, ...).

    Read once per host: the environment of a running gateway does not change.
    """
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass(host):  # NO_PROXY
        return None
    return proxies.get(scheme) or proxies.get("all")


def _since(started: float) -> float:
    # To the microsecond, as the audit log keeps it (so a result row needs no rounding).
    return round((time.perf_counter() - started) * 1000, 3)


# Our own words in both: a library's messages can quote the URL, and a URL can carry a query.


def _aiohttp_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        return "the exchange did not answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "the exchange refused the connection or could not be reached"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the exchange closed the connection without an answer"
    return "the connection to the exchange failed"


def _httpx_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the exchange did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "the exchange refused the connection or could not be reached"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the exchange closed the connection without an answer"
    return "the connection to the exchange failed"
