"""bitfinex: everything keybroker knows about Bitfinex API v2's wire format.

    >>> signed = PROFILE.sign(httpx.Request("POST", url, content=body), credential, nonce=n)
    >>> signed.headers["bfx-signature"]   # hex HMAC-SHA384 of "/api/" + path + nonce + body

Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, PROFILE. Source of truth: ../shared/design/exchange-auth.md §9.

Every authenticated call is a POST under ``/v2/auth/`` with a JSON body, so
the path alone says what a request does, except for ``/v2/auth/w/order/multi``
whose operations are listed in the body (classify reads them).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from keybroker.clock import Clock, SystemClock
from keybroker.crypto.signing import hmac_sha384_hex
from keybroker.errors import (
    AuthenticationFailed,
    ExchangeRejected,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidInput,
    OrderRejected,
    RateLimitedUpstream,
    TimestampOutsideWindow,
    UpstreamError,
)
from keybroker.exchanges import _wire
from keybroker.exchanges._wire import load_json, replace_headers
from keybroker.exchanges.base import (
    Catalogue,
    ClassifiedRequest,
    CredentialRules,
    Endpoint,
    ExchangeProfile,
    KeyPermissions,
    LookupOutcome,
    OrderIntent,
    OrderTools,
    RateLimit,
    RequestKind,
    classify_with,
    effective_method,
    json_order_with_id,
    normalize_path,
    parse_amount,
)
from keybroker.model import Credential

NAME = "bitfinex"

# -- 1. Base URLs ------------------------------------------------------------------
# Bitfinex has no sandbox. Its paper trading is a paper sub-account whose keys
# work on the production hosts, so such a key is registered as production:
# sending a "testnet" credential to the real exchange must never happen silently.
BASE_URLS: dict[str, dict[str, str]] = {
    "auth": {"production": "https://api.bitfinex.com"},
    "public": {"production": "https://api-pub.bitfinex.com"},
}


def base_url(path: str, environment: str) -> str:
    """api.bitfinex.com for authenticated paths, api-pub.bitfinex.com for market data."""
    host = "auth" if not is_public_path(normalize_path(path)) else "public"
    url = BASE_URLS[host].get(environment)
    if url is None:
        raise InvalidInput(
            f"bitfinex has no {environment} environment; paper-trading sub-account keys "
            "use the production hosts, register them as production"
        )
    return url


# -- 2. Credential rules --------------------------------------------------------------
CREDENTIALS = CredentialRules(needs_passphrase=False, key_types=("hmac",), hmac_algorithm="sha384")


# -- 3. Signer ---------------------------------------------------------------------------
AUTH_HEADERS = ("bfx-apikey", "bfx-nonce", "bfx-signature")


class MicrosecondNonces:
    """Per-key nonces on a microsecond scale: ``max(now_ms * 1000, last + 1)``.

    Bitfinex rejects any nonce not above the last one it saw for the key
    (10114 "nonce: small"). Its official SDKs count microseconds and ccxt
    counts milliseconds; microseconds are larger than both, so a key that
    either of them used before keeps working with keybroker.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, key_id: str, now_ms: int) -> int:
        with self._lock:
            value = max(now_ms * 1000, self._last.get(key_id, 0) + 1)
            self._last[key_id] = value
            return value


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Sign ``"/api/" + path + nonce + body`` with HMAC-SHA384 and set the three bfx headers.

    ``path`` is the URL path as sent without its leading slash (``v2/auth/r/orders``)
    and without the query string, which Bitfinex does not sign (its official
    SDK sends query parameters unsigned). ``body`` is the exact body bytes, the
    empty string when there is none. Existing ``bfx-*`` auth headers are replaced.
    """
    if nonce is None:
        nonce = now_ms * 1000
    raw_path = request.url.raw_path.split(b"?", 1)[0]
    body = request.read()
    payload = b"/api/" + raw_path[1:] + str(nonce).encode("ascii") + body
    signature = hmac_sha384_hex(credential.secret, payload)
    return replace_headers(
        request,
        {
            "bfx-nonce": str(nonce),
            "bfx-apikey": credential.api_key,
            "bfx-signature": signature,
        },
        remove=AUTH_HEADERS,
    )


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Weights are in units of Bitfinex's most common per-endpoint limit, 90 requests
# a minute: an endpoint limited to N a minute costs round(90 / N). Bitfinex
# counts each endpoint separately and blocks the IP for about 60 s when one
# overflows; charging one shared budget is the conservative reading.
READ = Endpoint("account_read")
ORDERS_READ = Endpoint("order_read")
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # orders
    ("POST", "/v2/auth/w/order/submit"): Endpoint("order_place", order_count=1),
    ("POST", "/v2/auth/w/order/update"): Endpoint("order_place", order_count=1),
    # The kind of a multi-op request depends on its ops; classify decides it.
    ("POST", "/v2/auth/w/order/multi"): Endpoint("order_place", order_count=1, is_batch=True),
    ("POST", "/v2/auth/w/order/cancel"): Endpoint("order_cancel"),
    ("POST", "/v2/auth/w/order/cancel/multi"): Endpoint("order_cancel", is_batch=True),
    ("POST", "/v2/auth/r/orders"): ORDERS_READ,
    ("POST", "/v2/auth/r/orders/{symbol}"): ORDERS_READ,
    ("POST", "/v2/auth/r/orders/hist"): ORDERS_READ,
    ("POST", "/v2/auth/r/orders/{symbol}/hist"): ORDERS_READ,
    ("POST", "/v2/auth/r/order/{symbol}:{id}/trades"): ORDERS_READ,
    ("POST", "/v2/auth/r/trades/hist"): ORDERS_READ,
    ("POST", "/v2/auth/r/trades/{symbol}/hist"): ORDERS_READ,
    # account reads
    ("POST", "/v2/auth/r/wallets"): READ,
    ("POST", "/v2/auth/r/wallets/hist"): READ,
    ("POST", "/v2/auth/r/ledgers/hist"): READ,
    ("POST", "/v2/auth/r/ledgers/{currency}/hist"): READ,
    ("POST", "/v2/auth/r/info/user"): READ,
    ("POST", "/v2/auth/r/summary"): READ,
    ("POST", "/v2/auth/r/logins/hist"): READ,
    ("POST", "/v2/auth/r/audit/hist"): READ,
    ("POST", "/v2/auth/r/permissions"): READ,
    ("POST", "/v2/auth/r/settings"): READ,
    ("POST", "/v2/auth/r/alerts"): Endpoint("account_read", weight=2),
    ("POST", "/v2/auth/r/info/margin/base"): READ,
    ("POST", "/v2/auth/r/info/margin/sym_all"): READ,
    ("POST", "/v2/auth/r/info/margin/{key}"): READ,
    ("POST", "/v2/auth/r/info/funding/{key}"): READ,
    ("POST", "/v2/auth/r/positions"): READ,
    ("POST", "/v2/auth/r/positions/hist"): READ,
    ("POST", "/v2/auth/r/positions/audit"): READ,
    ("POST", "/v2/auth/r/positions/snap"): READ,
    ("POST", "/v2/auth/r/position/increase/info"): READ,
    ("POST", "/v2/auth/r/funding/offers"): READ,
    ("POST", "/v2/auth/r/funding/offers/{symbol}"): READ,
    ("POST", "/v2/auth/r/funding/offers/hist"): READ,
    ("POST", "/v2/auth/r/funding/offers/{symbol}/hist"): READ,
    ("POST", "/v2/auth/r/funding/loans"): READ,
    ("POST", "/v2/auth/r/funding/loans/{symbol}"): READ,
    ("POST", "/v2/auth/r/funding/loans/hist"): READ,
    ("POST", "/v2/auth/r/funding/loans/{symbol}/hist"): READ,
    ("POST", "/v2/auth/r/funding/credits"): READ,
    ("POST", "/v2/auth/r/funding/credits/{symbol}"): READ,
    ("POST", "/v2/auth/r/funding/credits/hist"): READ,
    ("POST", "/v2/auth/r/funding/credits/{symbol}/hist"): READ,
    ("POST", "/v2/auth/r/funding/trades/hist"): READ,
    ("POST", "/v2/auth/r/funding/trades/{symbol}/hist"): READ,
    ("POST", "/v2/auth/r/movements/hist"): READ,
    ("POST", "/v2/auth/r/movements/{currency}/hist"): READ,
    ("POST", "/v2/auth/r/movements/info"): READ,
    ("POST", "/v2/auth/r/deposit/address/all"): Endpoint("account_read", weight=9),
    ("POST", "/v2/auth/calc/order/avail"): READ,
    # must refuse (§9.4); DANGEROUS_PREFIXES below also covers every sub-path
    ("POST", "/v2/auth/w/withdraw"): Endpoint("withdraw", weight=9),
    ("POST", "/v2/auth/w/ext/wallets/withdrawals/request"): Endpoint("withdraw"),
    ("POST", "/v2/auth/w/transfer"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/deposit/address"): Endpoint("transfer", weight=9),
    ("POST", "/v2/auth/w/deposit/invoice"): Endpoint("transfer", weight=9),
    ("POST", "/v2/auth/w/ext/wallets/deposits/request"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/funding/offer/submit"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/funding/offer/cancel"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/funding/offer/cancel/all"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/funding/close"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/funding/auto"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/funding/keep"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/position/claim"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/deriv/collateral/set"): Endpoint("transfer"),
    ("POST", "/v2/auth/w/token"): Endpoint("key_management"),
    ("POST", "/v2/auth/w/settings/set"): Endpoint("key_management"),
    ("POST", "/v2/auth/w/settings/del"): Endpoint("key_management"),
}
CATALOGUE = Catalogue(ENDPOINTS)

# Whole namespaces that move funds or change the account, matched on the
# normalised path before the catalogue and for every verb, so an endpoint
# Bitfinex adds under them later is refused too rather than merely unknown.
# Bitfinex also pushes every operation through the path, never a body field.
DANGEROUS_PREFIXES: tuple[tuple[str, RequestKind], ...] = (
    ("/v2/auth/w/withdraw", "withdraw"),
    ("/v2/auth/w/ext/wallets/withdrawals", "withdraw"),
    ("/v2/auth/w/transfer", "transfer"),
    ("/v2/auth/w/deposit", "transfer"),
    ("/v2/auth/w/ext", "transfer"),
    ("/v2/auth/w/funding", "transfer"),
    ("/v2/auth/w/position/claim", "transfer"),
    ("/v2/auth/w/deriv/collateral/set", "transfer"),
    ("/v2/auth/w/token", "key_management"),
    ("/v2/auth/w/settings", "key_management"),
    # API v1 is obsolete and never signed here, but its withdrawals are logged as such.
    ("/v1/withdraw", "withdraw"),
    ("/v1/transfer", "transfer"),
    ("/v1/deposit", "transfer"),
)

MULTI_PATH = "/v2/auth/w/order/multi"
# Operations /order/multi accepts: new, update, cancel, cancel several.
MULTI_PLACE_OPS = frozenset({"on", "ou"})
MULTI_CANCEL_OPS = frozenset({"oc", "oc_multi"})


def is_public_path(path: str) -> bool:
    """Market data lives under /v2/ outside /v2/auth; v1 is treated as private (never signed)."""
    return path.startswith("/v2/") and not (path == "/v2/auth" or path.startswith("/v2/auth/"))


def _dangerous_prefix(path: str) -> tuple[str, RequestKind] | None:
    for prefix, kind in DANGEROUS_PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix, kind
    return None


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify on the normalised path; /order/multi by the operations in its body."""
    path = normalize_path(request.url.raw_path.decode("ascii", "replace"))
    dangerous = _dangerous_prefix(path)
    if dangerous is not None:
        prefix, kind = dangerous
        found = CATALOGUE.lookup("POST", path)
        if found is not None and found[1].kind == kind:
            pattern, endpoint = found
        else:
            pattern, endpoint = prefix + "/*", Endpoint(kind)
        return ClassifiedRequest(kind, effective_method(request), path, endpoint, pattern)
    classified = classify_with(CATALOGUE, request, is_public_path=is_public_path)
    if classified.pattern == MULTI_PATH:
        return dataclasses.replace(classified, kind=_multi_kind(request))
    return classified


