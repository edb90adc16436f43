"""bybit: everything keybroker knows about Bybit API v5's wire format.

    >>> signed = PROFILE.sign(httpx.Request("GET", url), credential, now_ms=1_658_384_314_791)
    >>> signed.headers["X-BAPI-TIMESTAMP"], signed.headers["X-BAPI-RECV-WINDOW"]
    ('1658384314791', '5000')

Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, order tools, WebSockets, PROFILE. Source of truth:
../shared/design/exchange-auth.md §5; section 9 from Bybit's v5 WebSocket docs
(v5/ws/connect, v5/websocket/trade/guideline) and ccxt 4.5.90's pro/bybit.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import httpx

from keybroker.crypto.signing import hmac_sha256_hex, load_private_key, rsa_sha256_b64
from keybroker.errors import (
    AuthenticationFailed,
    ExchangeRejected,
    ExchangeUnavailable,
    InsufficientBalance,
    InvalidInput,
    IPBanned,
    OrderRejected,
    RateLimitedUpstream,
    SigningError,
    TimestampOutsideWindow,
    UpstreamError,
)
from keybroker.exchanges import _wire
from keybroker.exchanges._wire import load_json, replace_headers
from keybroker.exchanges.base import (
    DANGEROUS_KINDS,
    METHOD_OVERRIDE_HEADERS,
    PRIVATE_KINDS,
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
    RestTwin,
    WebSocketSupport,
    WsCall,
    classify_with,
    json_order_with_id,
    parse_amount,
    read_usage_headers,
    uuid_client_id,
)
from keybroker.model import Credential
from keybroker.secret import Secret

NAME = "bybit"

# -- 1. Base URLs ------------------------------------------------------------------
# One host per environment serves spot, derivatives and options alike. Demo
# trading keys are made in the mainnet account's Demo Trading mode and work
# only against api-demo; a Credential has no "demo" environment, so such a key
# is stored with base_url set to the demo host. Regional mainnets
# (api.bybit.nl, api.bybit.tr, ...) likewise go through Credential.base_url.
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://api.bybit.com",
        "testnet": "https://api-testnet.bybit.com",
        "demo": "https://api-demo.bybit.com",
    },
}


def base_url(path: str, environment: str) -> str:
    """The REST base URL for ``environment``; Bybit has one host for all paths."""
    urls = BASE_URLS["rest"]
    try:
        return urls[environment]
    except KeyError:
        raise InvalidInput(
            f"unknown environment {environment!r}; choose one of: {', '.join(urls)}"
        ) from None


# -- 2. Credential rules --------------------------------------------------------------
def check_secret(secret: Secret, key_type: str) -> None:
    """An RSA key's secret must be a PEM RSA private key (HMAC secrets: base checks suffice)."""
    if key_type != "rsa":
        return
    try:
        load_private_key(secret.reveal(), "rsa")
    except SigningError:
        raise InvalidInput("secret is not an RSA private key in PEM form") from None


# System-generated keys are HMAC; self-generated keys are RSA (the public key
# is uploaded to Bybit, the PEM private key is our secret). No passphrase.
CREDENTIALS = CredentialRules(
    needs_passphrase=False, key_types=("hmac", "rsa"), check_secret=check_secret
)


# -- 3. Signer ---------------------------------------------------------------------------
HEADER_KEY = "X-BAPI-API-KEY"
HEADER_TIMESTAMP = "X-BAPI-TIMESTAMP"
HEADER_SIGN = "X-BAPI-SIGN"
HEADER_RECV_WINDOW = "X-BAPI-RECV-WINDOW"
# v3's signature-type header; v5 has none, so a stale copy is dropped.
HEADER_SIGN_TYPE = "X-BAPI-SIGN-TYPE"
DEFAULT_RECV_WINDOW = "5000"
_RECV_WINDOW = re.compile(r"[1-9][0-9]{0,5}")


