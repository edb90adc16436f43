"""coinbase-exchange: the legacy Coinbase Exchange REST API (HMAC keys with a passphrase).

    >>> request = httpx.Request("GET", "https://api.exchange.coinbase.com/orders?status=open")
    >>> PROFILE.sign(request, credential).headers["CB-ACCESS-TIMESTAMP"]
    '1700000000'

``CB-ACCESS-SIGN = base64(HMAC-SHA256(base64decode(secret), timestamp + METHOD
+ path?query + body))``: unlike Advanced Trade, the query and body are
signed, exactly as sent. The timestamp is in seconds and must be within
30 s of the exchange's clock. Keys belong to one profile (portfolio); their
View/Trade/Transfer/Manage permissions are chosen at creation and cannot be
queried. Source: exchange-auth.md §8.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx

from keybroker.crypto import signing
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
    classify_either_method,
    json_order_with_id,
    parse_amount,
    uuid_client_id,
)
from keybroker.model import Credential
from keybroker.secret import Secret

NAME = "coinbase-exchange"

# -- 1. Base URLs ------------------------------------------------------------------
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://api.exchange.coinbase.com",
        "testnet": "https://api-public.sandbox.exchange.coinbase.com",
    },
}


def base_url(path: str, environment: str) -> str:
    """The REST host for ``environment``; InvalidInput for an unknown one."""
    url = BASE_URLS["rest"].get(environment)
    if url is None:
        raise InvalidInput(f"coinbase-exchange has no {environment} environment")
    return url


# -- 2. Credential rules --------------------------------------------------------------
def _decoded_secret(secret: Secret) -> bytes:
    # The HMAC key is the base64 *decoding* of the secret Coinbase shows.
    try:
        key = base64.b64decode(secret.reveal(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("secret is not base64 (Coinbase Exchange secrets are)") from None
    if not key:
        raise InvalidInput("secret is empty")
    return key


def check_secret(secret: Secret, key_type: str) -> None:
    """The secret must be base64 that decodes; the message never shows the value."""
    _decoded_secret(secret)


CREDENTIALS = CredentialRules(
    needs_passphrase=True, key_types=("hmac",), check_secret=check_secret, hmac_key=_decoded_secret
)


# -- 3. Signer ---------------------------------------------------------------------------
def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Set the four ``CB-ACCESS-*`` headers, signing the exact path, query and body bytes.

    The timestamp is whole seconds (``now_ms // 1000``). Existing
    ``CB-ACCESS-*`` headers are replaced; nothing else changes. Raises
    SigningError without a passphrase.
    """
    if credential.passphrase is None or not credential.passphrase:
        raise SigningError("coinbase-exchange keys need a passphrase")
    timestamp = str(now_ms // 1000)
    body = request.read()
    # raw_path is the path and query exactly as they go on the wire.
    prehash = timestamp.encode("ascii") + request.method.encode("ascii") + request.url.raw_path
    signature = signing.hmac_sha256_b64(credential.secret, prehash + body, _decoded_secret)
    headers = {
        "CB-ACCESS-KEY": credential.api_key,
        "CB-ACCESS-SIGN": signature,
        "CB-ACCESS-TIMESTAMP": timestamp,
        "CB-ACCESS-PASSPHRASE": credential.passphrase.reveal_text(),
    }
    if body:
        # Always re-set, so a re-signed request keeps its header order.
        headers["Content-Type"] = request.headers.get("content-type") or "application/json"
    return _wire.replace_headers(request, headers)


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Every weight is 1: the limit is a token bucket per profile (private) or per IP
# (public), about 15 and 10 requests per second (unverified).
_PUBLIC = Endpoint("public")
_READ = Endpoint("account_read")
_ORDER_READ = Endpoint("order_read")
_CANCEL = Endpoint("order_cancel", order_count=1)
_TRANSFER = Endpoint("transfer")
_WITHDRAW = Endpoint("withdraw")
# Creating, renaming or deactivating profiles and account settings:
# administration of the account itself, never signed.
_ADMIN = Endpoint("key_management")

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # market data
    ("GET", "/currencies"): _PUBLIC,
    ("GET", "/currencies/{currency_id}"): _PUBLIC,
    ("GET", "/products"): _PUBLIC,
    ("GET", "/products/{product_id}"): _PUBLIC,
    ("GET", "/products/{product_id}/book"): _PUBLIC,
    ("GET", "/products/{product_id}/candles"): _PUBLIC,
    ("GET", "/products/{product_id}/stats"): _PUBLIC,
    ("GET", "/products/{product_id}/ticker"): _PUBLIC,
    ("GET", "/products/{product_id}/trades"): _PUBLIC,
    ("GET", "/products/spark-lines"): _PUBLIC,
    ("GET", "/products/volume-summary"): _PUBLIC,
    ("GET", "/time"): _PUBLIC,
    ("GET", "/wrapped-assets"): _PUBLIC,
    ("GET", "/wrapped-assets/{wrapped_asset_id}"): _PUBLIC,
    ("GET", "/wrapped-assets/{wrapped_asset_id}/conversion-rate"): _PUBLIC,
    # account reads
    ("GET", "/accounts"): _READ,
    ("GET", "/accounts/{account_id}"): _READ,
    ("GET", "/accounts/{account_id}/holds"): _READ,
    ("GET", "/accounts/{account_id}/ledger"): _READ,
    ("GET", "/accounts/{account_id}/transfers"): _READ,
    ("GET", "/coinbase-accounts"): _READ,
    ("GET", "/fees"): _READ,
    ("GET", "/funding"): _READ,
    ("GET", "/oracle"): _READ,
    ("GET", "/payment-methods"): _READ,
    ("GET", "/position"): _READ,
    ("GET", "/profiles"): _READ,
    ("GET", "/profiles/{profile_id}"): _READ,
    ("GET", "/reports/{report_id}"): _READ,
    ("POST", "/reports"): _READ,
    ("GET", "/transfers"): _READ,
    ("GET", "/transfers/{transfer_id}"): _READ,
    ("GET", "/travel-rules"): _READ,
    ("GET", "/users/self/exchange-limits"): _READ,
    ("GET", "/users/self/hold-balances"): _READ,
    ("GET", "/users/self/trailing-volume"): _READ,
    ("GET", "/users/{user_id}/trading-volumes"): _READ,
    ("GET", "/conversions"): _READ,
    ("GET", "/conversions/fees"): _READ,
    ("GET", "/conversions/{conversion_id}"): _READ,
    ("GET", "/margin/profile_information"): _READ,
    ("GET", "/margin/buying_power"): _READ,
    ("GET", "/margin/withdrawal_power"): _READ,
    ("GET", "/margin/withdrawal_power_all"): _READ,
    ("GET", "/margin/exit_plan"): _READ,
    ("GET", "/margin/liquidation_history"): _READ,
    ("GET", "/margin/position_refresh_amounts"): _READ,
    ("GET", "/margin/status"): _READ,
    ("GET", "/loans"): _READ,
    ("GET", "/loans/assets"): _READ,
    ("GET", "/loans/interest"): _READ,
    ("GET", "/loans/interest/{loan_id}"): _READ,
    ("GET", "/loans/interest/history/{loan_id}"): _READ,
    ("GET", "/loans/lending-overview"): _READ,
    ("GET", "/loans/lending-overview-xm"): _READ,
    ("GET", "/loans/loan-preview"): _READ,
    ("GET", "/loans/loan-preview-xm"): _READ,
    ("GET", "/loans/options"): _READ,
    ("GET", "/loans/repayment-preview"): _READ,
    ("GET", "/loans/repayment-preview-xm"): _READ,
    ("GET", "/wrapped-assets/redeem"): _READ,
    ("GET", "/wrapped-assets/redeem/{redeem_id}"): _READ,
    ("GET", "/wrapped-assets/stake-wrap"): _READ,
    ("GET", "/wrapped-assets/stake-wrap/{stake_wrap_id}"): _READ,
    # orders
    ("GET", "/orders"): _ORDER_READ,
    ("GET", "/orders/{order_id}"): _ORDER_READ,
    ("GET", "/orders/client:{client_oid}"): _ORDER_READ,
    ("GET", "/fills"): _ORDER_READ,
    ("GET", "/otc/orders"): _ORDER_READ,
    ("POST", "/orders"): Endpoint("order_place", order_count=1),
    ("DELETE", "/orders"): Endpoint("order_cancel"),
    ("DELETE", "/orders/{order_id}"): _CANCEL,
    ("DELETE", "/orders/client:{client_oid}"): _CANCEL,
    # withdrawals, and what exists only to prepare one (fee quotes, the address
    # book of destinations)
    ("POST", "/withdrawals/crypto"): _WITHDRAW,
    ("POST", "/withdrawals/coinbase"): _WITHDRAW,
    ("POST", "/withdrawals/coinbase-account"): _WITHDRAW,
    ("POST", "/withdrawals/payment-method"): _WITHDRAW,
    ("POST", "/withdrawals/counterparty"): _WITHDRAW,
    ("GET", "/withdrawals/fee-estimate"): _WITHDRAW,
    ("GET", "/address-book"): _WITHDRAW,
    ("GET", "/address-book/counterparty"): _WITHDRAW,
    ("POST", "/address-book"): _WITHDRAW,
    ("PUT", "/address-book/{entry_id}"): _WITHDRAW,
    ("DELETE", "/address-book/{entry_id}"): _WITHDRAW,
    # funds moving between profiles, currencies, products and the bank
    ("POST", "/profiles/transfer"): _TRANSFER,
    ("POST", "/profiles/margin-transfer"): _TRANSFER,
    ("POST", "/deposits/coinbase-account"): _TRANSFER,
    ("POST", "/deposits/payment-method"): _TRANSFER,
    ("POST", "/coinbase-accounts/{account_id}/addresses"): _TRANSFER,
    ("POST", "/conversions"): _TRANSFER,
    ("POST", "/funding/repay"): _TRANSFER,
    ("POST", "/travel-rules"): _TRANSFER,
    ("DELETE", "/travel-rules/{travel_rule_id}"): _TRANSFER,
    ("POST", "/transfers/{transfer_id}/travel-rules"): _TRANSFER,
    ("POST", "/loans/open"): _TRANSFER,
    ("POST", "/loans/repay-interest"): _TRANSFER,
    ("POST", "/loans/repay-principal"): _TRANSFER,
    ("POST", "/wrapped-assets/redeem"): _TRANSFER,
    ("POST", "/wrapped-assets/stake-wrap"): _TRANSFER,
    # account administration
    ("POST", "/profiles"): _ADMIN,
    ("PUT", "/profiles/{profile_id}"): _ADMIN,
    ("PUT", "/profiles/{profile_id}/deactivate"): _ADMIN,
    ("POST", "/users/{user_id}/settlement-preferences"): _ADMIN,
}
CATALOGUE = Catalogue(ENDPOINTS)