def _multi_kind(request: httpx.Request) -> RequestKind:
    # Any operation this module does not know makes the whole request unknown:
    # Bitfinex may add operations that are not orders.
    try:
        ops = _multi_ops(request)
    except InvalidInput:
        return "unknown_private"
    names = {name for name, _ in ops}
    if not names or not names <= MULTI_PLACE_OPS | MULTI_CANCEL_OPS:
        return "unknown_private"
    return "order_place" if names & MULTI_PLACE_OPS else "order_cancel"


# -- 4b. Rate limits -----------------------------------------------------------------------
# One budget of 90 weight a minute per IP and host, in the units of the
# catalogue's weights (an endpoint allowed N a minute costs 90 / N): Bitfinex
# counts each endpoint separately (10-90 a minute) and blocks the IP for about
# 60 s when one overflows (§9.5), so one shared budget is the conservative
# reading. Public data lives on its own host (api-pub), with its own budget.
# No usage headers.
RATE_LIMITS: tuple[RateLimit, ...] = (RateLimit("REQUESTS", 90, 60, "weight", "ip"),)


# -- 5. Order-intent parser ----------------------------------------------------------------
ORDER_PATHS = frozenset({"/v2/auth/w/order/submit", "/v2/auth/w/order/update"})
REDUCE_ONLY_FLAG = 1024  # Bitfinex order flag: may only reduce a position


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order in a submit, update or multi request; [] for other requests.

    Bitfinex has no side field: a positive ``amount`` buys, a negative one
    sells. Updates carry no symbol, so their intent has ``symbol=""``, which a
    symbol allowlist refuses (fail closed). Raises InvalidInput on a body that
    is not the documented JSON. ``classified``: ``classify(request)``, when the caller
    made it already (its path is the one read here).
    """
    if classified is not None:
        path = classified.path
    else:
        path = normalize_path(request.url.raw_path.decode("ascii", "replace"))
    if path in ORDER_PATHS:
        return [_intent(_json_object(request.read()))]
    if path == MULTI_PATH:
        return [_intent(order) for name, order in _multi_ops(request) if name in MULTI_PLACE_OPS]
    return []


def _json_object(body: bytes) -> dict[str, Any]:
    # Numbers become Decimal and a repeated key is refused (load_json), so the
    # order keybroker checks is the order Bitfinex reads.
    value = load_json(body or b"{}")
    if not isinstance(value, dict):
        raise InvalidInput("bitfinex order body is not a JSON object")
    return value


def _multi_ops(request: httpx.Request) -> list[tuple[str, dict[str, Any]]]:
    ops = _json_object(request.read()).get("ops")
    if not isinstance(ops, list):
        raise InvalidInput("bitfinex order/multi body has no ops list")
    result: list[tuple[str, dict[str, Any]]] = []
    for op in ops:
        if not (
            isinstance(op, list)
            and len(op) == 2
            and isinstance(op[0], str)
            and isinstance(op[1], dict)
        ):
            raise InvalidInput("bitfinex order/multi op is not [name, object]")
        result.append((op[0], op[1]))
    return result


def _decimal(value: object, field: str, *, signed: bool = False) -> Decimal | None:
    return parse_amount(value, exchange=NAME, field=field, signed=signed)


def _intent(order: Mapping[str, Any]) -> OrderIntent:
    # amount is the one signed field: its sign is the side (negative sells).
    amount = _decimal(order.get("amount"), "amount", signed=True)
    side = None if amount is None or amount == 0 else ("buy" if amount > 0 else "sell")
    flags = _decimal(order.get("flags"), "flags")
    reduce_only = None
    if flags is not None and flags == flags.to_integral_value():
        reduce_only = bool(int(flags) & REDUCE_ONLY_FLAG)
    cid = order.get("cid")
    symbol = order.get("symbol")
    order_type = order.get("type")
    return OrderIntent(
        symbol=symbol if isinstance(symbol, str) else "",
        side=side,
        type=order_type if isinstance(order_type, str) else None,
        quantity=abs(amount) if amount is not None else None,
        price=_decimal(order.get("price"), "price"),
        client_order_id=str(cid) if cid is not None else None,
        reduce_only=reduce_only,
        leverage=_decimal(order.get("lev"), "lev"),
    )


# -- 6. Error map ----------------------------------------------------------------------------
# Error answers are ["error", code, "text"] with HTTP 500 (§9.5). 10001 is
# Bitfinex's generic code, so its text decides; the texts below are matched
# case-insensitively as substrings, first match wins.
ERROR_TEXTS: tuple[tuple[str, type[UpstreamError]], ...] = (
    ("not enough exchange balance", InsufficientBalance),
    ("not enough tradable balance", InsufficientBalance),
    ("not enough margin", InsufficientBalance),
    ("available balance is only", InsufficientBalance),
    ("apikey:", AuthenticationFailed),
    ("permission", AuthenticationFailed),
    ("nonce: small", TimestampOutsideWindow),
    ("ratelimit", RateLimitedUpstream),
    ("temporarily_unavailable", ExchangeUnavailable),
    ("maintenance", ExchangeUnavailable),
    ("invalid order", OrderRejected),
    ("order not found", OrderRejected),
    ("symbol: invalid", OrderRejected),
)
ERROR_CODES: dict[int, type[UpstreamError]] = {
    10100: AuthenticationFailed,  # "apikey: digest invalid" / "apikey: invalid"
    # A lower nonce than the key's last: like a clock outside the window, the
    # request was fine but its replay guard was not; a fresh nonce fixes it.
    10114: TimestampOutsideWindow,
    11010: RateLimitedUpstream,  # "ratelimit: error"; the IP is blocked for about 60 s
    20060: ExchangeUnavailable,  # maintenance
}
RATE_LIMIT_BLOCK_SECONDS = 60.0


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error a Bitfinex answer stands for, or None for a success.

    Handles error arrays, failed order notifications (``[..., "ERROR", text]``,
    which come with HTTP 200) and bare HTTP statuses. Messages carry the code
    and Bitfinex's short error text, never the request.
    """
    parsed = _json(body)
    code: int | None = None
    text = ""
    fallback: type[UpstreamError] = ExchangeRejected
    if isinstance(parsed, list) and len(parsed) >= 2 and parsed[0] == "error":
        code = parsed[1] if isinstance(parsed[1], int) else None
        text = parsed[2] if len(parsed) > 2 and isinstance(parsed[2], str) else ""
    elif _is_failed_notification(parsed):
        text = parsed[7] if isinstance(parsed[7], str) else ""
        fallback = OrderRejected  # notifications answer writes: orders and cancels
    elif isinstance(parsed, dict) and parsed.get("error"):
        text = str(parsed["error"])
    elif 200 <= status < 300:
        return None
    elif status >= 500:
        fallback = ExchangeUnavailable  # an edge or proxy answer, not Bitfinex's own
    elif status in (401, 403):
        fallback = AuthenticationFailed
    cls = ERROR_CODES.get(code) if code is not None else None
    if cls is None:
        lowered = text.lower()
        cls = next((found for needle, found in ERROR_TEXTS if needle in lowered), fallback)
    if status == 429:
        cls = RateLimitedUpstream
    message = f"bitfinex error{_code_note(code)}: {_short(text) or f'HTTP {status}'}"
    if cls is RateLimitedUpstream:
        return RateLimitedUpstream(
            message,
            exchange=NAME,
            code=code,
            status=status,
            retry_after=_retry_after(headers) or RATE_LIMIT_BLOCK_SECONDS,
        )
    return cls(message, exchange=NAME, code=code, status=status)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


