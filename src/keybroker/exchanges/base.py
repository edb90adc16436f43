"""The shape every exchange module fills in, and the exchange-neutral machinery around it.

    >>> profile = get_profile("binance")
    >>> signed = profile.sign(httpx.Request("GET", url), credential, now_ms=1499827319559)
    >>> profile.classify(signed).kind
    'account_read'

An exchange is one module (``exchanges/<name>.py``) with fixed sections:
base URLs, credential rules, signer, endpoint catalogue, rate limits,
order-intent parser, error map, key-permission query, and at the bottom
``PROFILE``. This module holds only what is the same for all of them: the
value types, path normalisation (so that no spelling of a path disguises an
endpoint), the catalogue matcher, the nonce source and the usage-header
reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol
from urllib.parse import unquote

import httpx

from keybroker.clock import Clock, SystemClock
from keybroker.errors import InvalidInput, UnreadableAmount, UpstreamError
from keybroker.exchanges._wire import ScientificDecimal, insert_json_member, with_body
from keybroker.model import Credential
from keybroker.secret import Secret

RequestKind = Literal[
    "public",
    "account_read",
    "order_read",
    "order_place",
    "order_cancel",
    "transfer",
    "withdraw",
    "key_management",
    "unknown_private",
]
# Kinds that move funds or change the key itself: never signed by default.
DANGEROUS_KINDS: frozenset[str] = frozenset({"transfer", "withdraw", "key_management"})

# Headers some frameworks honour to turn a POST into another verb; a bot must
# not be able to hide a DELETE or a withdrawal behind one.
METHOD_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")
_OVERRIDE_NAMES = frozenset(name.encode("ascii") for name in METHOD_OVERRIDE_HEADERS)

EnvironmentName = Literal["production", "testnet", "demo"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What one catalogued endpoint is and what it costs.

    ``weight`` is the request weight charged against the exchange's request
    budget; ``order_count`` what it charges against an order-count budget
    (0 for non-orders); ``is_batch`` marks endpoints that carry several orders.
    """

    kind: RequestKind
    weight: int = 1
    order_count: int = 0
    is_batch: bool = False


@dataclass(frozen=True, slots=True)
class ClassifiedRequest:
    """A request after normalisation and catalogue lookup."""

    kind: RequestKind
    method: str
    path: str
    endpoint: Endpoint | None
    pattern: str | None = None


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What an order request asks for, read from the exchange's own wire format."""

    symbol: str
    side: str | None = None
    type: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    quote_quantity: Decimal | None = None
    client_order_id: str | None = None
    reduce_only: bool | None = None
    leverage: Decimal | None = None

    def __post_init__(self) -> None:
        # One spelling across exchanges ("buy"/"sell"), so policies compare sides simply.
        if self.side is not None:
            object.__setattr__(self, "side", self.side.lower())

    def with_client_order_id(self, value: str) -> OrderIntent:
        """This intent with ``client_order_id`` ``value``: ``dataclasses.replace`` without
        its generic walk over the fields, on every order (a test holds the two equal)."""
        return OrderIntent(
            self.symbol,
            self.side,
            self.type,
            self.quantity,
            self.price,
            self.quote_quantity,
            value,
            self.reduce_only,
            self.leverage,
        )


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    """What the exchange says the key itself may do (for the doctor)."""

    can_read: bool
    can_trade: bool
    can_withdraw: bool
    ip_restricted: bool | None


@dataclass(frozen=True, slots=True)
class KeyPattern:
    """One shape of key material this exchange issues, for ``keybroker doctor``'s secret scan.

    ``regex`` matches the value itself; its first group, when it has one, is
    the value (the rest is context such as a ``BEGIN`` line). ``context``,
    when set, must also match the same line: shapes like a UUID or 64 letters
    and digits are everywhere in code, and only next to a word such as
    ``okx`` or ``api_key`` are they likely to be a key.
    """

    name: str
    regex: re.Pattern[str]
    context: re.Pattern[str] | None = None

    def find(self, line: str) -> list[str]:
        """The values on ``line`` that have this shape (and its context), in order."""
        if self.context is not None and not self.context.search(line):
            return []
        return [
            match.group(1) if match.re.groups else match.group(0)
            for match in self.regex.finditer(line)
        ]


TimeParser = Callable[[bytes], int]


class OrderParser(Protocol):
    """An exchange module's ``parse_order``: one intent per order ``request`` places.

    ``classified``, when given, is ``classify(request)`` of this very request,
    made by the caller (the gateway classifies every request once): the parser
    uses it instead of classifying the request again. Omitted, it classifies.
    """

    def __call__(
        self, request: httpx.Request, *, classified: ClassifiedRequest | None = None
    ) -> list[OrderIntent]: ...