def is_public_path(path: str) -> bool:
    """Market data not listed above (new ``/products/...`` reads) is public; nothing else."""
    return path in ("/products", "/currencies", "/time") or path.startswith(
        ("/products/", "/currencies/")
    )


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify by method and path: the operation is never in the body here."""
    return classify_either_method(CATALOGUE, request, is_public_path=is_public_path)


# -- 4b. Rate limits -----------------------------------------------------------------------
# A token bucket per profile for private endpoints, about 15 requests a
# second, and per IP for public ones, about 10 (§8.6 [unverified]). A window
# of that many per second never overdraws a bucket refilling at that rate.
# No usage headers are documented.
RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit("PRIVATE", 15, 1, "requests", "account", kinds=PRIVATE_KINDS),
    RateLimit("PUBLIC", 10, 1, "requests", "ip", kinds=("public",)),
)


# -- 5. Order-intent parser ----------------------------------------------------------------
def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """The intent of ``POST /orders`` (JSON); [] for any other request.

    ``size`` is the quantity, ``funds`` the quote quantity (market orders),
    ``price`` the limit price; ``stop_price`` is a trigger, not a price.
    ``classified``: ``classify(request)``, when the caller made it already.
    """
    if (classified or classify(request)).kind != "order_place":
        return []
    body = _wire.load_json(request.read())
    if not isinstance(body, dict):
        raise InvalidInput("coinbase-exchange order body must be a JSON object")
    side = _text(body.get("side"))
    order_type = _text(body.get("type"))
    return [
        OrderIntent(
            symbol=_text(body.get("product_id")) or "",
            side=side.lower() if side else None,
            type=order_type.lower() if order_type else None,
            quantity=_amount(body, "size"),
            price=_amount(body, "price"),
            quote_quantity=_amount(body, "funds"),
            client_order_id=_text(body.get("client_oid")),
        )
    ]


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _amount(fields: Mapping[str, Any], name: str) -> Decimal | None:
    # The side is ``side``: no amount here is signed.
    return parse_amount(fields.get(name), exchange=NAME, field=name)


# -- 6. Error map ----------------------------------------------------------------------------
# Coinbase Exchange answers errors as {"message": "..."} with no code, so the
# message (matched case-insensitively, whole or as a phrase) is the code.
ERRORS: dict[str, type[UpstreamError]] = {
    "invalid signature": AuthenticationFailed,
    "invalid api key": AuthenticationFailed,
    "invalid passphrase": AuthenticationFailed,
    "request timestamp expired": TimestampOutsideWindow,
    "private rate limit exceeded": RateLimitedUpstream,
    "public rate limit exceeded": RateLimitedUpstream,
    "insufficient funds": InsufficientBalance,
    "trading pair not available": OrderRejected,
    "product not found": OrderRejected,
    "size is too small": OrderRejected,
    "size is too large": OrderRejected,
    "price too small": OrderRejected,
    "price too precise": OrderRejected,
    "post only mode": OrderRejected,
    "invalid order id": OrderRejected,
    "under maintenance": ExchangeUnavailable,
    "cancel only mode": ExchangeUnavailable,
}


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error for a Coinbase Exchange answer, or None for a 2xx.

    The known message (whole or as a phrase) decides first, then the status:
    401/403 authentication, 429 rate limit, 5xx unavailable, other 4xx a
    plain refusal. The code is the matched phrase, or the HTTP status.
    """
    if status < 400:
        return None
    text = _message(body).lower()
    matched = next((phrase for phrase in ERRORS if phrase in text), None)
    kind = ERRORS.get(matched) if matched else None
    code: str | int = matched or status
    if status == 429 or (kind is not None and issubclass(kind, RateLimitedUpstream)):
        return RateLimitedUpstream(
            f"coinbase-exchange: rate limited ({code})",
            exchange=NAME,
            code=code,
            status=status,
            retry_after=_retry_after(headers),
        )
    if kind is None:
        if status in (401, 403):
            kind = AuthenticationFailed
        elif status >= 500:
            kind = ExchangeUnavailable
        else:
            kind = ExchangeRejected
    return kind(
        f"coinbase-exchange: {code} (HTTP {status})", exchange=NAME, code=code, status=status
    )


