"""poloniex: everything keybroker knows about the Poloniex spot API's wire format.

    >>> signed = PROFILE.sign(httpx.Request("GET", url), credential, now_ms=1659259836247)
    >>> signed.headers["signature"]   # base64 HMAC-SHA256 of "GET\\n/orders\\nlimit=5&…"

Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, PROFILE. Source of truth: ../shared/design/exchange-auth.md §10.

Poloniex does not sign the query as sent: the server rebuilds a parameter
string (sorted, re-encoded) from what it received, so the signer has to
rebuild the same string. The spot API has no /v3 prefix; futures v3
(``/v3/...``) is not catalogued here, so its private calls are denied as unknown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import httpx

from keybroker.crypto.signing import hmac_sha256_b64
from keybroker.errors import (
    AuthenticationFailed,
    ExchangeRejected,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidInput,
    OrderRejected,
    RateLimitedUpstream,
    SigningError,
    TimestampOutsideWindow,
    UpstreamError,
)
from keybroker.exchanges import _wire
from keybroker.exchanges._wire import load_json, quote_rfc3986, replace_headers
from keybroker.exchanges.base import (
    PRIVATE_KINDS,
    Catalogue,
    ClassifiedRequest,
    CredentialRules,
    Endpoint,
    ExchangeProfile,
    LookupOutcome,
    OrderIntent,
    OrderTools,
    RateLimit,
    classify_with,
    effective_method,
    json_order_with_id,
    parse_amount,
    uuid_client_id,
)
from keybroker.model import Credential

NAME = "poloniex"

# -- 1. Base URLs ------------------------------------------------------------------
# The sandbox host is the one ccxt lists; Poloniex's docs do not name it (§10.2).
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://api.poloniex.com",
        "testnet": "https://sand-spot-api-gateway.poloniex.com",
    },
}


def base_url(path: str, environment: str) -> str:
    """One host serves every spot path; the environment picks production or sandbox."""
    url = BASE_URLS["rest"].get(environment)
    if url is None:
        raise InvalidInput(f"poloniex has no {environment} environment")
    return url


# -- 2. Credential rules --------------------------------------------------------------
CREDENTIALS = CredentialRules(needs_passphrase=False, key_types=("hmac",))


# -- 3. Signer ---------------------------------------------------------------------------
# signatureMethod, signatureVersion and recvWindow are optional and not signed:
# a client's values are kept as they are.
AUTH_HEADERS = ("key", "signTimestamp", "signature")


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Sign ``METHOD\\npath\\nparams`` (HMAC-SHA256, base64); set key, signTimestamp, signature.

    ``params`` is, for GET, every query parameter plus ``signTimestamp``,
    sorted by name, each ``name=value`` percent-encoded as UTF-8 with RFC 3986
    rules (space is ``%20``); for other verbs ``requestBody=<body>&signTimestamp=<ts>``,
    or ``signTimestamp=<ts>`` alone without a body. Query and body bytes are
    sent as they came. Raises SigningError for the shapes the documented rule
    does not cover (a GET with a body, a query on another verb), rather than guess.
    """
    prehash = string_to_sign(request, now_ms)
    signature = hmac_sha256_b64(credential.secret, prehash.encode("utf-8"))
    return replace_headers(
        request,
        {"key": credential.api_key, "signTimestamp": str(now_ms), "signature": signature},
        remove=AUTH_HEADERS,
    )