class ClientIdAdder(Protocol):
    """An exchange module's ``add_client_order_id`` (see ``OrderTools``); ``classified`` as
    for ``OrderParser``: the request's own classification, so it is not made again."""

    def __call__(
        self,
        request: httpx.Request,
        new_id: Callable[[], str],
        *,
        classified: ClassifiedRequest | None = None,
    ) -> httpx.Request: ...


ClientIdWriter = Callable[
    [httpx.Request, Callable[[], str], ClassifiedRequest, Sequence[OrderIntent]],
    tuple[httpx.Request, list[OrderIntent]] | None,
]
"""(request, new_id, its classification, its intents) -> the request with a client order id
added and its intents as ``parse_order`` reads that request, or None: see
``OrderTools.with_client_order_id``."""


def json_member_absent(body: bytes, name: str) -> bool:
    """Whether the JSON ``body`` surely has no object member called ``name``, at any depth.

    Read from the bytes alone, so it can say False for a body that has none (the
    name inside a string value): callers then take the slow, exact way. Without
    a backslash in the body no key is escaped, so a key ``name`` appears as
    ``"name"`` byte for byte; invalid UTF-8 is refused by ``load_json`` anyway.
    """
    return b"\\" not in body and b'"' + name.encode("ascii") + b'"' not in body


