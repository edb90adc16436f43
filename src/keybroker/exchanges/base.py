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

import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol
from urllib.parse import unquote

import httpx

from keybroker.clock import Clock, SystemClock
from keybroker.errors import InvalidInput, UpstreamError
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


@dataclass(frozen=True, slots=True)
class KeyPermissions:
    """What the exchange says the key itself may do (for the doctor)."""

    can_read: bool
    can_trade: bool
    can_withdraw: bool
    ip_restricted: bool | None


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

    Every ``request`` here carries the full URL it will be sent to.
    """

    add_client_order_id: Callable[[httpx.Request, Callable[[], str]], httpx.Request]
    lookup_request: Callable[[httpx.Request, OrderIntent], httpx.Request | None]
    lookup_outcome: Callable[[int, bytes], LookupOutcome]
    price_request: Callable[[httpx.Request, str], httpx.Request | None]
    parse_price: Callable[[bytes], Decimal | None]


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
    parse_order_request: Callable[[httpx.Request], list[OrderIntent]]
    map_error_response: ErrorMapper
    permission_request: Callable[[str], httpx.Request] | None = None
    """environment → the unsigned request that asks the exchange about the key itself."""
    parse_permission_response: Callable[[bytes], KeyPermissions] | None = None
    permission_note: str = ""
    """Why there is no permission query, where there is none."""
    uses_nonce: bool = False
    is_closed: bool = False
    """The exchange no longer operates (Bittrex): signer and catalogue only."""
    orders: OrderTools | None = None
    """Client order ids, order lookups and last prices for the gateway; None where not written."""
    rate_limits: tuple[RateLimit, ...] = ()
    """The budgets the exchange enforces (ratelimit.charges_for reads them)."""
    read_usage: UsageReader | None = None
    """Response headers -> {rate-limit name: used}, where the exchange reports its count."""
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

    def parse_order(self, request: httpx.Request) -> list[OrderIntent]:
        """One intent per order in the request (batch endpoints give several)."""
        return self.parse_order_request(request)

    def map_error(
        self, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> UpstreamError | None:
        """The typed error an exchange response stands for, or None if it is a success."""
        return self.map_error_response(status, body, headers or {})

    def permissions(self, body: bytes) -> KeyPermissions:
        if self.parse_permission_response is None:
            raise InvalidInput(f"{self.name} has no key-permission query: {self.permission_note}")
        return self.parse_permission_response(body)