def string_to_sign(request: httpx.Request, now_ms: int) -> str:
    """The pre-sign string Poloniex rebuilds on its side for ``request`` at ``now_ms``."""
    method = request.method.upper()
    raw_path, _, raw_query = request.url.raw_path.partition(b"?")
    body = request.read()
    timestamp = f"signTimestamp={now_ms}"
    if method == "GET":
        if body:
            raise SigningError("poloniex GET requests cannot carry a body: it would not be signed")
        # The server sees decoded values ("+" is a space in a query, as httpx
        # writes it) and re-encodes them itself, so the canonical form is signed.
        try:
            pairs = parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise SigningError("poloniex query has a percent-escape that is not UTF-8") from None
        if any(name == "signTimestamp" for name, _ in pairs):
            raise SigningError("poloniex takes signTimestamp as a header, not in the query")
        pairs.append(("signTimestamp", str(now_ms)))
        pairs.sort(key=lambda pair: pair[0])
        params = "&".join(f"{quote_rfc3986(name)}={quote_rfc3986(value)}" for name, value in pairs)
    else:
        if raw_query:
            raise SigningError(
                f"poloniex {method} requests take their parameters in the JSON body; "
                "a query string would not be signed"
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SigningError("poloniex request body is not UTF-8") from None
        params = f"requestBody={text}&{timestamp}" if body else timestamp
    return f"{method}\n{raw_path.decode('ascii')}\n{params}"


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Weights follow ccxt's cost table for Poloniex: units of 1/200 s, so an
# endpoint that Poloniex allows 10 times a second costs 20 and one allowed 50
# times costs 4 (Poloniex's own limits are per endpoint and VIP tier, §10.6).
READ_LIGHT = Endpoint("account_read", weight=4)
READ_HEAVY = Endpoint("account_read", weight=20)
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # orders
    ("POST", "/orders"): Endpoint("order_place", weight=4, order_count=1),
    ("POST", "/orders/batch"): Endpoint("order_place", weight=20, order_count=1, is_batch=True),
    ("PUT", "/orders/{id}"): Endpoint("order_place", weight=20, order_count=1),
    ("POST", "/smartorders"): Endpoint("order_place", weight=4, order_count=1),
    ("PUT", "/smartorders/{id}"): Endpoint("order_place", weight=20, order_count=1),
    ("DELETE", "/orders/{id}"): Endpoint("order_cancel", weight=4),
    ("DELETE", "/orders/cancelByIds"): Endpoint("order_cancel", weight=20, is_batch=True),
    ("DELETE", "/orders"): Endpoint("order_cancel", weight=20, is_batch=True),
    ("POST", "/orders/killSwitch"): Endpoint("order_cancel", weight=4),
    ("DELETE", "/smartorders/{id}"): Endpoint("order_cancel", weight=4),
    ("DELETE", "/smartorders/cancelByIds"): Endpoint("order_cancel", weight=20, is_batch=True),
    ("DELETE", "/smartorders"): Endpoint("order_cancel", weight=20, is_batch=True),
    ("GET", "/orders"): Endpoint("order_read", weight=20),
    ("GET", "/orders/{id}"): Endpoint("order_read", weight=4),
    ("GET", "/orders/killSwitchStatus"): Endpoint("order_read", weight=4),
    ("GET", "/orders/history"): Endpoint("order_read", weight=20),
    ("GET", "/orders/{id}/trades"): Endpoint("order_read", weight=4),
    ("GET", "/smartorders"): Endpoint("order_read", weight=20),
    ("GET", "/smartorders/{id}"): Endpoint("order_read", weight=4),
    ("GET", "/smartorders/history"): Endpoint("order_read", weight=20),
    ("GET", "/trades"): Endpoint("order_read", weight=20),
    # account reads
    ("GET", "/accounts"): READ_LIGHT,
    ("GET", "/accounts/balances"): READ_LIGHT,
    ("GET", "/accounts/{id}/balances"): READ_LIGHT,
    ("GET", "/accounts/activity"): READ_HEAVY,
    ("GET", "/accounts/transfer"): READ_HEAVY,
    ("GET", "/accounts/transfer/{id}"): READ_LIGHT,
    ("GET", "/accounts/interest/history"): Endpoint("account_read", weight=1),
    ("GET", "/feeinfo"): READ_HEAVY,
    ("GET", "/subaccounts"): READ_LIGHT,
    ("GET", "/subaccounts/balances"): READ_HEAVY,
    ("GET", "/subaccounts/{id}/balances"): READ_LIGHT,
    ("GET", "/subaccounts/transfer"): READ_HEAVY,
    ("GET", "/subaccounts/transfer/{id}"): READ_LIGHT,
    ("GET", "/wallets/addresses"): READ_HEAVY,
    ("GET", "/wallets/addresses/{currency}"): READ_HEAVY,
    ("GET", "/wallets/activity"): READ_HEAVY,
    ("GET", "/margin/accountMargin"): READ_LIGHT,
    ("GET", "/margin/borrowStatus"): READ_LIGHT,
    ("GET", "/margin/maxSize"): READ_LIGHT,
    # must refuse (§10.5)
    ("POST", "/wallets/withdraw"): Endpoint("withdraw", weight=20),
    ("POST", "/v2/wallets/withdraw"): Endpoint("withdraw", weight=20),
    ("POST", "/accounts/transfer"): Endpoint("transfer", weight=4),
    ("POST", "/subaccounts/transfer"): Endpoint("transfer", weight=20),
    # Creating a deposit address moves nothing, but §10.5 refuses it with the transfers.
    ("POST", "/wallets/address"): Endpoint("transfer", weight=20),
}
CATALOGUE = Catalogue(ENDPOINTS)

PUBLIC_PREFIXES = ("/markets", "/currencies", "/v2/currencies", "/timestamp", "/v3/market")

# The legacy API (decommissioned 28 Feb 2023) named the operation in the form
# body of POST /tradingApi. It is never signed here; these are only so that an
# attempt is recorded as what it was.
LEGACY_PATH = "/tradingapi"
LEGACY_COMMANDS: dict[str, Endpoint] = {
    "withdraw": Endpoint("withdraw"),
    "transferbalance": Endpoint("transfer"),
    "generatenewaddress": Endpoint("transfer"),
}


