"""bittrex: what keybroker knows about Bittrex API v3 (the exchange closed in December 2023).

    >>> signed = PROFILE.sign(httpx.Request("GET", url), credential, now_ms=1600000000000)
    >>> signed.headers["Api-Signature"]   # hex HMAC-SHA512 of ts + full URL + METHOD + hash

Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, PROFILE. Source of truth: ../shared/design/exchange-auth.md §11.

Bittrex no longer trades, so this profile is the signer and the catalogue
(kept for old keys, archives and tests); the order parser and error map are
deliberately small.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import httpx

from keybroker.crypto.signing import hmac_sha512_hex, sha512_hex
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
from keybroker.exchanges._wire import load_json, replace_headers
from keybroker.exchanges.base import (
    Catalogue,
    ClassifiedRequest,
    CredentialRules,
    Endpoint,
    ExchangeProfile,
    OrderIntent,
    RateLimit,
    RequestKind,
    classify_with,
    parse_amount,
)
from keybroker.model import Credential

NAME = "bittrex"

# -- 1. Base URLs ------------------------------------------------------------------
# Paths carry their /v3 prefix. There never was a sandbox.
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {"production": "https://api.bittrex.com"},
}


def base_url(path: str, environment: str) -> str:
    """The one (dead) production host; other environments do not exist."""
    url = BASE_URLS["rest"].get(environment)
    if url is None:
        raise InvalidInput(f"bittrex has no {environment} environment (and closed in 2023)")
    return url


# -- 2. Credential rules --------------------------------------------------------------
CREDENTIALS = CredentialRules(needs_passphrase=False, key_types=("hmac",), hmac_algorithm="sha512")


# -- 3. Signer ---------------------------------------------------------------------------
# Api-Subaccount-Id is signed but chosen by the caller, so it is kept, not replaced.
AUTH_HEADERS = ("Api-Key", "Api-Timestamp", "Api-Content-Hash", "Api-Signature")


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Sign ``timestamp + fullURL + METHOD + contentHash + subaccountId`` with HMAC-SHA512 (hex).

    ``fullURL`` is scheme, host and raw path with its query exactly as sent;
    ``contentHash`` is the hex SHA-512 of the exact body bytes (of ``""`` when
    there is none); ``subaccountId`` is the request's Api-Subaccount-Id header
    or nothing.
    """
    content_hash = sha512_hex(request.read())
    presign = string_to_sign(request, now_ms, content_hash)
    signature = hmac_sha512_hex(credential.secret, presign.encode("utf-8"))
    return replace_headers(
        request,
        {
            "Api-Key": credential.api_key,
            "Api-Timestamp": str(now_ms),
            "Api-Content-Hash": content_hash,
            "Api-Signature": signature,
        },
        remove=AUTH_HEADERS,
    )