def string_to_sign(request: httpx.Request, api_key: str, stamp: str, recv_window: str) -> bytes:
    """``timestamp + apiKey + recvWindow + payload``, no separators.

    The payload is the query string exactly as it goes on the wire for GET,
    and the exact body bytes otherwise: Bybit verifies over what it receives,
    so neither is rebuilt or re-encoded here.
    """
    payload = request.url.query if request.method.upper() == "GET" else request.read()
    return (stamp + api_key + recv_window).encode("utf-8") + payload


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Sign ``request`` for Bybit v5; existing X-BAPI-* auth headers are replaced.

    A recv window the client already set is kept (it is the client's choice
    of how stale a request may be); otherwise the default 5000 ms is sent.
    HMAC keys sign with HMAC-SHA256 as lowercase hex, RSA keys with
    RSASSA-PKCS1-v1_5/SHA-256 as base64. Raises SigningError for other key
    types or an unusable key, InvalidInput for a malformed recv window.
    """
    recv_window = request.headers.get(HEADER_RECV_WINDOW, DEFAULT_RECV_WINDOW).strip()
    if not _RECV_WINDOW.fullmatch(recv_window):
        raise InvalidInput("X-BAPI-RECV-WINDOW must be a whole number of milliseconds")
    stamp = str(now_ms)
    message = string_to_sign(request, credential.api_key, stamp, recv_window)
    if credential.key_type == "hmac":
        signature = hmac_sha256_hex(credential.secret, message)
    elif credential.key_type == "rsa":
        signature = rsa_sha256_b64(credential.secret.reveal(), message)
    else:
        raise SigningError("bybit keys are HMAC or RSA keys; this credential is neither")
    headers = {
        HEADER_KEY: credential.api_key,
        HEADER_TIMESTAMP: stamp,
        HEADER_SIGN: signature,
        HEADER_RECV_WINDOW: recv_window,
    }
    if request.method.upper() != "GET":
        # Re-set (not merely added) so the header order is the same when a
        # signed request is signed again.
        headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
    return replace_headers(request, headers, remove=(HEADER_SIGN_TYPE,))


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Bybit limits each endpoint per UID per second (e.g. /v5/order/create 10/s
# for derivatives, 20/s for spot), plus 600 requests per 5 s per IP; there is
# no shared weight budget, so every weight is 1: one request against that
# endpoint's own limit. Batch endpoints carry up to 10-20 orders, one per
# intent that parse_order returns.
_ACCOUNT = Endpoint("account_read")
_ORDER_READ = Endpoint("order_read")
_PLACE = Endpoint("order_place", order_count=1)
_PLACE_BATCH = Endpoint("order_place", order_count=1, is_batch=True)
_CANCEL = Endpoint("order_cancel")
_CANCEL_BATCH = Endpoint("order_cancel", is_batch=True)
# Change the risk of positions on one symbol; order-kinds so that symbol
# rules and leverage caps apply to them.
_SETTING = Endpoint("order_place")
_TRANSFER = Endpoint("transfer")
_WITHDRAW = Endpoint("withdraw")
_KEYS = Endpoint("key_management")

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # account reads
    **{
        ("GET", f"/v5/account/{name}"): _ACCOUNT
        for name in (
            "wallet-balance",
            "info",
            "fee-rate",
            "transaction-log",
            "collateral-info",
            "borrow-history",
            "withdrawal",
        )
    },
    **{
        ("GET", f"/v5/asset/{name}"): _ACCOUNT
        for name in (
            "transfer/query-account-coins-balance",
            "transfer/query-account-coin-balance",
            "transfer/query-asset-info",
            "transfer/query-transfer-coin-list",
            "transfer/query-inter-transfer-list",
            "transfer/query-universal-transfer-list",
            "deposit/query-record",
            "deposit/query-address",
            "withdraw/query-record",
            "withdraw/withdrawable-amount",
            "coin/query-info",
            "delivery-record",
            "settlement-record",
        )
    },
    ("GET", "/v5/user/query-api"): _ACCOUNT,
    ("GET", "/v5/user/get-member-type"): _ACCOUNT,
    ("GET", "/v5/user/query-sub-members"): _ACCOUNT,
    # order and position reads
    ("GET", "/v5/order/realtime"): _ORDER_READ,
    ("GET", "/v5/order/history"): _ORDER_READ,
    ("GET", "/v5/order/spot-borrow-check"): _ORDER_READ,
    ("GET", "/v5/execution/list"): _ORDER_READ,
    ("GET", "/v5/position/list"): _ORDER_READ,
    ("GET", "/v5/position/closed-pnl"): _ORDER_READ,
    # orders
    ("POST", "/v5/order/create"): _PLACE,
    ("POST", "/v5/order/create-batch"): _PLACE_BATCH,
    ("POST", "/v5/order/amend"): _PLACE,
    ("POST", "/v5/order/amend-batch"): _PLACE_BATCH,
    ("POST", "/v5/position/set-leverage"): _SETTING,
    ("POST", "/v5/position/trading-stop"): _SETTING,
    ("POST", "/v5/order/cancel"): _CANCEL,
    ("POST", "/v5/order/cancel-batch"): _CANCEL_BATCH,
    ("POST", "/v5/order/cancel-all"): _CANCEL,
    ("POST", "/v5/order/disconnected-cancel-all"): _CANCEL,
    # -- must refuse (§5.5): withdrawals ---------------------------------------
    ("POST", "/v5/asset/withdraw/create"): _WITHDRAW,
    ("POST", "/v5/asset/withdraw/cancel"): _WITHDRAW,
    # -- must refuse: transfers, conversions, earn, loans ---------------------
    ("POST", "/v5/asset/transfer/inter-transfer"): _TRANSFER,
    ("POST", "/v5/asset/transfer/universal-transfer"): _TRANSFER,
    ("POST", "/v5/asset/transfer/save-transfer-sub-member"): _TRANSFER,
    ("POST", "/v5/asset/deposit/deposit-to-account"): _TRANSFER,
    ("POST", "/v5/asset/exchange/quote-apply"): _TRANSFER,
    ("POST", "/v5/asset/exchange/convert-execute"): _TRANSFER,
    # "covert" is Bybit's own spelling of this path; both are listed.
    ("POST", "/v5/asset/covert/small-balance-execute"): _TRANSFER,
    ("POST", "/v5/asset/convert/small-balance-execute"): _TRANSFER,
    ("POST", "/v5/fiat/quote-apply"): _TRANSFER,
    ("POST", "/v5/fiat/trade-execute"): _TRANSFER,
    ("POST", "/v5/lending/purchase"): _TRANSFER,
    ("POST", "/v5/lending/redeem"): _TRANSFER,
    ("POST", "/v5/lending/redeem-cancel"): _TRANSFER,
    ("POST", "/v5/spot-lever-token/purchase"): _TRANSFER,
    ("POST", "/v5/spot-lever-token/redeem"): _TRANSFER,
    ("POST", "/v5/position/move-positions"): _TRANSFER,
    ("POST", "/v5/account/borrow"): _TRANSFER,
    ("POST", "/v5/account/repay"): _TRANSFER,
    ("POST", "/v5/account/quick-repayment"): _TRANSFER,
    ("POST", "/v5/account/no-convert-repay"): _TRANSFER,
    ("POST", "/v5/earn/place-order"): _TRANSFER,
    ("POST", "/v5/crypto-loan/borrow"): _TRANSFER,
    ("POST", "/v5/crypto-loan/repay"): _TRANSFER,
    ("POST", "/v5/crypto-loan/adjust-ltv"): _TRANSFER,
    ("POST", "/v5/ins-loan/repay-loan"): _TRANSFER,
    ("POST", "/v5/spot-margin-trade/fixedborrow"): _TRANSFER,
    ("POST", "/v5/spot-cross-margin-trade/loan"): _TRANSFER,
    ("POST", "/v5/spot-cross-margin-trade/repay"): _TRANSFER,
    ("POST", "/v5/broker/award/distribute-award"): _TRANSFER,
    # -- must refuse: API keys and sub-members --------------------------------
    ("POST", "/v5/user/create-sub-api"): _KEYS,
    ("POST", "/v5/user/update-api"): _KEYS,
    ("POST", "/v5/user/update-sub-api"): _KEYS,
    ("POST", "/v5/user/delete-api"): _KEYS,
    ("POST", "/v5/user/delete-sub-api"): _KEYS,
    ("POST", "/v5/user/create-sub-member"): _KEYS,
    ("POST", "/v5/user/frozen-sub-member"): _KEYS,
    # A GET that deletes a sub-member (ccxt's API map lists it as GET).
    ("GET", "/v5/user/del-submember"): _KEYS,
    ("GET", "/v5/user/sub-apikeys"): _KEYS,
}

CATALOGUE = Catalogue(ENDPOINTS)

_PUBLIC_PREFIXES = ("/v5/market/", "/v5/announcements/", "/v5/system/")


def is_public_path(path: str) -> bool:
    """Market data, announcements and system status need no key."""
    return path.startswith(_PUBLIC_PREFIXES)


def _classify_one(request: httpx.Request) -> ClassifiedRequest:
    result = classify_with(CATALOGUE, request, is_public_path=is_public_path)
    if result.endpoint is None:
        if "withdraw" in result.path:
            return ClassifiedRequest("withdraw", result.method, result.path, None)
        # Everything under /v5/user/ that is not listed above manages
        # sub-members or API keys.
        if result.path.startswith("/v5/user/") or "apikey" in result.path:
            return ClassifiedRequest("key_management", result.method, result.path, None)
    return result


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify against the catalogue (an allowlist: anything unknown is denied).

    Two additions to the shared matcher. An unknown path that names a
    withdrawal, or lies under /v5/user/, is classified as the dangerous kind
    it is, so a new endpoint of that sort is logged as the attempt it is. And
    a method-override header that disagrees with the real method is read both
    ways: Bybit acts on the real method, the shared matcher on the override,
    so ``POST /v5/order/create`` dressed as a GET would otherwise pass as a
    read; the dangerous reading wins, and any other disagreement is unknown.
    """
    result = _classify_one(request)
    if result.method == request.method.upper():
        return result
    plain = _classify_one(_without_override(request))
    for candidate in (result, plain):
        if candidate.kind in DANGEROUS_KINDS:
            return candidate
    if plain.kind == result.kind:
        return plain
    return ClassifiedRequest("unknown_private", plain.method, plain.path, None)