def is_public_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PUBLIC_PREFIXES)


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify on the normalised path; the dead legacy API by its body's ``command``."""
    classified = classify_with(CATALOGUE, request, is_public_path=is_public_path)
    if classified.path == LEGACY_PATH:
        commands = {
            value.lower()
            for name, value in parse_qsl(
                request.read().decode("utf-8", "replace") + "&" + request.url.query.decode(),
                keep_blank_values=True,
            )
            if name.lower() == "command"
        }
        for command in sorted(commands):
            endpoint = LEGACY_COMMANDS.get(command)
            if endpoint is not None:
                return ClassifiedRequest(
                    endpoint.kind, effective_method(request), classified.path, endpoint, command
                )
    return classified


# -- 4b. Rate limits -----------------------------------------------------------------------
# Poloniex limits each endpoint per second by VIP tier (§10.6 [unverified]);
# as in ccxt's cost table, the catalogue's weights are in 1/200 s, so one
# budget of 200 a second per account never lets any endpoint past its own
# limit. Public data: 200 requests a second per IP, ccxt's rate. No usage
# headers.
RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit("REQUEST_WEIGHT", 200, 1, "weight", "account", kinds=PRIVATE_KINDS),
    RateLimit("PUBLIC", 200, 1, "requests", "ip", kinds=("public",)),
)


# -- 5. Order-intent parser ----------------------------------------------------------------
SINGLE_ORDER_PATTERNS = frozenset({"/orders", "/smartorders", "/orders/{id}", "/smartorders/{id}"})


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order placed (POST /orders, /smartorders, each of /orders/batch) or replaced.

    A replace (PUT /orders/{id}) names no symbol, so its intent has ``symbol=""``,
    which a symbol allowlist refuses (fail closed). ``quantity`` is in base
    currency, ``amount`` (market buys) in quote. Raises InvalidInput on a body
    that is not the documented JSON. ``classified``: ``classify(request)``, when the
    caller made it already.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern is None:
        return []
    body = _json_body(request.read())
    if classified.pattern == "/orders/batch":
        if not isinstance(body, list) or not all(isinstance(order, dict) for order in body):
            raise InvalidInput("poloniex batch order body is not a JSON list of objects")
        return [_intent(order) for order in body]
    if classified.pattern in SINGLE_ORDER_PATTERNS:
        if not isinstance(body, dict):
            raise InvalidInput("poloniex order body is not a JSON object")
        return [_intent(body)]
    return []


def _json_body(body: bytes) -> Any:
    # Numbers become Decimal and a repeated key is refused (load_json), so the
    # order keybroker checks is the order the exchange reads.
    return load_json(body or b"{}")


def _decimal(value: object, field: str) -> Decimal | None:
    # The side is ``side``: no Poloniex amount is signed.
    return parse_amount(value, exchange=NAME, field=field)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _intent(order: Mapping[str, Any]) -> OrderIntent:
    side = _text(order.get("side"))
    return OrderIntent(
        symbol=_text(order.get("symbol")) or "",
        side=side.lower() if side else None,
        type=_text(order.get("type")),
        quantity=_decimal(order.get("quantity"), "quantity"),
        price=_decimal(order.get("price"), "price"),
        quote_quantity=_decimal(order.get("amount"), "amount"),
        client_order_id=_text(order.get("clientOrderId")),
    )