def _is_failed_notification(parsed: Any) -> bool:
    # [MTS, TYPE, MESSAGE_ID, null, DATA, CODE, STATUS, TEXT]
    return (
        isinstance(parsed, list)
        and len(parsed) >= 8
        and isinstance(parsed[6], str)
        and parsed[6].upper() in ("ERROR", "FAILURE")
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _code_note(code: int | None) -> str:
    return f" {code}" if code is not None else ""


def _short(text: str) -> str:
    # Bitfinex error texts are short and name fields, not values; cap them anyway.
    return text[:120]


# -- 7. Key-permission query -----------------------------------------------------------------
PERMISSIONS_PATH = "/v2/auth/r/permissions"
# Scopes whose write flag lets the key move funds off the exchange.
WITHDRAW_SCOPES = frozenset({"withdraw", "ui_withdraw"})


def permission_request(environment: str) -> httpx.Request:
    """The unsigned POST /v2/auth/r/permissions (body ``{}``, as ccxt sends it)."""
    return httpx.Request(
        "POST",
        base_url(PERMISSIONS_PATH, environment) + PERMISSIONS_PATH,
        headers={"Content-Type": "application/json"},
        content=b"{}",
    )


def parse_permissions(body: bytes) -> KeyPermissions:
    """Read ``[[scope, read, write], ...]``; withdraw (or ui_withdraw) write means can_withdraw.

    Bitfinex does not report an IP allowlist here, so ``ip_restricted`` is None.
    """
    parsed = _json(body)
    if not isinstance(parsed, list):
        raise UpstreamError(
            "bitfinex permissions answer is not a list of [scope, read, write]", exchange=NAME
        )
    reads: set[str] = set()
    writes: set[str] = set()
    for entry in parsed:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)):
            raise UpstreamError(
                "bitfinex permissions entry is not [scope, read, write]", exchange=NAME
            )
        if entry[1] == 1:
            reads.add(entry[0])
        if entry[2] == 1:
            writes.add(entry[0])
    return KeyPermissions(
        can_read=bool(reads),
        can_trade="orders" in writes,
        can_withdraw=bool(writes & WITHDRAW_SCOPES),
        ip_restricted=None,
    )


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# order/submit takes cid, an integer of at most 45 bits that Bitfinex keys
# by the UTC day the order was made: finding or cancelling by cid needs
# cid_date ("YYYY-MM-DD") too. So the gateway's cid carries its day:
# cid = days since 1970-01-01 * 10**9 + 9 digits from the gateway's random
# id (below 2**45 until 2066), and the lookup reads the date back from it.
# POST /v2/auth/r/orders/{symbol} with cid and cid_date lists the order while
# it is active; one that already filled is not listed, so an empty answer is
# "unknown", never "absent". order/multi entries keep whatever cid they have.
_CID_SPREAD = 10**9
_MAX_CID = 2**45 - 1
_DAY_MS = 86_400_000
CID_CLOCK: Clock = SystemClock()
"""The clock whose UTC day goes into a new cid (tests replace it)."""