def _without_override(request: httpx.Request) -> httpx.Request:
    headers = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in METHOD_OVERRIDE_HEADERS
    ]
    return httpx.Request(request.method, request.url, headers=headers)


# -- 4b. Rate limits -----------------------------------------------------------------------
# Bybit limits each private endpoint per UID over a rolling second, and every
# request per IP to 600 per 5 s, past which it bans the IP with HTTP 403 for
# ten minutes or more (§5.6). Responses to private calls carry the endpoint's
# limit and what is left of it (X-Bapi-Limit, X-Bapi-Limit-Status). The
# per-endpoint numbers are ccxt 4.5.90's cost table (requests per second =
# 50 / cost), lowered to the spec's 10/s for order create and cancel (10 for
# derivatives, 20 for spot: the category is in the body, so the lower one),
# and the spec's 50/s for /v5/order/realtime; an endpoint not listed gets 10.
_PER_ENDPOINT: dict[str, float] = {
    "GET /v5/account/wallet-balance": 50,
    "GET /v5/account/info": 10,
    "GET /v5/account/fee-rate": 5,
    "GET /v5/account/transaction-log": 30,
    "GET /v5/account/collateral-info": 50,
    "GET /v5/account/borrow-history": 50,
    "GET /v5/account/withdrawal": 10,
    "GET /v5/asset/transfer/query-account-coins-balance": 2,
    "GET /v5/asset/transfer/query-account-coin-balance": 1,
    "GET /v5/asset/transfer/query-asset-info": 1,
    "GET /v5/asset/transfer/query-transfer-coin-list": 1,
    "GET /v5/asset/transfer/query-inter-transfer-list": 1,
    "GET /v5/asset/transfer/query-universal-transfer-list": 2,
    "GET /v5/asset/deposit/query-record": 5,
    "GET /v5/asset/deposit/query-address": 5,
    "GET /v5/asset/withdraw/query-record": 5,
    "GET /v5/asset/withdraw/withdrawable-amount": 10,
    "GET /v5/asset/coin/query-info": 2,
    "GET /v5/asset/delivery-record": 10,
    "GET /v5/asset/settlement-record": 10,
    "GET /v5/user/query-api": 10,
    "GET /v5/user/get-member-type": 10,
    "GET /v5/user/query-sub-members": 10,
    "GET /v5/order/realtime": 50,
    "GET /v5/order/history": 10,
    "GET /v5/order/spot-borrow-check": 50,
    "GET /v5/execution/list": 10,
    "GET /v5/position/list": 10,
    "GET /v5/position/closed-pnl": 10,
    "POST /v5/order/create": 10,
    "POST /v5/order/create-batch": 10,
    "POST /v5/order/amend": 10,
    "POST /v5/order/amend-batch": 10,
    "POST /v5/order/cancel": 10,
    "POST /v5/order/cancel-batch": 10,
    "POST /v5/order/cancel-all": 1,
    "POST /v5/order/disconnected-cancel-all": 10,
    "POST /v5/position/set-leverage": 10,
    "POST /v5/position/trading-stop": 10,
}
RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit("IP", 600, 5, "requests", "ip"),
    RateLimit(
        "ENDPOINT",
        10,
        1,
        "requests",
        "endpoint",
        kinds=PRIVATE_KINDS,
        endpoint_capacities=tuple(_PER_ENDPOINT.items()),
    ),
)


def read_usage(headers: Mapping[str, str]) -> dict[str, float]:
    """{"ENDPOINT": used} from X-Bapi-Limit minus X-Bapi-Limit-Status (what is left)."""
    found = read_usage_headers(
        headers, {"x-bapi-limit": "limit", "x-bapi-limit-status": "remaining"}
    )
    if "limit" not in found or "remaining" not in found:
        return {}
    return {"ENDPOINT": max(0.0, found["limit"] - found["remaining"])}


# -- 5. Order-intent parser ----------------------------------------------------------------
def _decimal(order: Mapping[str, Any], field: str) -> Decimal | None:
    # The side is ``side``: no Bybit amount is signed.
    return parse_amount(order.get(field), exchange=NAME, field=field)


def _text(order: Mapping[str, Any], field: str) -> str | None:
    value = order.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"bybit order field {field} is not a string")
    return value


def _flag(order: Mapping[str, Any], field: str) -> bool | None:
    value = order.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"bybit order field {field} is not true or false")