# -- 6. Error map ----------------------------------------------------------------------------
# Answers are {"code": N, "message": "..."}; a code of 200 (cancel answers carry
# one) is a success. Codes after ccxt's table (§10.6); the signature and key
# codes are not documented, so HTTP 401/403 stand in for them.
ERROR_CODES: dict[int, type[UpstreamError]] = {
    # key, account, permission
    403: AuthenticationFailed,
    1000: AuthenticationFailed,
    21100: AuthenticationFailed,
    21600: AuthenticationFailed,
    21605: AuthenticationFailed,
    21704: AuthenticationFailed,
    21353: AuthenticationFailed,
    21354: AuthenticationFailed,
    12004: AuthenticationFailed,
    25010: AuthenticationFailed,
    # funds
    21709: InsufficientBalance,
    21721: InsufficientBalance,
    250005: InsufficientBalance,
    # throttling and availability
    429: RateLimitedUpstream,
    500: ExchangeUnavailable,
    503: ExchangeUnavailable,
    603: ExchangeUnavailable,
    1002: ExchangeUnavailable,
    21340: ExchangeUnavailable,  # maintenance mode: no order creation or cancellation
    24201: ExchangeUnavailable,
}
# Order refusals: symbol errors and the 21xxx / 25xxx order families.
ORDER_CODES = frozenset({10020, 10040, 10041}) | frozenset(range(21300, 21361))
ORDER_CODES |= frozenset(range(25000, 25021))


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error a Poloniex answer stands for, or None for a success.

    Batch answers (JSON lists) are successes at the HTTP level even when some
    entries failed; each entry's own code is for the caller to read.
    """
    parsed = _json(body)
    code: int | None = None
    message = ""
    if isinstance(parsed, dict):
        raw_code = parsed.get("code")
        if isinstance(raw_code, int | str) and not isinstance(raw_code, bool):
            try:
                code = int(raw_code)
            except ValueError:
                code = None
        raw_message = parsed.get("message", parsed.get("msg"))
        message = raw_message if isinstance(raw_message, str) else ""
    if 200 <= status < 300 and (code is None or code == 200):
        return None
    cls = ERROR_CODES.get(code) if code is not None else None
    if cls is None and code in ORDER_CODES:
        cls = OrderRejected
    if cls is None:
        cls = _by_status(status, message)
    label = f"poloniex error {code}" if code is not None else "poloniex error"
    text = f"{label}: {message[:120] or f'HTTP {status}'}"
    if cls is RateLimitedUpstream or status == 429:
        return RateLimitedUpstream(
            text, exchange=NAME, code=code, status=status, retry_after=_retry_after(headers)
        )
    return cls(text, exchange=NAME, code=code, status=status)


def _by_status(status: int, message: str) -> type[UpstreamError]:
    # Timestamp refusals: 408 when recvWindow is exceeded, 400 with a message
    # about the timestamp otherwise (§10.1); the wording is not documented.
    if status == 408 or "timestamp" in message.lower():
        return TimestampOutsideWindow
    if status in (401, 403):
        return AuthenticationFailed
    if status == 429:
        return RateLimitedUpstream
    if status >= 500:
        return ExchangeUnavailable
    return ExchangeRejected


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


# -- 7. Key-permission query -----------------------------------------------------------------
PERMISSION_NOTE = (
    "the Poloniex spot API has no endpoint that reports an API key's own permissions; "
    "create the key with Read and Trade only (withdrawals are a separate switch in the "
    "web UI) and with an IP allowlist"
)


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# POST /orders takes clientOrderId: at most 64 of A-Z a-z 0-9 _ - (Poloniex
# "Create Order"). GET /orders/cid:{clientOrderId} asks for it; its answer
# for an order Poloniex does not know is not documented, so anything but the
# order is "unknown". Batches keep whatever ids they carry.
_CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def client_order_id(new_id: Callable[[], str]) -> str:
    """A clientOrderId from the gateway's id: itself when Poloniex takes it, else a UUID of it."""
    raw = new_id()
    return raw if _CLIENT_ORDER_ID.fullmatch(raw) else uuid_client_id(raw)


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``clientOrderId`` first in a POST /orders that has none."""
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern != "/orders":
        return request
    body = request.read()
    payload = _json_body(body)
    if not isinstance(payload, dict) or _text(payload.get("clientOrderId")) is not None:
        return request
    member = json.dumps(client_order_id(new_id))
    return _wire.with_body(request, _wire.insert_json_member(body, "clientOrderId", member))


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    a POST /orders without ``clientOrderId``."""
    if classified.kind != "order_place" or classified.pattern != "/orders":
        return request, list(intents)
    return json_order_with_id(request, intents, "clientOrderId", lambda: client_order_id(new_id))


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """GET /orders/cid:{clientOrderId}."""
    if not intent.client_order_id or classify(request).pattern != "/orders":
        return None
    path = "/orders/cid:" + quote_rfc3986(intent.client_order_id)
    return httpx.Request("GET", request.url.copy_with(path=path, query=None))


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "unknown"
    return (
        "found" if status == 200 and isinstance(payload, dict) and payload.get("id") else "unknown"
    )


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /markets/{symbol}/price (public)."""
    path = f"/markets/{quote_rfc3986(symbol)}/price"
    return httpx.Request("GET", request.url.copy_with(path=path, query=None))


def parse_price(body: bytes) -> Decimal | None:
    try:
        price = Decimal(str(json.loads(body)["price"]))
    except (ValueError, KeyError, TypeError, ArithmeticError):
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
    env_prefix="POLONIEX",
    base_urls=BASE_URLS,
    route_base_url=base_url,
    credentials=CREDENTIALS,
    sign_request=sign,
    catalogue=CATALOGUE,
    classify_request=classify,
    parse_order_request=parse_order,
    map_error_response=map_error,
    permission_note=PERMISSION_NOTE,
    orders=ORDER_TOOLS,
    rate_limits=RATE_LIMITS,
)