def string_to_sign(request: httpx.Request, now_ms: int, content_hash: str) -> str:
    """The pre-sign string for ``request`` at ``now_ms``."""
    url = request.url
    full_url = f"{url.scheme}://{url.netloc.decode('ascii')}{url.raw_path.decode('ascii')}"
    subaccount = request.headers.get("Api-Subaccount-Id", "")
    return f"{now_ms}{full_url}{request.method.upper()}{content_hash}{subaccount}"


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Bittrex allowed about 60 requests a minute (§11, unverified): every call weighs 1.
READ = Endpoint("account_read")
ORDERS_READ = Endpoint("order_read")
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # orders
    ("POST", "/v3/orders"): Endpoint("order_place", order_count=1),
    ("POST", "/v3/conditional-orders"): Endpoint("order_place", order_count=1),
    # The kind of a batch depends on its operations; classify decides it.
    ("POST", "/v3/batch"): Endpoint("order_place", order_count=1, is_batch=True),
    ("DELETE", "/v3/orders/{orderId}"): Endpoint("order_cancel"),
    ("DELETE", "/v3/orders/open"): Endpoint("order_cancel", is_batch=True),
    ("DELETE", "/v3/conditional-orders/{conditionalOrderId}"): Endpoint("order_cancel"),
    ("GET", "/v3/orders/open"): ORDERS_READ,
    ("GET", "/v3/orders/closed"): ORDERS_READ,
    ("GET", "/v3/orders/{orderId}"): ORDERS_READ,
    ("GET", "/v3/orders/{orderId}/executions"): ORDERS_READ,
    ("GET", "/v3/conditional-orders/open"): ORDERS_READ,
    ("GET", "/v3/conditional-orders/closed"): ORDERS_READ,
    ("GET", "/v3/conditional-orders/{conditionalOrderId}"): ORDERS_READ,
    ("GET", "/v3/executions"): ORDERS_READ,
    ("GET", "/v3/executions/last-id"): ORDERS_READ,
    ("GET", "/v3/executions/{executionId}"): ORDERS_READ,
    # account reads
    ("GET", "/v3/account"): READ,
    ("GET", "/v3/account/volume"): READ,
    ("GET", "/v3/account/fees/trading"): READ,
    ("GET", "/v3/account/permissions/markets"): READ,
    ("GET", "/v3/account/permissions/currencies"): READ,
    ("GET", "/v3/balances"): READ,
    ("GET", "/v3/balances/{currencySymbol}"): READ,
    ("GET", "/v3/addresses"): READ,
    ("GET", "/v3/addresses/{currencySymbol}"): READ,
    ("GET", "/v3/deposits/open"): READ,
    ("GET", "/v3/deposits/closed"): READ,
    ("GET", "/v3/deposits/ByTxId/{txId}"): READ,
    ("GET", "/v3/deposits/{depositId}"): READ,
    ("GET", "/v3/withdrawals/open"): READ,
    ("GET", "/v3/withdrawals/closed"): READ,
    ("GET", "/v3/withdrawals/ByTxId/{txId}"): READ,
    ("GET", "/v3/withdrawals/whitelistAddresses"): READ,
    ("GET", "/v3/withdrawals/{withdrawalId}"): READ,
    ("GET", "/v3/transfers/sent"): READ,
    ("GET", "/v3/transfers/received"): READ,
    ("GET", "/v3/transfers/{transferId}"): READ,
    ("GET", "/v3/subaccounts"): READ,
    ("GET", "/v3/subaccounts/{subaccountId}"): READ,
    # must refuse (§11)
    ("POST", "/v3/withdrawals"): Endpoint("withdraw"),
    ("DELETE", "/v3/withdrawals/{withdrawalId}"): Endpoint("withdraw"),
    ("POST", "/v3/transfers"): Endpoint("transfer"),
    # Creating a deposit address moves nothing, but §11 refuses it with the transfers.
    ("POST", "/v3/addresses"): Endpoint("transfer"),
}
CATALOGUE = Catalogue(ENDPOINTS)

PUBLIC_PREFIXES = ("/v3/markets", "/v3/currencies", "/v3/ping")
BATCH_PATTERN = "/v3/batch"