def new_cid(new_id: Callable[[], str]) -> int:
    """Today's day number times 10**9 plus nine digits of the gateway's id, hashed."""
    digest = hashlib.sha256(new_id().encode("utf-8")).digest()
    day = CID_CLOCK.now_ms() // _DAY_MS
    return day * _CID_SPREAD + int.from_bytes(digest[:8], "big") % _CID_SPREAD


def cid_date(cid: int) -> str | None:
    """The UTC date a gateway-made cid was made on; None for a cid made otherwise."""
    day = cid // _CID_SPREAD
    if not 0 < cid <= _MAX_CID or not 18_000 <= day <= 36_000:  # 2019 .. 2068
        return None
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``cid`` (a JSON number) first in an order/submit that has none."""
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern != "/v2/auth/w/order/submit":
        return request
    body = request.read()
    payload = load_json(body or b"{}")
    if not isinstance(payload, dict) or payload.get("cid") is not None:
        return request
    return _wire.with_body(request, _wire.insert_json_member(body, "cid", str(new_cid(new_id))))


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    an order/submit without ``cid``; the intent's id is the number as ``parse_order`` reads it."""
    if classified.kind != "order_place" or classified.pattern != "/v2/auth/w/order/submit":
        return request, list(intents)
    return json_order_with_id(request, intents, "cid", lambda: str(new_cid(new_id)), number=True)


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """POST /v2/auth/r/orders/{symbol} with the order's cid and the date it carries."""
    wanted = intent.client_order_id
    if not wanted or not wanted.isdigit() or not intent.symbol:
        return None
    date = cid_date(int(wanted))
    if date is None or classify(request).pattern != "/v2/auth/w/order/submit":
        return None
    body = json.dumps({"cid": int(wanted), "cid_date": date}, separators=(",", ":"))
    path = "/v2/auth/r/orders/" + _wire.quote_rfc3986(intent.symbol)
    return httpx.Request(
        "POST",
        request.url.copy_with(path=path, query=None),
        headers={"Content-Type": "application/json"},
        content=body.encode("ascii"),
    )


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    """ "found" when the active orders hold it; none active may mean "filled": "unknown"."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "unknown"
    return "found" if status == 200 and isinstance(payload, list) and payload else "unknown"


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /v2/ticker/{symbol} (public)."""
    path = "/v2/ticker/" + _wire.quote_rfc3986(symbol)
    return httpx.Request("GET", request.url.copy_with(path=path, query=None))