def _symbol(order: Mapping[str, Any]) -> str:
    symbol = _text(order, "symbol")
    if symbol is None:
        raise InvalidInput("bybit order has no symbol")
    return symbol


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _qty_is_quote(order: Mapping[str, Any], category: str) -> bool:
    # Bybit's spot Market Buy counts qty in the quote coin unless marketUnit
    # says baseCoin; marketUnit quoteCoin makes any spot market order's qty a
    # quote amount. Everywhere else qty is the base amount (or contracts).
    if category.lower() != "spot" or (_lower(_text(order, "orderType")) != "market"):
        return False
    unit = _text(order, "marketUnit")
    if unit is not None:
        return unit == "quoteCoin"
    return _lower(_text(order, "side")) == "buy"


def _reduce_only(order: Mapping[str, Any]) -> bool | None:
    reduce_only = _flag(order, "reduceOnly")
    close_on_trigger = _flag(order, "closeOnTrigger")
    if reduce_only is None and close_on_trigger is None:
        return None
    return bool(reduce_only) or bool(close_on_trigger)


def _place_intent(order: Mapping[str, Any], category: str) -> OrderIntent:
    quantity = _decimal(order, "qty")
    quote = _qty_is_quote(order, category)
    return OrderIntent(
        symbol=_symbol(order),
        side=_lower(_text(order, "side")),
        type=_lower(_text(order, "orderType")),
        quantity=None if quote else quantity,
        price=_decimal(order, "price"),
        quote_quantity=quantity if quote else None,
        client_order_id=_text(order, "orderLinkId"),
        reduce_only=_reduce_only(order),
    )


def _amend_intent(order: Mapping[str, Any], category: str) -> OrderIntent:
    return OrderIntent(
        symbol=_symbol(order),
        type="amend",
        quantity=_decimal(order, "qty"),
        price=_decimal(order, "price"),
        client_order_id=_text(order, "orderLinkId"),
    )


def _leverage_intent(order: Mapping[str, Any], category: str) -> OrderIntent:
    levels = [
        level
        for level in (_decimal(order, "buyLeverage"), _decimal(order, "sellLeverage"))
        if level is not None
    ]
    return OrderIntent(
        symbol=_symbol(order),
        type="set_leverage",
        leverage=max(levels) if levels else None,
    )


def _trading_stop_intent(order: Mapping[str, Any], category: str) -> OrderIntent:
    # Take-profit / stop-loss on an open position: it can only close it.
    return OrderIntent(symbol=_symbol(order), type="trading_stop", reduce_only=True)


_INTENT_PARSERS = {
    "/v5/order/create": _place_intent,
    "/v5/order/create-batch": _place_intent,
    "/v5/order/amend": _amend_intent,
    "/v5/order/amend-batch": _amend_intent,
    "/v5/position/set-leverage": _leverage_intent,
    "/v5/position/trading-stop": _trading_stop_intent,
}


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order in an order-placing request (batch: the ``request`` array).

    Requests of any other kind give no intents. Bybit reads POST parameters
    from the JSON body only, so parameters in the query string of an order
    request are refused (InvalidInput) rather than left unchecked, as are
    bodies that are not strict JSON (duplicate keys, NaN) or lack ``category``
    or ``symbol``. A batch's top-level ``category`` applies to every order.
    ``classified``: ``classify(request)``, when the caller made it already.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern is None:
        return []
    parser = _INTENT_PARSERS[classified.pattern]
    if request.url.query:
        raise InvalidInput("bybit order parameters must be in the JSON body, not the query string")
    payload = load_json(request.read())
    if not isinstance(payload, dict):
        raise InvalidInput("bybit order request is not a JSON object")
    category = _text(payload, "category")
    if category is None:
        raise InvalidInput("bybit order request has no category")
    if classified.endpoint is not None and classified.endpoint.is_batch:
        orders = payload.get("request")
        if not isinstance(orders, list) or not orders:
            raise InvalidInput("bybit batch order request has no request array")
    else:
        orders = [payload]
    if not all(isinstance(order, dict) for order in orders):
        raise InvalidInput("bybit batch order entries are not JSON objects")
    return [parser(order, category) for order in orders]