def is_public_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PUBLIC_PREFIXES)


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify on the normalised path; POST /v3/batch by the operations in its body."""
    classified = classify_with(CATALOGUE, request, is_public_path=is_public_path)
    if classified.pattern == BATCH_PATTERN and classified.endpoint is not None:
        kind = _batch_kind(request)
        return ClassifiedRequest(
            kind, classified.method, classified.path, classified.endpoint, classified.pattern
        )
    return classified


def _batch_kind(request: httpx.Request) -> RequestKind:
    # Only order placements and cancellations were ever allowed in a batch;
    # anything else makes the whole request unknown.
    try:
        operations = {(resource, operation) for resource, operation, _ in _batch(request)}
    except InvalidInput:
        return "unknown_private"
    if not operations or not operations <= {("order", "post"), ("order", "delete")}:
        return "unknown_private"
    return "order_place" if ("order", "post") in operations else "order_cancel"


def _batch(request: httpx.Request) -> list[tuple[str, str, dict[str, Any]]]:
    body = _json_body(request.read())
    if not isinstance(body, list):
        raise InvalidInput("bittrex batch body is not a JSON list")
    result: list[tuple[str, str, dict[str, Any]]] = []
    for item in body:
        if not isinstance(item, dict):
            raise InvalidInput("bittrex batch item is not a JSON object")
        resource, operation, payload = (
            item.get("resource"),
            item.get("operation"),
            item.get("payload"),
        )
        if not (
            isinstance(resource, str) and isinstance(operation, str) and isinstance(payload, dict)
        ):
            raise InvalidInput("bittrex batch item lacks resource, operation or payload")
        result.append((resource.lower(), operation.lower(), payload))
    return result


# -- 4b. Rate limits -----------------------------------------------------------------------
# 60 requests a minute (§11 [unverified]); Bittrex closed in December 2023,
# so the table only keeps the profile complete.
RATE_LIMITS: tuple[RateLimit, ...] = (RateLimit("REQUESTS", 60, 60, "requests", "account"),)


# -- 5. Order-intent parser ----------------------------------------------------------------
def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order placed: POST /v3/orders, a conditional order's ``orderToCreate``,
    and each ``order``/``post`` item of a batch. ``limit`` is the price and
    ``ceiling`` the quote amount of CEILING_* orders. InvalidInput on bodies
    that are not the documented JSON. ``classified``: ``classify(request)``, when the
    caller made it already.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place":
        return []
    if classified.pattern == "/v3/orders":
        return [_intent(_object(_json_body(request.read())))]
    if classified.pattern == "/v3/conditional-orders":
        to_create = _object(_json_body(request.read())).get("orderToCreate")
        return [_intent(_object(to_create))] if to_create is not None else []
    if classified.pattern == BATCH_PATTERN:
        return [
            _intent(payload)
            for resource, operation, payload in _batch(request)
            if (resource, operation) == ("order", "post")
        ]
    return []


def _json_body(body: bytes) -> Any:
    # Numbers become Decimal and a repeated key is refused (load_json), so the
    # order keybroker checks is the order the exchange reads.
    return load_json(body or b"{}")


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput("bittrex order is not a JSON object")
    return value


def _decimal(value: object, field: str) -> Decimal | None:
    # The side is ``direction``: no Bittrex amount is signed.
    return parse_amount(value, exchange=NAME, field=field)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _intent(order: Mapping[str, Any]) -> OrderIntent:
    direction = _text(order.get("direction"))
    return OrderIntent(
        symbol=_text(order.get("marketSymbol")) or "",
        side=direction.lower() if direction else None,
        type=_text(order.get("type")),
        quantity=_decimal(order.get("quantity"), "quantity"),
        price=_decimal(order.get("limit"), "limit"),
        quote_quantity=_decimal(order.get("ceiling"), "ceiling"),
        client_order_id=_text(order.get("clientOrderId")),
    )


# -- 6. Error map ----------------------------------------------------------------------------
# Answers were {"code": "NAME", "detail": ..., "data": ...}; the names are from
# ccxt 4.0.50 (§11, unverified). Anything else falls back on the HTTP status.
ERROR_CODES: dict[str, type[UpstreamError]] = {
    "APIKEY_INVALID": AuthenticationFailed,
    "APIKEY_NOT_PROVIDED": AuthenticationFailed,
    "APISIGN_NOT_PROVIDED": AuthenticationFailed,
    "INVALID_SIGNATURE": AuthenticationFailed,
    "INVALID_PERMISSION": AuthenticationFailed,
    "WHITELIST_VIOLATION_IP": AuthenticationFailed,
    "INVALID_TIMESTAMP": TimestampOutsideWindow,
    "INSUFFICIENT_FUNDS": InsufficientBalance,
    "TOO_MANY_REQUESTS": RateLimitedUpstream,
    "THROTTLED": RateLimitedUpstream,
}


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error a Bittrex v3 answer stands for, or None for a 2xx success."""
    if 200 <= status < 300:
        return None
    code: str | None = None
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("code"), str):
        code = parsed["code"]
    cls = ERROR_CODES.get(code.upper()) if code else None
    if cls is None:
        if status in (401, 403):
            cls = AuthenticationFailed
        elif status == 429:
            cls = RateLimitedUpstream
        elif status >= 500:
            cls = ExchangeUnavailable
        elif code and ("ORDER" in code.upper() or "MIN_TRADE" in code.upper()):
            cls = OrderRejected
        else:
            cls = ExchangeRejected
    message = f"bittrex error {code or f'HTTP {status}'}"[:140]
    if cls is RateLimitedUpstream:
        retry_after = next(
            (value for name, value in headers.items() if name.lower() == "retry-after"), None
        )
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return RateLimitedUpstream(
            message, exchange=NAME, code=code, status=status, retry_after=seconds
        )
    return cls(message, exchange=NAME, code=code, status=status)


# -- 7. Key-permission query -----------------------------------------------------------------
PERMISSION_NOTE = (
    "Bittrex v3 had no endpoint that reports an API key's own permissions, "
    "and the exchange closed in December 2023"
)


PROFILE = ExchangeProfile(
    name=NAME,
    env_prefix="BITTREX",
    base_urls=BASE_URLS,
    route_base_url=base_url,
    credentials=CREDENTIALS,
    sign_request=sign,
    catalogue=CATALOGUE,
    classify_request=classify,
    parse_order_request=parse_order,
    map_error_response=map_error,
    permission_note=PERMISSION_NOTE,
    is_closed=True,
    rate_limits=RATE_LIMITS,
)