def _message(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    message = payload.get("message") if isinstance(payload, dict) else None
    return message if isinstance(message, str) else ""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


# -- 7. Key-permission query -------------------------------------------------------------------
PERMISSION_NOTE = (
    "Coinbase Exchange has no endpoint that describes the calling key: its View, Trade, "
    "Transfer and Manage permissions and IP allowlist are fixed when the key is created. "
    "Create keys with View and Trade only, and an IP allowlist."
)


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# POST /orders takes client_oid, which must be a UUID (Coinbase Exchange
# "Create a new order"); the gateway adds one made from its own id. GET
# /orders/client:{client_oid} finds the order; 404 means Coinbase has no
# order by that id.
def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``client_oid`` first in an order that has none."""
    if (classified or classify(request)).kind != "order_place":
        return request
    body = request.read()
    payload = _wire.load_json(body)
    if not isinstance(payload, dict) or _text(payload.get("client_oid")) is not None:
        return request
    member = json.dumps(uuid_client_id(new_id()))
    return _wire.with_body(request, _wire.insert_json_member(body, "client_oid", member))


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    an order without ``client_oid``."""
    if classified.kind != "order_place":
        return request, list(intents)
    return json_order_with_id(request, intents, "client_oid", lambda: uuid_client_id(new_id()))


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """GET /orders/client:{client_oid}."""
    if not intent.client_order_id or classify(request).kind != "order_place":
        return None
    path = "/orders/client:" + _wire.quote_rfc3986(intent.client_order_id)
    return httpx.Request("GET", request.url.copy_with(path=path, query=None))


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    if status == 404:
        return "absent"
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "unknown"
    return (
        "found" if status == 200 and isinstance(payload, dict) and payload.get("id") else "unknown"
    )


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /products/{product_id}/ticker (public)."""
    path = f"/products/{_wire.quote_rfc3986(symbol)}/ticker"
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
    env_prefix="COINBASE_EXCHANGE",
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