def parse_price(body: bytes) -> Decimal | None:
    # [BID, BID_SIZE, ASK, ASK_SIZE, DAILY_CHANGE, DAILY_CHANGE_RELATIVE, LAST_PRICE, ...]
    try:
        price = Decimal(str(json.loads(body)[6]))
    except (ValueError, KeyError, IndexError, TypeError, ArithmeticError):
        return None
    return price if price.is_finite() and price > 0 else None


ORDER_TOOLS = OrderTools(
    add_client_order_id=add_client_order_id,
    with_client_order_id=with_client_order_id,
    lookup_request=lookup_request,
    lookup_outcome=lookup_outcome,
    price_request=price_request,
    parse_price=parse_price,
)


PROFILE = ExchangeProfile(
    name=NAME,
    env_prefix="BITFINEX",
    base_urls=BASE_URLS,
    route_base_url=base_url,
    credentials=CREDENTIALS,
    sign_request=sign,
    catalogue=CATALOGUE,
    classify_request=classify,
    parse_order_request=parse_order,
    map_error_response=map_error,
    permission_request=permission_request,
    parse_permission_response=parse_permissions,
    uses_nonce=True,
    nonces=MicrosecondNonces(),
    orders=ORDER_TOOLS,
    rate_limits=RATE_LIMITS,
)