# -- 6. Error map ----------------------------------------------------------------------------
# retCodes from §5.7 and ccxt's exact table. Messages are our own: Bybit's
# retMsg for a bad signature ("error sign! origin_string[...]") echoes the
# signed text, api key and request parameters included, so it is never copied.
_AUTH_CODES = frozenset(
    {
        -2015,  # key expired (legacy)
        10003,  # API key invalid, or for another environment
        10004,  # signature invalid
        10005,  # permission denied
        10007,  # authentication failed
        10008,  # account banned
        10009,  # IP banned for this key
        10010,  # source IP not in the key's allowlist
        10020,  # permission denied (sub-member)
        10024,  # compliance rules
        10027,  # trading banned
        10028,  # endpoint not open for this account
        10029,  # symbol not allowed for this key
        33004,  # key expired
    }
)
_TIMESTAMP_CODES = frozenset({10002, -1021})
_RATE_CODES = frozenset({10006, 10018, 170222})
_UNAVAILABLE_CODES = frozenset(
    {
        10000,  # server timeout: the order may or may not exist
        10016,  # server error
        170007,  # backend timeout
    }
)
_BALANCE_CODES = frozenset(
    {
        110004,
        110006,
        110007,
        110012,
        110014,
        110044,
        110045,
        110051,
        110052,
        110053,
        130021,
        131001,
        131212,
        170033,
        170034,
        170131,
        170223,
        170226,
        175003,
        175006,
        176015,
    }
)
_ORDER_CODE_PREFIXES = ("110", "130", "131", "140", "170", "175", "176", "181", "182")
# The per-UID limits roll over 1 s; an IP ban lasts at least 10 minutes.
_RATE_WINDOW_SECONDS = 1.0
_IP_BAN_SECONDS = 600.0


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _retry_after(headers: Mapping[str, str], payload: Mapping[str, Any]) -> float:
    retry_after = _header(headers, "retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    # X-Bapi-Limit-Reset-Timestamp is when the window resets, in the
    # exchange's ms; the body's "time" is the exchange's now, so the
    # difference needs no clock of ours.
    reset = _header(headers, "x-bapi-limit-reset-timestamp")
    now = payload.get("time")
    if reset is not None and isinstance(now, int) and reset.strip().isdigit():
        return max(0.0, (int(reset) - now) / 1000)
    return _RATE_WINDOW_SECONDS


def _error_for_code(
    code: int, status: int, headers: Mapping[str, str], payload: Mapping[str, Any]
) -> UpstreamError:
    if code in _AUTH_CODES:
        return AuthenticationFailed(
            f"bybit refused the key (retCode {code})", exchange=NAME, code=code, status=status
        )
    if code in _TIMESTAMP_CODES:
        return TimestampOutsideWindow(
            f"bybit says the request timestamp is outside the recv window (retCode {code})",
            exchange=NAME,
            code=code,
            status=status,
        )
    if code in _RATE_CODES:
        return RateLimitedUpstream(
            f"bybit rate limit reached (retCode {code})",
            exchange=NAME,
            code=code,
            status=status,
            retry_after=_retry_after(headers, payload),
        )
    if code in _UNAVAILABLE_CODES:
        return ExchangeUnavailable(
            f"bybit is unavailable or timed out (retCode {code})",
            exchange=NAME,
            code=code,
            status=status,
        )
    if code in _BALANCE_CODES:
        return InsufficientBalance(
            f"bybit: insufficient balance (retCode {code})", exchange=NAME, code=code, status=status
        )
    if code == 10001 or str(code).startswith(_ORDER_CODE_PREFIXES):
        return OrderRejected(
            f"bybit rejected the order (retCode {code})", exchange=NAME, code=code, status=status
        )
    return ExchangeRejected(
        f"bybit rejected the request (retCode {code})", exchange=NAME, code=code, status=status
    )


def _error_for_status(status: int, headers: Mapping[str, str]) -> UpstreamError | None:
    if status == 403:
        # Bybit's IP limit (600 requests / 5 s) answers 403 and bans the IP
        # for at least 10 minutes; so do blocked regions. Either way: stop.
        return IPBanned(
            "bybit refused this IP (HTTP 403): rate-limit ban or blocked region",
            exchange=NAME,
            status=status,
            retry_after=_IP_BAN_SECONDS,
        )
    if status == 429:
        return RateLimitedUpstream(
            "bybit system-level rate limit (HTTP 429)",
            exchange=NAME,
            status=status,
            retry_after=_retry_after(headers, {}),
        )
    if status == 401:
        return AuthenticationFailed(
            "bybit refused the key (HTTP 401)", exchange=NAME, status=status
        )
    if status >= 500:
        return ExchangeUnavailable(
            f"bybit is unavailable (HTTP {status})", exchange=NAME, status=status
        )
    if status >= 400:
        return ExchangeRejected(
            f"bybit rejected the request (HTTP {status})", exchange=NAME, status=status
        )
    return None


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error a Bybit response stands for, or None for a success.

    A batch answer with retCode 0 lists each order's own code in
    ``retExtInfo.list``. If some succeeded it is a success (the body says
    which failed; calling it a failure would invite a resend that duplicates
    the accepted orders); if every one failed, the first failure is mapped.
    """
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _error_for_status(status, headers)
    code = _code(payload.get("retCode"))
    if code is None:
        return _error_for_status(status, headers)
    if code != 0:
        return _error_for_code(code, status, headers, payload)
    extra = payload.get("retExtInfo")
    entries = extra.get("list") if isinstance(extra, dict) else None
    if isinstance(entries, list) and entries:
        codes = [_code(entry.get("code")) if isinstance(entry, dict) else None for entry in entries]
        if all(entry_code not in (None, 0) for entry_code in codes):
            first = next(entry_code for entry_code in codes if entry_code is not None)
            return _error_for_code(first, status, headers, payload)
    return _error_for_status(status, headers)


# -- 7. Key-permission query -----------------------------------------------------------------
PERMISSION_PATH = "/v5/user/query-api"
# Permission groups that let a key place orders.
_TRADING_GROUPS = ("ContractTrade", "Spot", "Options", "Derivatives")


def permission_request(environment: str) -> httpx.Request:
    """The unsigned request for the key's own record (``readOnly``, ``permissions``, ``ips``)."""
    return httpx.Request("GET", base_url(PERMISSION_PATH, environment) + PERMISSION_PATH)


def parse_permissions(body: bytes) -> KeyPermissions:
    """Read what ``/v5/user/query-api`` says the key may do.

    ``permissions.Wallet`` containing ``Withdraw`` means the key can withdraw.
    ``ips`` of ``["*"]`` means bound to no IP. Raises the mapped UpstreamError
    when Bybit answered with an error, and InvalidInput when the answer lacks
    ``permissions``: a key whose withdrawal right cannot be read must not
    pass as one without it.
    """
    error = map_error(200, body, {})
    if error is not None:
        raise error
    try:
        result = json.loads(body)["result"]
        permissions = result["permissions"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("bybit query-api answer has no permissions") from None
    if not isinstance(permissions, dict):
        raise InvalidInput("bybit query-api permissions is not an object")

    def group(name: str) -> list[Any]:
        value = permissions.get(name) or []
        if not isinstance(value, list):
            raise InvalidInput(f"bybit query-api permissions.{name} is not a list")
        return value

    read_only = _code(result.get("readOnly"))
    ips = result.get("ips")
    return KeyPermissions(
        can_read=True,
        can_trade=read_only == 0 and any(group(name) for name in _TRADING_GROUPS),
        can_withdraw="Withdraw" in group("Wallet"),
        ip_restricted=(
            bool(ips) and "*" not in ips and "" not in ips if isinstance(ips, list) else None
        ),
    )


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# /v5/order/create takes orderLinkId: up to 36 letters, digits, "-" and "_"
# (Bybit v5 "Place Order"). GET /v5/order/realtime finds an order by
# category and orderLinkId, but by default only while it is open: an order
# filled at once is not listed, so an empty list is "unknown", never
# "absent". Batches carry an orderLinkId per entry; the gateway adds none there.
_ORDER_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
_CREATE = "/v5/order/create"


def order_link_id(new_id: Callable[[], str]) -> str:
    """An orderLinkId from the gateway's id: itself when Bybit takes it, else a UUID of it."""
    raw = new_id()
    return raw if _ORDER_LINK_ID.fullmatch(raw) else uuid_client_id(raw)


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``orderLinkId`` as the first member of a single order that has none.

    Every other byte of the body is kept (``_wire.insert_json_member``).
    Raises InvalidInput as ``parse_order`` does for a body that is not strict JSON.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern != _CREATE:
        return request
    raw = request.read()
    payload = load_json(raw)
    if not isinstance(payload, dict) or _text(payload, "orderLinkId") is not None:
        return request
    member = json.dumps(order_link_id(new_id))
    return _wire.with_body(request, _wire.insert_json_member(raw, "orderLinkId", member))


def _category(request: httpx.Request) -> str | None:
    try:
        payload = load_json(request.read())
    except InvalidInput:
        return None
    return _text(payload, "category") if isinstance(payload, dict) else None


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    a single order object without ``orderLinkId``."""
    if classified.kind != "order_place" or classified.pattern != _CREATE:
        return request, list(intents)
    return json_order_with_id(request, intents, "orderLinkId", lambda: order_link_id(new_id))


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """GET /v5/order/realtime for the order's category, symbol and orderLinkId."""
    classified = classify(request)
    category = _category(request)
    if classified.pattern != _CREATE or not intent.client_order_id or category is None:
        return None
    params = {"category": category, "symbol": intent.symbol, "orderLinkId": intent.client_order_id}
    return httpx.Request("GET", request.url.copy_with(path="/v5/order/realtime", params=params))


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    """ "found" when the list holds the order; an empty list may mean "filled": "unknown"."""
    try:
        payload = json.loads(body)
        found = payload["retCode"] == 0 and bool(payload["result"]["list"])
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return "found" if status == 200 and found else "unknown"


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /v5/market/tickers for ``symbol`` in the order's category."""
    category = _category(request)
    if category is None:
        return None
    params = {"category": category, "symbol": symbol}
    return httpx.Request("GET", request.url.copy_with(path="/v5/market/tickers", params=params))


def parse_price(body: bytes) -> Decimal | None:
    try:
        price = Decimal(str(json.loads(body)["result"]["list"][0]["lastPrice"]))
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


# -- 9. WebSockets (the gateway) ---------------------------------------------------------------
# Bybit v5 (docs v5/ws/connect, v5/websocket/trade/guideline; ccxt 4.5.90 pro/bybit.py):
#   /v5/public/{spot,linear,inverse,option}  market data: {"op":"subscribe","args":[topic]}
#   /v5/private   account topics (order, execution, position, wallet) after an auth frame
#   /v5/trade     order entry: ops order.create / order.amend / order.cancel after auth, each
#                 {"reqId","header":{"X-BAPI-TIMESTAMP","X-BAPI-RECV-WINDOW"},"op","args":[order]}
# The auth frame is {"op":"auth","args":[api_key, expires, signature]}, signature = hex
# HMAC-SHA256(secret, "GET/realtime" + expires), expires a future time in ms (ccxt: now +
# 10 s). The streams live on stream.* hosts, not the REST api.* hosts; demo keys stream on
# stream-demo.bybit.com (whose trade stream Bybit does not offer: "Not support: demo").
WS_URLS: dict[str, str] = {
    "production": "wss://stream.bybit.com",
    "testnet": "wss://stream-testnet.bybit.com",
    "demo": "wss://stream-demo.bybit.com",
}
WS_PUBLIC_CATEGORIES = ("spot", "linear", "inverse", "option")
WS_PRIVATE = "/v5/private"
WS_TRADE = "/v5/trade"
AUTH_PATH = "GET/realtime"
AUTH_EXPIRES_MS = 10_000
# Bybit cuts a connection with no ping-pong and no data for 10 minutes (v5/ws/connect) and
# recommends {"op":"ping"} every 20 s; ccxt 4.5.90 pings every 18 s (keepAlive 18000).
WS_HEARTBEAT_S = 20.0
WS_PING = '{"op":"ping"}'
# Trade ops -> their REST twins (classification, intents, policy, client order id).
WS_OPS: dict[str, str] = {
    "order.create": "/v5/order/create",
    "order.amend": "/v5/order/amend",
    "order.cancel": "/v5/order/cancel",
}
# Private topics -> the REST read of the same data: subscribing reads the account.
# A topic may name a category after a dot (order.spot, execution.fast, position.linear).
WS_TOPICS: dict[str, str] = {
    "order": "/v5/order/realtime",
    "execution": "/v5/execution/list",
    "position": "/v5/position/list",
    "wallet": "/v5/account/wallet-balance",
}
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,100}")
_REFERER = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Keybroker refusals as Bybit retCodes: param error, key invalid, permission denied,
# too many visits, server error (v5 error codes; the same table as section 6).
_REFUSAL_CODES: dict[int, int] = {400: 10001, 401: 10003, 403: 10005, 404: 10001, 429: 10006}
_CONN_ID = "keybroker"


def ws_kind(path: str) -> Literal["public", "api"] | None:
    """Public categories share upstreams; the private and trade streams are judged frames."""
    route = path.split("?", 1)[0].rstrip("/")
    if route in tuple(f"/v5/public/{c}" for c in WS_PUBLIC_CATEGORIES):
        return "public"
    if route in (WS_PRIVATE, WS_TRADE):
        return "api"
    return None


def ws_url(path: str, environment: str) -> str:
    base = WS_URLS.get(environment)
    if base is None:
        raise InvalidInput(f"bybit has no WebSocket host in {environment}")
    if environment == "demo":
        _no_demo_trade_stream(path)
    return base + path


def _no_demo_trade_stream(path: str) -> None:
    if path.split("?", 1)[0].rstrip("/") == WS_TRADE:
        raise InvalidInput(
            "bybit offers no WebSocket order entry (/v5/trade) for demo trading; "
            "send demo orders over REST"
        )


def ws_override_url(base_url: str, path_and_query: str) -> str:
    """A credential's REST base_url turned into its stream host: ``https://api-demo.bybit.com``
    -> ``wss://stream-demo.bybit.com`` (Bybit names them in pairs: api.bybit-tr.com and
    stream.bybit-tr.com too); any other host (the emulator) is kept, http -> ws."""
    scheme, sep, rest = base_url.partition("://")
    if not sep:
        raise InvalidInput("the credential's base_url has no scheme")
    scheme = {"https": "wss", "http": "ws"}.get(scheme.lower(), scheme)
    host, slash, tail = rest.partition("/")
    if host.lower().startswith("api") and ".bybit" in host.lower():
        host = "stream" + host[3:]
    if host.lower().startswith("stream-demo."):
        _no_demo_trade_stream(path_and_query)
    return f"{scheme}://{host}{slash}{tail}" + path_and_query


def ws_auth(credential: Credential, now_ms: int) -> str:
    """The auth frame the gateway sends first on /v5/private and /v5/trade.

    HMAC keys sign hex HMAC-SHA256 of ``GET/realtime{expires}`` (Bybit v5/ws/connect; ccxt
    4.5.90 pro/bybit.py ``authenticate``). RSA keys sign the same text with
    RSASSA-PKCS1-v1_5/SHA-256, base64, as their REST requests do (section 3).
    """
    expires = str(now_ms + AUTH_EXPIRES_MS)
    message = (AUTH_PATH + expires).encode("ascii")
    if credential.key_type == "hmac":
        signature = hmac_sha256_hex(credential.secret, message)
    elif credential.key_type == "rsa":
        signature = rsa_sha256_b64(credential.secret.reveal(), message)
    else:
        raise SigningError("bybit keys are HMAC or RSA keys; this credential is neither")
    frame = {"op": "auth", "args": [credential.api_key, int(expires), signature]}
    return json.dumps(frame, separators=(",", ":"))


def ws_auth_answer(text: str) -> bool | None:
    """The private stream answers ``success``, the trade stream ``retCode`` (0: accepted)."""
    frame = _wire.json_object(text)
    if frame is None or frame.get("op") != "auth":
        return None
    if "retCode" in frame:
        return frame.get("retCode") == 0
    return frame.get("success") is True


def _echo_id(frame: dict[str, Any], answer: dict[str, object]) -> dict[str, object]:
    for name in ("reqId", "req_id"):
        if frame.get(name) is not None:
            answer[name] = frame[name]
    return answer


def ws_local_answer(text: str) -> str | None:
    """A bot's own auth frame (ccxt sends one with its placeholder keys) and pings.

    The gateway authenticated the upstream connection itself, so a bot's auth is answered
    here and never leaves; the answer carries both the private stream's fields
    (success/ret_msg) and the trade stream's (retCode/retMsg), which a client of either
    accepts (ccxt's ``handle_authenticate`` takes either). Pings get the public stream's
    pong (``ret_msg":"pong"``), which ccxt's ``handle_message`` recognises.
    """
    frame = _wire.json_object(text)
    if frame is None:
        return None
    op = frame.get("op")
    if op == "auth":
        answer: dict[str, object] = {
            "success": True,
            "ret_msg": "",
            "retCode": 0,
            "retMsg": "OK",
            "op": "auth",
            "conn_id": _CONN_ID,
            "connId": _CONN_ID,
        }
        return json.dumps(_echo_id(frame, answer), separators=(",", ":"))
    if op == "ping":
        pong: dict[str, object] = {
            "success": True,
            "ret_msg": "pong",
            "conn_id": _CONN_ID,
            "op": "ping",
        }
        return json.dumps(_echo_id(frame, pong), separators=(",", ":"))
    return None


def ws_heartbeat() -> tuple[float, str]:
    return WS_HEARTBEAT_S, WS_PING


def ws_is_pong(text: str) -> bool:
    """Bybit's pongs: ``{"op":"pong",...}`` (private, trade) or ``{"op":"ping",
    "ret_msg":"pong",...}`` (public). Bots' own pings never go upstream (answered
    locally), so every pong from upstream answers the gateway's heartbeat."""
    frame = _wire.json_object(text)
    if frame is None or "topic" in frame:
        return False
    return frame.get("op") == "pong" or (
        frame.get("op") == "ping" and frame.get("ret_msg") == "pong"
    )


def _id_text(value: object) -> str | None:
    # Bybit documents reqId/req_id as strings; ccxt sends numbers for subscriptions. One
    # text form lets an answer find its request whichever the upstream echoes.
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def ws_request_id(text: str) -> object:
    frame = _wire.json_object(text)
    if frame is None:
        return None
    return _id_text(frame.get("reqId", frame.get("req_id")))


def ws_response_id(text: str) -> object:
    """The id of an answer to an op; None for topic data (whose ``id`` is the event's own)."""
    frame = _wire.json_object(text)
    if frame is None or "op" not in frame or "topic" in frame:
        return None
    return _id_text(frame.get("reqId", frame.get("req_id")))


def ws_read_call(text: str) -> WsCall:
    """A private-stream subscription or a trade op, read as its REST twin.

    A trade op carries exactly one order (Bybit: "only supports one order"); its
    ``header`` may set X-BAPI-RECV-WINDOW (kept, checked as the REST signer checks it)
    and Referer (a broker code); the gateway sets X-BAPI-TIMESTAMP itself. Any other op
    is refused: nothing unread goes upstream on a connection the gateway authenticated.
    """
    frame = _wire.json_object(text)
    if frame is None or not isinstance(frame.get("op"), str):
        raise InvalidInput("a Bybit WebSocket frame is a JSON object with an op")
    op = str(frame["op"])
    args = frame.get("args")
    request_id = _id_text(frame.get("reqId", frame.get("req_id")))
    if op in WS_OPS:
        if not isinstance(args, list) or len(args) != 1 or not isinstance(args[0], dict):
            raise InvalidInput("a Bybit trade op carries args: a list of exactly one object")
        header = frame.get("header", {})
        if not isinstance(header, dict):
            raise InvalidInput("a Bybit trade op's header is an object")
        _ws_recv_window(header)
        body = _wire.frame_args_body(args[0])
        rest = RestTwin("POST", WS_OPS[op], content=body, content_type="application/json")
        return WsCall(request_id, op, {}, rest, frame)
    if op in ("subscribe", "unsubscribe"):
        if not isinstance(args, list) or not args:
            raise InvalidInput("args must be a non-empty list of topics")
        roots = []
        for topic in args:
            if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
                raise InvalidInput("a Bybit topic is a short name such as 'order'")
            root = topic.split(".", 1)[0]
            if root not in WS_TOPICS:
                raise InvalidInput(f"the private topic {topic!r} is not catalogued")
            roots.append(root)
        return WsCall(request_id, op, {}, RestTwin("GET", WS_TOPICS[sorted(roots)[0]]), frame)
    raise InvalidInput(f"the WebSocket op {op!r} is not catalogued")


def _ws_recv_window(header: Mapping[str, Any]) -> str:
    value = header.get(HEADER_RECV_WINDOW)
    if value is None:
        return DEFAULT_RECV_WINDOW
    text = str(value).strip()
    if isinstance(value, bool) or not _RECV_WINDOW.fullmatch(text):
        raise InvalidInput("X-BAPI-RECV-WINDOW must be a whole number of milliseconds")
    return text


def ws_sign_call(call: WsCall, credential: Credential, now_ms: int) -> str:
    """The frame to send on the authenticated connection, rebuilt from the judged REST body
    (which carries the orderLinkId the gateway may have added), stamped with the gateway's
    own clock as the REST signer stamps X-BAPI-TIMESTAMP."""
    if call.method not in WS_OPS:
        frame: dict[str, object] = {"op": call.method, "args": call.frame.get("args", [])}
        if call.request_id is not None:
            frame["req_id"] = call.request_id
        return json.dumps(frame, separators=(",", ":"))
    bot_header = call.frame.get("header")
    given = bot_header if isinstance(bot_header, dict) else {}
    header = {
        HEADER_TIMESTAMP: str(now_ms),
        HEADER_RECV_WINDOW: _ws_recv_window(given),
    }
    referer = given.get("Referer")
    if isinstance(referer, str) and _REFERER.fullmatch(referer):
        header["Referer"] = referer
    trade: dict[str, object] = {}
    if call.request_id is not None:
        trade["reqId"] = call.request_id
    trade["header"] = header
    trade["op"] = call.method
    # The judged body, byte for byte: what the policy read is what Bybit is sent.
    head = json.dumps(trade, separators=(",", ":"))[:-1]
    return head + ',"args":[' + call.rest.content.decode("utf-8") + "]}"


def _ret_code(status: int) -> int:
    return 10016 if status >= 500 else _REFUSAL_CODES.get(status, 10001)


def ws_refusal(text: str, request_id: object, status: int, code: str, message: str) -> str:
    """Bybit's own answer shapes with our message: a trade op (or a frame with ``reqId``)
    gets ``{"reqId","retCode","retMsg","op"}``, anything else the private stream's
    ``{"success":false,"ret_msg","conn_id","req_id","op"}``."""
    frame = _wire.json_object(text) or {}
    op = frame.get("op") if isinstance(frame.get("op"), str) else ""
    if op in WS_OPS or "reqId" in frame:
        answer: dict[str, object] = {}
        if request_id is not None:
            answer["reqId"] = request_id
        answer.update({"retCode": _ret_code(status), "retMsg": message, "op": op})
        return json.dumps(answer, separators=(",", ":"))
    return ws_error_frame(request_id, status, code, message, op=op)


def ws_error_frame(
    request_id: object, status: int, code: str, message: str, *, op: object = ""
) -> str:
    """The private (and public) stream's failure shape."""
    answer: dict[str, object] = {"success": False, "ret_msg": message, "conn_id": _CONN_ID}
    if request_id is not None:
        answer["req_id"] = request_id
    answer["op"] = op
    return json.dumps(answer, separators=(",", ":"))


def ws_answer_status(text: str) -> tuple[int | None, str | None]:
    """The venue code of an answer for the result row: retCode, or "0"/"error" (success)."""
    frame = _wire.json_object(text)
    if frame is None:
        return None, None
    if "retCode" in frame:
        return None, str(frame["retCode"])
    if "success" in frame:
        return None, "0" if frame["success"] is True else "error"
    return None, None


def ws_subscription(text: str) -> tuple[object, str, tuple[str, ...]] | None:
    frame = _wire.json_object(text)
    if frame is None or frame.get("op") not in ("subscribe", "unsubscribe"):
        return None
    args = frame.get("args")
    if not isinstance(args, list) or not args:
        return None
    if not all(isinstance(a, str) and _TOPIC.fullmatch(a) for a in args):
        return None
    return frame.get("req_id"), str(frame["op"]), tuple(args)


def ws_subscription_replies(request_id: object, action: str, names: tuple[str, ...]) -> list[str]:
    """Bybit acknowledges a (un)subscribe frame once, whatever it names."""
    answer: dict[str, object] = {"success": True, "ret_msg": "", "conn_id": _CONN_ID}
    if request_id is not None:
        answer["req_id"] = request_id
    answer["op"] = action
    return [json.dumps(answer, separators=(",", ":"))]


def ws_stream_in(path: str, name: str) -> str:
    """``/v5/public/spot|tickers.BTCUSDT``: a topic is one stream per category."""
    return path.split("?", 1)[0].rstrip("/") + "|" + name


def ws_stream_path(name: str) -> str:
    return name.split("|", 1)[0]


def ws_stream_subscribe(name: str) -> str:
    topic = name.split("|", 1)[1]
    return json.dumps({"op": "subscribe", "args": [topic]}, separators=(",", ":"))


def ws_is_data(text: str) -> bool:
    frame = _wire.json_object(text, exact=False)  # every market-data frame: keys only
    return frame is not None and "topic" in frame and "op" not in frame


WEBSOCKET = WebSocketSupport(
    url=ws_url,
    kind=ws_kind,
    read_call=ws_read_call,
    sign_call=ws_sign_call,
    error_frame=ws_error_frame,
    request_id=ws_request_id,
    response_id=ws_response_id,
    subscription=ws_subscription,
    subscription_replies=ws_subscription_replies,
    stream_path=ws_stream_path,
    streams_of=lambda path, query: ((), False),
    stream_subscribe=ws_stream_subscribe,
    is_data=ws_is_data,
    login_frame=ws_auth,
    login_answer=ws_auth_answer,
    local_answer=ws_local_answer,
    stream_in=ws_stream_in,
    refusal=ws_refusal,
    answer_status=ws_answer_status,
    override_url=ws_override_url,
    heartbeat=ws_heartbeat,
    is_heartbeat_answer=ws_is_pong,
)


PROFILE = ExchangeProfile(
    name=NAME,
    env_prefix="BYBIT",
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
    orders=ORDER_TOOLS,
    rate_limits=RATE_LIMITS,
    read_usage=read_usage,
    websocket=WEBSOCKET,
)