# What a client order id may be for a fast path to write it as it is: letters, digits,
# ``-``, ``_`` and ``.``, which no form or JSON encoding changes (the gateway's ids are
# ``kb`` and hex). Anything else goes the slow way, written and then read back.
PLAIN_CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def json_order_with_id(
    request: httpx.Request,
    intents: Sequence[OrderIntent],
    name: str,
    value: Callable[[], str],
    *,
    number: bool = False,
    absent: tuple[str, ...] = (),
    plain: bool = False,
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``with_client_order_id``'s fast way for one JSON order object (see ``OrderTools``).

    ``request``'s body is one order, read before as ``intents``, without a member
    ``name`` (nor any of ``absent``) at all: the member ``name`` with ``value()``
    (written as a JSON number when ``number``) goes first, every other byte stays
    (``_wire.insert_json_member``, as the exchange's ``add_client_order_id`` writes
    it), and the one intent gets that id. None for anything else: a batch, a body
    that is not one object, the member there (blank or null: a second copy once
    one is added, which ``load_json`` refuses), a backslash anywhere, and with
    ``plain`` an id that is not ``PLAIN_CLIENT_ID`` (for exchanges whose
    ``add_client_order_id`` writes it without JSON escaping).
    """
    raw = request.read()
    if len(intents) != 1 or not raw.lstrip().startswith(b"{"):
        return None
    if not all(json_member_absent(raw, member) for member in (name, *absent)):
        return None
    text = value()
    if plain and PLAIN_CLIENT_ID.fullmatch(text) is None:
        return None
    body = insert_json_member(raw, name, text if number else json.dumps(text))
    return with_body(request, body), [intents[0].with_client_order_id(text)]


LookupOutcome = Literal["found", "absent", "unknown"]


@dataclass(frozen=True, slots=True)
class OrderTools:
    """What a gateway needs so that an order is never placed twice, and so that it can price one.

    - ``add_client_order_id(request, new_id)``: the request with an id from
      ``new_id()`` on every order that has none; the same request when all have
      one or the endpoint takes none.
    - ``lookup_request(request, intent)``: the unsigned request that asks the
      exchange for the order ``intent.client_order_id`` on the product (host and
      path family) ``request`` went to, or None when there is no such query.
    - ``lookup_outcome(status, body)``: that query's answer read as "found",
      "absent" (the exchange says no such order) or "unknown".
    - ``price_request(request, symbol)``: the public request for the last price of
      ``symbol`` on the product ``request`` went to, or None; ``parse_price`` reads
      its body (None when it cannot).
    - ``open_orders_request(request)``: the unsigned query for every open order
      of the account on the product ``request`` went to (None: no such query);
      ``count_open_orders`` reads its body (None when it cannot, or cannot tell
      all of them). The policy's ``max_open_orders`` rests on these.
    - ``position_request(request, symbol)``: the unsigned query for the
      account's position in ``symbol`` on that product (None: the product has no
      positions the gateway can read); ``position_notional(body, symbol)`` reads
      the position's size in the quote currency, absolute (None when it cannot).
      ``max_position_notional`` rests on these; ``positions_on`` names the
      products that have them, for messages ("USDⓈ-M futures (/fapi)").

    Every ``request`` here carries the full URL it will be sent to.
    """

    add_client_order_id: ClientIdAdder
    lookup_request: Callable[[httpx.Request, OrderIntent], httpx.Request | None]
    lookup_outcome: Callable[[int, bytes], LookupOutcome]
    price_request: Callable[[httpx.Request, str], httpx.Request | None]
    parse_price: Callable[[bytes], Decimal | None]
    open_orders_request: Callable[[httpx.Request], httpx.Request | None] | None = None
    count_open_orders: Callable[[bytes], int | None] | None = None
    position_request: Callable[[httpx.Request, str], httpx.Request | None] | None = None
    position_notional: Callable[[bytes, str], Decimal | None] | None = None
    positions_on: str = ""
    with_client_order_id: ClientIdWriter | None = None
    """Optional: ``add_client_order_id`` and ``parse_order`` of its result in one step, for
    the gateway's every order: ``(request, new_id, classified, intents)`` -> the request
    with the id added and ``intents`` (read from ``request``) with that id, exactly as
    ``parse_order`` reads the new request (a test holds the two ways equal). None when
    the fast way cannot be sure (a batch, the id's field present but blank): the gateway
    then adds the id and reads the order again."""


RateCount = Literal["weight", "orders", "requests"]
RateScope = Literal["ip", "account", "endpoint"]
# Kinds that act on an account, for limits that count only private calls.
PRIVATE_KINDS: tuple[RequestKind, ...] = (
    "account_read",
    "order_read",
    "order_place",
    "order_cancel",
    "transfer",
    "withdraw",
    "key_management",
    "unknown_private",
)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One budget an exchange enforces: at most ``capacity`` per ``per_seconds``.

    ``counts`` says what a request spends: its endpoint's ``weight``, its
    ``orders`` (``order_count``, or one per order of a batch) or 1 per
    ``requests``. ``scope`` says whose budget it is: the source IP's (shared by
    every credential behind it), the ``account``'s, or each ``endpoint``'s on
    its own (per account for private calls, per IP for public ones).

    ``decaying`` budgets are a counter that drains continuously (Kraken: up by
    each call, down by ``capacity / per_seconds`` a second); the others are
    windows in which at most ``capacity`` may be spent. ``fixed_window`` windows
    start on multiples of ``per_seconds`` since the epoch (Binance's minute),
    so a usage header counts from that start.

    The remaining fields narrow what a limit applies to, each empty for "all":
    ``paths`` (normalised path prefixes: Binance's /api, /sapi and /fapi
    families each have their own), ``kinds``, ``endpoints`` and
    ``except_endpoints`` (endpoint ids, ``"METHOD pattern"`` as the catalogue
    spells the pattern). ``endpoint_capacities`` gives a ``scope="endpoint"``
    limit a capacity per endpoint id where it differs from ``capacity``.
    ``per_symbol`` budgets are counted per symbol when the request's order
    symbols are known (OKX's per-instrument order limits, Kraken's per-pair
    trading counter), else for the whole account.
    """

    name: str
    capacity: float
    per_seconds: float
    counts: RateCount
    scope: RateScope
    decaying: bool = False
    paths: tuple[str, ...] = ()
    kinds: tuple[RequestKind, ...] = ()
    endpoints: tuple[str, ...] = ()
    except_endpoints: tuple[str, ...] = ()
    endpoint_capacities: tuple[tuple[str, float], ...] = ()
    per_symbol: bool = False
    fixed_window: bool = False

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or any(ch.isspace() for ch in self.name):
            raise InvalidInput(f"rate limit name {self.name!r} must be one word without ':'")
        if not (self.capacity > 0 and self.per_seconds > 0):
            raise InvalidInput(f"rate limit {self.name} needs a positive capacity and window")
        # Prefixes are compared with normalised (lower-case) paths.
        object.__setattr__(self, "paths", tuple(p.lower() for p in self.paths))

    def covers(self, classified: ClassifiedRequest) -> bool:
        """Whether a request of this kind, path and endpoint spends from this budget."""
        if self.kinds and classified.kind not in self.kinds:
            return False
        if self.paths and not classified.path.startswith(self.paths):
            return False
        if self.endpoints or self.except_endpoints:
            endpoint = endpoint_id(classified)
            if self.endpoints and endpoint not in self.endpoints:
                return False
            if endpoint in self.except_endpoints:
                return False
        return True


def endpoint_id(classified: ClassifiedRequest) -> str:
    """``"METHOD pattern"``: the catalogue's spelling, or the normalised path when uncatalogued."""
    return f"{classified.method} {classified.pattern or classified.path}"


UsageReader = Callable[[Mapping[str, str]], dict[str, float]]


def read_usage_headers(headers: Mapping[str, str], names: Mapping[str, str]) -> dict[str, float]:
    """{limit name: used} from the headers named in ``names`` (lower-case header -> limit name).

    Header names are matched without regard to case (a plain dict may come
    in, not only httpx.Headers); a value that is not a finite number is
    skipped, never trusted. Where two headers feed one limit, the larger wins.
    """
    usage: dict[str, float] = {}
    for header, value in headers.items():
        name = names.get(header.lower())
        if name is None:
            continue
        try:
            used = float(value)
        except ValueError:
            continue
        if math.isfinite(used) and used >= 0:
            usage[name] = max(used, usage.get(name, 0.0))
    return usage


@dataclass(frozen=True, slots=True)
class CredentialRules:
    """What a credential for this exchange must look like."""

    needs_passphrase: bool = False
    key_types: tuple[str, ...] = ("hmac",)
    # Extra shape check of the secret for a key type, raising InvalidInput.
    check_secret: Callable[[Secret, str], None] | None = None
    # What an HMAC key signs with ("sha256", "sha384", "sha512"), and how the
    # secret becomes the HMAC key (None: its bytes as they are). A key store
    # that holds the key (OpenBao) is given exactly these bytes.
    hmac_algorithm: str = "sha256"
    hmac_key: Callable[[Secret], bytes] | None = None


class NonceSource(Protocol):
    """Hands out nonces that never go backwards for one exchange key.

    The in-memory source is the default; the gateway will persist the
    high-water mark (and, for several hosts, share it through Redis).
    """

    def next(self, key_id: str, now_ms: int) -> int: ...


class MonotonicNonces:
    """``max(now_ms, last + 1)`` per key, thread-safe, in memory."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, key_id: str, now_ms: int) -> int:
        with self._lock:
            value = max(now_ms, self._last.get(key_id, 0) + 1)
            self._last[key_id] = value
            return value


SignFunction = Callable[[httpx.Request, Credential, int, int | None], httpx.Request]
ErrorMapper = Callable[[int, bytes, Mapping[str, str]], UpstreamError | None]


def normalize_path(raw_path: str) -> str:
    """One canonical spelling of a URL path, for classification only.

    Percent-decoding is repeated until stable (so ``%252F`` cannot survive as
    a slash in disguise), doubled slashes collapse, dot segments resolve as
    RFC 3986 says, and a trailing slash goes. The result is lower-cased:
    matching is case-insensitive, so a server that ignores case cannot be
    reached under a spelling the catalogue does not know.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    for _ in range(4):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/")
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return ("/" + "/".join(segments)).lower()


def effective_method(request: httpx.Request) -> str:
    """The verb a lenient server would act on, override headers included."""
    # One pass over the raw headers (the common case has no override header at all);
    # when there is one, httpx's own lookup decides, so the value read is the same.
    headers = request.headers
    if any(name.lower() in _OVERRIDE_NAMES for name, _ in headers.raw):
        for header in METHOD_OVERRIDE_HEADERS:
            value = headers.get(header)
            if value:
                return str(value).strip().upper()
    return request.method.upper()


class Catalogue:
    """(method, path pattern) → Endpoint, matched on normalised paths.

    Patterns use ``{name}`` for one path segment (``/orders/{order_id}``).
    """

    def __init__(self, endpoints: Mapping[tuple[str, str], Endpoint]) -> None:
        self._exact: dict[tuple[str, str], tuple[str, Endpoint]] = {}
        self._patterns: list[tuple[str, re.Pattern[str], str, Endpoint]] = []
        for (method, pattern), endpoint in endpoints.items():
            key = normalize_path(pattern) if "{" not in pattern else pattern.lower()
            if "{" in key:
                regex = re.compile(
                    "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(key.rstrip("/"))) + "$"
                )
                self._patterns.append((method.upper(), regex, pattern, endpoint))
            else:
                self._exact[(method.upper(), key)] = (pattern, endpoint)
        self.endpoints: Mapping[tuple[str, str], Endpoint] = dict(endpoints)

    def lookup(self, method: str, normalized_path: str) -> tuple[str, Endpoint] | None:
        found = self._exact.get((method, normalized_path))
        if found is not None:
            return found
        for pattern_method, regex, pattern, endpoint in self._patterns:
            if pattern_method == method and regex.match(normalized_path):
                return pattern, endpoint
        return None


# How much harm a kind can do, for choosing between two readings of one request.
KIND_RISK: Mapping[str, int] = {
    "public": 0,
    "account_read": 1,
    "order_read": 1,
    "order_cancel": 2,
    "order_place": 3,
    "unknown_private": 4,
    "transfer": 5,
    "withdraw": 5,
    "key_management": 5,
}


def _classify_as(
    catalogue: Catalogue, method: str, path: str, is_public_path: Callable[[str], bool]
) -> ClassifiedRequest:
    found = catalogue.lookup(method, path)
    if found is not None:
        pattern, endpoint = found
        return ClassifiedRequest(endpoint.kind, method, path, endpoint, pattern)
    # A dangerous endpoint must not become reachable by sending it with another verb.
    for other in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        found = catalogue.lookup(other, path)
        if found is not None and found[1].kind in DANGEROUS_KINDS:
            return ClassifiedRequest(found[1].kind, method, path, found[1], found[0])
    if is_public_path(path):
        return ClassifiedRequest("public", method, path, None)
    return ClassifiedRequest("unknown_private", method, path, None)


def classify_with(
    catalogue: Catalogue,
    request: httpx.Request,
    *,
    is_public_path: Callable[[str], bool],
    path_prefix: str = "",
) -> ClassifiedRequest:
    """Classify against a catalogue; anything unknown that is not plainly public is private.

    A method-override header can only make a request look worse: signers
    sign the request's own verb and most exchanges ignore override headers,
    yet a lenient server would act on the override. ``POST
    /v2/accounts/{id}/transactions`` (a send) with ``X-HTTP-Method-Override:
    GET`` must not pass as the harmless GET, nor a GET dressed up as a POST
    the other way round. So both readings are taken; when they disagree the
    request is ``unknown_private`` (denied), or the dangerous reading if one is.

    ``path_prefix`` is stripped first for exchanges whose base URL carries a
    path (``/api/v3/brokerage``-style hosts), so catalogues list short paths.
    """
    path = normalize_path(request.url.raw_path.decode("ascii", "replace"))
    prefix = normalize_path(path_prefix) if path_prefix else ""
    if prefix and prefix != "/" and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    own = request.method.upper()
    result = _classify_as(catalogue, own, path, is_public_path)
    override = effective_method(request)
    if override != own:
        other = _classify_as(catalogue, override, path, is_public_path)
        if other.kind != result.kind:
            # No honest bot disguises its verb: unless a reading is worse
            # still, a request whose two readings disagree is unknown (denied).
            unknown = ClassifiedRequest("unknown_private", own, path, None)
            result = max((other, result, unknown), key=lambda c: KIND_RISK[c.kind])
    return result


# Kept for the modules that named it; classify_with now takes both readings itself.
classify_either_method = classify_with


def check_no_whitespace(what: str, value: str) -> None:
    """Raise InvalidInput naming ``what`` (never the value) when it is empty or has spaces."""
    if not value:
        raise InvalidInput(f"{what} is empty")
    if any(ch.isspace() for ch in value):
        raise InvalidInput(f"{what} contains whitespace")


WsKind = Literal["public", "user", "api"]


@dataclass(frozen=True, slots=True)
class RestTwin:
    """The REST request that does what a WebSocket frame does, in the parts a bot would send:
    method, raw path (from "/"), raw query (without "?", "" for none), body and its type.

    Parts rather than an ``httpx.Request``: the gateway builds the one request it
    judges and sends from them, with the credential's base URL, exactly as it builds
    a REST request from the bot's bytes (``gateway/outgoing.request_for``). Parsing a
    URL for every frame only to take it apart again cost about a tenth of a
    millisecond per WebSocket order. Path and query are ASCII, escaped as on the wire.
    """

    method: str
    path: str
    query: str = ""
    content: bytes = b""
    content_type: str | None = None

    @classmethod
    def of(cls, request: httpx.Request) -> RestTwin:
        """The parts of ``request`` (its host is dropped)."""
        path, _, query = request.url.raw_path.decode("ascii").partition("?")
        return cls(
            request.method, path, query, request.content, request.headers.get("content-type")
        )

    def request(self, base: str) -> httpx.Request:
        """The twin as an ``httpx.Request`` on ``base`` (tools and tests; the gateway
        builds its own with ``request_for``)."""
        url = base.rstrip("/") + self.path + ("?" + self.query if self.query else "")
        headers = {"Content-Type": self.content_type} if self.content_type else None
        return httpx.Request(self.method, url, headers=headers, content=self.content or None)


@dataclass(frozen=True, slots=True)
class WsCall:
    """One request frame of an exchange's WebSocket API, with its REST equivalent.

    ``rest`` is the unsigned REST request that does the same thing (same
    parameters or body): the gateway classifies it, reads its order intents
    and applies the policy to it, so a WebSocket order is judged exactly like
    the same order sent over REST, and the frame sent upstream is rebuilt from
    it (the judged request's twin, with the client order id the gateway may have
    added). ``params`` are the frame's parameters as text; ``frame`` the whole
    frame as the bot sent it.
    """

    request_id: object
    method: str
    params: dict[str, str]
    rest: RestTwin
    frame: Mapping[str, object] = field(default_factory=dict)


def _never(text: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class WebSocketSupport:
    """What the gateway needs to relay an exchange's WebSockets (issue 11).

    Routing:
    - ``url(path_and_query, environment)``: the upstream ``wss://`` URL for a bot's path.
    - ``kind(path)``: ``public`` (market data, shareable), ``user`` (an account's stream,
      one upstream per bot) or ``api`` (frames the gateway judges, and signs or sends on
      a connection it logged in); None: unknown, refused.

    Request frames (kind ``api``):
    - ``read_call(text)``: a request frame as a WsCall; InvalidInput when it
      cannot be read or is not catalogued (refused, never forwarded as is).
    - ``sign_call(call, credential, now_ms)``: the frame to send upstream.
    - ``error_frame(request_id, status, code, message)``: the exchange-shaped refusal.
    - ``request_id(text)`` / ``response_id(text)``: the id of a bot's frame (read
      leniently) and of an upstream answer (None for events).
    - ``login_frame(credential, now_ms)``: for exchanges that authenticate the connection
      (OKX), the login the gateway sends first; ``login_answer(text)`` says whether an
      upstream frame accepted it (True), refused it (False) or is something else (None).
    - ``local_answer(text)``: frames the gateway answers itself (a bot's own login with
      placeholder credentials), or None.

    Account streams (kind ``user``):
    - ``keepalive(path)``: (method, REST path, query) of the request that keeps the
      stream's key alive (Binance's listen key), sent through the REST pipeline.

    Market data (kind ``public``):
    - ``streams_of(path, query)``: the streams a connection's URL names, and whether their
      events arrive wrapped with the stream's name (Binance's combined streams).
    - ``subscription(text)``: (request id, action, stream names) of a subscribe frame, or
      None; ``subscription_replies(request_id, action, names)`` answer it.
    - ``stream_path(name)`` and ``stream_subscribe(name)``: the upstream path carrying one
      stream, and the frame that subscribes it there (None: the path alone does).
    - ``is_data(text)``: whether an upstream frame on a stream is data for the bots (not
      the upstream's own acknowledgement of our subscription).
    - ``stream_in(path, name)``: the hub's name for a stream a bot subscribed to on the
      connection's ``path`` (default: the name itself). Bybit's topics live per category
      and the category is in the path (``/v5/public/linear``), so its names carry the path.

    Optional, where one shape per exchange is not enough:
    - ``refusal(text, request_id, status, code, message)``: the refusal of the bot's frame
      ``text`` when its shape depends on the frame (Bybit answers its trade stream with
      reqId/retCode/op and its private stream with req_id/success/ret_msg); None:
      ``error_frame``.
    - ``answer_status(text)``: (HTTP-like status, venue code) of an upstream answer for
      the result row; None: Binance's ``status`` and ``error.code``.
    - ``heartbeat()``: (seconds, frame) the gateway sends on every upstream connection it
      holds, for exchanges that close a connection quiet at the application level (Bybit:
      no ping for 10 minutes); ``is_heartbeat_answer(text)`` spots the upstream's answers,
      which no bot asked for and none is sent. None: the WebSocket protocol's own pings.
    - ``override_url(base_url, path_and_query)``: the WebSocket URL when the credential
      has a ``base_url`` override, for exchanges whose WebSocket host is not the REST
      host (Bybit: api-demo.bybit.com -> stream-demo.bybit.com); None: the override's
      host with http -> ws.
    """

    url: Callable[[str, str], str]
    kind: Callable[[str], WsKind | None]
    read_call: Callable[[str], WsCall]
    sign_call: Callable[[WsCall, Credential, int], str]
    error_frame: Callable[[object, int, str, str], str]
    request_id: Callable[[str], object]
    response_id: Callable[[str], object]
    subscription: Callable[[str], tuple[object, str, tuple[str, ...]] | None]
    subscription_replies: Callable[[object, str, tuple[str, ...]], list[str]]
    stream_path: Callable[[str], str]
    streams_of: Callable[[str, str], tuple[tuple[str, ...], bool]]
    stream_subscribe: Callable[[str], str | None] = _never
    is_data: Callable[[str], bool] = lambda text: True
    login_frame: Callable[[Credential, int], str] | None = None
    login_answer: Callable[[str], bool | None] = lambda text: None
    local_answer: Callable[[str], str | None] = _never
    keepalive: Callable[[str], tuple[str, bytes, bytes] | None] = _never
    stream_in: Callable[[str, str], str] = lambda path, name: name
    refusal: Callable[[str, object, int, str, str], str] | None = None
    answer_status: Callable[[str], tuple[int | None, str | None]] | None = None
    override_url: Callable[[str, str], str] | None = None
    heartbeat: Callable[[], tuple[float, str]] | None = None
    is_heartbeat_answer: Callable[[str], bool] = lambda text: False


def uuid_client_id(seed: str) -> str:
    """A version-4-shaped UUID derived from ``seed`` (the gateway's random id).

    For exchanges whose client order id must be a UUID (Coinbase Exchange's
    ``client_oid``, a Kraken ``cl_ord_id``): the same seed gives the same
    UUID, and the seed's randomness carries over.
    """
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


# -- amounts ----------------------------------------------------------------------
# The one form an order amount (quantity, price, quote amount, leverage) may
# take: ASCII digits with at most one point, a leading "-" only where the
# field is signed. Decimal() alone would also take "1e3", "NaN", "Infinity",
# " 5 ", "1_000", "٣" and "+5"; an exchange's own reader may take any of
# those differently (stop at the "e", skip the underscore), so that an order
# keybroker read as small could execute as a large one. Length is capped so a
# digit string cannot be made to cost time.
_PLAIN_AMOUNT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_SIGNED_AMOUNT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_MAX_AMOUNT_CHARS = 64


def parse_amount(
    value: object, *, exchange: str, field: str, signed: bool = False
) -> Decimal | None:
    """An order amount as a Decimal; None when the field is absent (None or ``""``).

    Accepted: plain decimal text (``"0.5"``, ``"12"``, ``"1."``, ``".5"``),
    an ``int``, or a Decimal that ``_wire.load_json`` made from a JSON
    number written without an exponent. Refused with UnreadableAmount, naming
    ``exchange`` and ``field`` but never the value: exponents (text or JSON),
    NaN and Infinity, whitespace, signs other than one leading ``-``,
    underscores, non-ASCII digits, floats, booleans and anything else.

    ``signed`` says where a negative is legal, and only the exchange module
    knows: Bitfinex signs ``amount`` by side (negative sells), OKX writes
    ``orderPx`` ``-1`` for "at market". Everywhere else a negative amount is
    refused, never read as its absolute value.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool | float):
        raise UnreadableAmount(
            f"{exchange} order field {field} must be decimal text, not a {type(value).__name__}"
        )
    if isinstance(value, ScientificDecimal):
        raise UnreadableAmount(f"{exchange} order field {field} is written with an exponent")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UnreadableAmount(f"{exchange} order field {field} is not a finite number")
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        form = _SIGNED_AMOUNT if signed else _PLAIN_AMOUNT
        if len(value) > _MAX_AMOUNT_CHARS or form.fullmatch(value) is None:
            if not signed and _SIGNED_AMOUNT.fullmatch(value) is not None:
                raise UnreadableAmount(f"{exchange} order field {field} is negative")
            raise UnreadableAmount(f"{exchange} order field {field} is not plain decimal text")
        number = Decimal(value)
    else:
        raise UnreadableAmount(f"{exchange} order field {field} is not a number")
    if number < 0 and not signed:
        raise UnreadableAmount(f"{exchange} order field {field} is negative")
    return number


@dataclass(frozen=True, slots=True)
class ExchangeProfile:
    """Everything keybroker knows about one exchange, as tables and pure functions."""

    name: str
    env_prefix: str
    base_urls: Mapping[str, Mapping[str, str]]
    """product host → environment → base URL (``{"spot": {"production": ...}}``)."""
    route_base_url: Callable[[str, str], str]
    """(path, environment) → base URL; see ``base_url``."""
    credentials: CredentialRules
    sign_request: SignFunction
    catalogue: Catalogue
    classify_request: Callable[[httpx.Request], ClassifiedRequest]
    parse_order_request: OrderParser
    map_error_response: ErrorMapper
    permission_request: Callable[[str], httpx.Request] | None = None
    """environment → the unsigned request that asks the exchange about the key itself."""
    parse_permission_response: Callable[[bytes], KeyPermissions] | None = None
    permission_note: str = ""
    """Why there is no permission query, where there is none."""
    time_request: Callable[[str], httpx.Request] | None = None
    """environment → the unsigned public request for the exchange's clock (doctor's skew check)."""
    parse_server_time: TimeParser | None = None
    """That answer → the exchange's time in ms since the epoch; InvalidInput if unreadable."""
    key_patterns: tuple[KeyPattern, ...] = ()
    """Shapes of this exchange's keys and secrets, for the doctor's secret scan."""
    uses_nonce: bool = False
    is_closed: bool = False
    """The exchange no longer operates (Bittrex): signer and catalogue only."""
    orders: OrderTools | None = None
    """Client order ids, order lookups and last prices for the gateway; None where not written."""
    rate_limits: tuple[RateLimit, ...] = ()
    """The budgets the exchange enforces (ratelimit.charges_for reads them)."""
    read_usage: UsageReader | None = None
    """Response headers -> {rate-limit name: used}, where the exchange reports its count."""
    websocket: WebSocketSupport | None = None
    """How the gateway relays this exchange's WebSockets; None: REST only."""
    clock: Clock = field(default_factory=SystemClock)
    nonces: NonceSource = field(default_factory=MonotonicNonces)

    # -- section 1 -----------------------------------------------------------
    def base_url(self, path: str, environment: str) -> str:
        """The base URL serving ``path`` in ``environment`` (production, testnet, demo)."""
        return self.route_base_url(path, environment)

    # -- credentials -----------------------------------------------------------
    @property
    def needs_passphrase(self) -> bool:
        return self.credentials.needs_passphrase

    @property
    def key_types(self) -> tuple[str, ...]:
        return self.credentials.key_types

    def check_credential(
        self, api_key: str, secret: Secret, passphrase: Secret | None, key_type: str
    ) -> None:
        """Cheap shape checks before a key is stored; errors name the field, never the value."""
        if key_type not in self.credentials.key_types:
            raise InvalidInput(
                f"{self.name} does not take {key_type} keys; "
                f"choose one of: {', '.join(self.credentials.key_types)}"
            )
        check_no_whitespace("api key", api_key)
        if not secret:
            raise InvalidInput("secret is empty")
        if key_type == "hmac":
            check_no_whitespace("secret", secret.reveal_text())
        if self.credentials.needs_passphrase:
            if passphrase is None or not passphrase:
                raise InvalidInput(f"{self.name} keys need a passphrase")
            check_no_whitespace("passphrase", passphrase.reveal_text())
        if self.credentials.check_secret is not None:
            self.credentials.check_secret(secret, key_type)

    def hmac_key(self, secret: Secret) -> bytes:
        """The bytes this exchange keys its HMAC with (the secret, or its decoding)."""
        decode = self.credentials.hmac_key
        return secret.reveal() if decode is None else decode(secret)

    # -- section 2 -----------------------------------------------------------
    def sign(
        self,
        request: httpx.Request,
        credential: Credential,
        *,
        now_ms: int | None = None,
        nonce: int | None = None,
    ) -> httpx.Request:
        """Return ``request`` signed for ``credential``; existing auth fields are replaced.

        ``now_ms`` and ``nonce`` default to this profile's clock and nonce
        source; tests pass them to reproduce published vectors exactly.
        """
        if credential.exchange != self.name:
            raise InvalidInput(
                f"credential {credential.name!r} is for {credential.exchange}, not {self.name}"
            )
        if now_ms is None:
            now_ms = self.clock.now_ms()
        if self.uses_nonce and nonce is None:
            nonce = self.nonces.next(f"{self.name}:{credential.api_key}", now_ms)
        return self.sign_request(request, credential, now_ms, nonce)

    # -- sections 3 to 6 ---------------------------------------------------------
    def classify(self, request: httpx.Request) -> ClassifiedRequest:
        return self.classify_request(request)

    def parse_order(
        self, request: httpx.Request, *, classified: ClassifiedRequest | None = None
    ) -> list[OrderIntent]:
        """One intent per order in the request (batch endpoints give several).

        ``classified``: ``classify(request)`` when the caller has it (not made again)."""
        return self.parse_order_request(request, classified=classified)

    def map_error(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> UpstreamError | None:
        """The typed error an exchange response stands for, or None if it is a success."""
        return self.map_error_response(status, body, headers or {})

    def permissions(self, body: bytes) -> KeyPermissions:
        if self.parse_permission_response is None:
            raise InvalidInput(f"{self.name} has no key-permission query: {self.permission_note}")
        return self.parse_permission_response(body)
