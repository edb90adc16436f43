"""okx: everything keybroker knows about OKX API v5's wire format.

    >>> signed = PROFILE.sign(httpx.Request("GET", url), credential, now_ms=1_700_000_000_000)
    >>> signed.headers["OK-ACCESS-TIMESTAMP"]
    '2023-11-14T22:13:20.000Z'

Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, PROFILE. Source of truth: ../shared/design/exchange-auth.md §4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

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
from keybroker.exchanges._wire import HeaderTriple, build_request, header_triples, load_json
from keybroker.exchanges.base import (
    DANGEROUS_KINDS,
    METHOD_OVERRIDE_HEADERS,
    Catalogue,
    ClassifiedRequest,
    CredentialRules,
    Endpoint,
    ExchangeProfile,
    KeyPattern,
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
)
from keybroker.model import Credential

NAME = "okx"

# -- 1. Base URLs ------------------------------------------------------------------
# One REST host serves every product. Demo trading is chosen by the
# ``x-simulated-trading: 1`` header together with a demo key, not by the host:
# ccxt 4.5.90 sends demo requests to www.okx.com with the header, while the
# 2026 docs list https://openapi.okx.com as the demo REST host. We follow the
# current docs for demo (the host OKX now documents for it) and keep the
# long-standing production host of the spec. The signer sets or strips the
# header from the credential's environment, so the host never decides which
# account trades; Credential.base_url overrides both (regional sites such as
# my.okx.com need their own host, and their keys work nowhere else).
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://www.okx.com",
        "testnet": "https://openapi.okx.com",
        "demo": "https://openapi.okx.com",
    },
}


def base_url(path: str, environment: str) -> str:
    """The REST base URL for ``environment``; OKX has one host for all paths."""
    urls = BASE_URLS["rest"]
    try:
        return urls[environment]
    except KeyError:
        raise InvalidInput(
            f"unknown environment {environment!r}; choose one of: {', '.join(urls)}"
        ) from None


# -- 2. Credential rules --------------------------------------------------------------
# Every OKX key has a passphrase chosen at creation; it is sent in clear in a
# header, so it is as secret as the key's secret. Only HMAC keys exist.
CREDENTIALS = CredentialRules(needs_passphrase=True, key_types=("hmac",))


# -- 3. Signer ---------------------------------------------------------------------------
HEADER_KEY = "OK-ACCESS-KEY"
HEADER_SIGN = "OK-ACCESS-SIGN"
HEADER_TIMESTAMP = "OK-ACCESS-TIMESTAMP"
HEADER_PASSPHRASE = "OK-ACCESS-PASSPHRASE"  # noqa: S105 (a header name)
HEADER_DEMO = "x-simulated-trading"


def timestamp(now_ms: int) -> str:
    """``now_ms`` as OKX wants it: ISO-8601 UTC with milliseconds (``2020-12-08T09:08:57.715Z``).

    Integer arithmetic, so no float rounding can move the millisecond.
    """
    seconds, millis = divmod(now_ms, 1000)
    return _whole_second(seconds) + _MILLIS[millis]


_MILLIS = tuple(f".{millis:03d}Z" for millis in range(1000))


@lru_cache(maxsize=4)
def _whole_second(seconds: int) -> str:
    # Formatting a datetime costs more than the HMAC; a signer busy with many
    # orders in one second asks for the same second again and again.
    return f"{datetime.fromtimestamp(seconds, tz=UTC):%Y-%m-%dT%H:%M:%S}"


def prehash(request: httpx.Request, stamp: str) -> bytes:
    """The string OKX signs: ``timestamp + METHOD + requestPath(?query) + body``.

    ``requestPath`` is the path and query exactly as they go on the wire
    (httpx's ``raw_path``), and ``body`` the exact body bytes, so the
    signature covers what OKX receives, whatever encoding the client chose.
    """
    return (
        stamp.encode("ascii")
        + request.method.upper().encode("ascii")
        + request.url.raw_path
        + request.read()
    )


# Headers the signer owns: whatever a client put there is dropped and set anew.
_OWNED = frozenset(
    name.lower().encode("ascii")
    for name in (HEADER_KEY, HEADER_SIGN, HEADER_TIMESTAMP, HEADER_PASSPHRASE, HEADER_DEMO)
)
_CONTENT_TYPE = b"content-type"


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Sign ``request`` with an OKX HMAC key; existing OK-ACCESS-* headers are replaced.

    A testnet credential is an OKX demo-trading key: it gets
    ``x-simulated-trading: 1``. A production credential has that header
    removed, so a request prepared for demo can never be signed as a demo
    request with a live key (OKX would reject it with 50101 anyway).
    Raises SigningError when the credential cannot sign for OKX.

    The header list is built directly (the same triples ``replace_headers``
    gives, checked by the tests): this is the gateway's hot path, and the
    generic helper costs more than the HMAC.
    """
    if credential.key_type != "hmac":
        raise SigningError("okx keys are HMAC keys; this credential is not")
    passphrase = credential.passphrase
    if passphrase is None or not passphrase:
        raise SigningError("okx credentials need a passphrase")
    stamp = timestamp(now_ms).encode("ascii")
    method = request.method.upper()
    body = request.read()
    signature = hmac_sha256_b64(
        credential.secret, stamp + method.encode("ascii") + request.url.raw_path + body
    )
    headers: list[HeaderTriple] = []
    content_types: list[bytes] = []
    moves_content_type = method != "GET"
    for _, lower, value in header_triples(request.headers):
        if moves_content_type and lower == _CONTENT_TYPE:
            content_types.append(value)
        elif lower not in _OWNED:
            headers.append((lower, lower, value))
    headers += [
        (b"OK-ACCESS-KEY", b"ok-access-key", credential.api_key.encode("utf-8")),
        (b"OK-ACCESS-SIGN", b"ok-access-sign", signature.encode("ascii")),
        (b"OK-ACCESS-TIMESTAMP", b"ok-access-timestamp", stamp),
        (b"OK-ACCESS-PASSPHRASE", b"ok-access-passphrase", passphrase.reveal()),
    ]
    if moves_content_type:
        # Re-set (not merely added) so the header order is the same when a
        # signed request is signed again.
        content_type = b", ".join(content_types) or b"application/json"
        headers.append((b"Content-Type", _CONTENT_TYPE, content_type))
    if credential.environment == "testnet":
        headers.append((b"x-simulated-trading", b"x-simulated-trading", b"1"))
    return build_request(
        request.method, request.url, headers, body, request.extensions, like=request
    )


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# OKX limits each endpoint on its own (e.g. place order 60 requests / 2 s per
# instrument, account config 5 / 2 s); there is no shared weight budget, so
# every weight is 1: one request against that endpoint's own limit. Order
# endpoints count one order each; batch endpoints carry up to 20, one per
# intent that parse_order returns.
_ACCOUNT = Endpoint("account_read")
_ORDER_READ = Endpoint("order_read")
_PLACE = Endpoint("order_place", order_count=1)
_PLACE_BATCH = Endpoint("order_place", order_count=1, is_batch=True)
_CANCEL = Endpoint("order_cancel")
_CANCEL_BATCH = Endpoint("order_cancel", is_batch=True)
# Changes the risk of later orders on one instrument; an order-kind so that
# symbol rules and leverage caps apply to it.
_SETTING = Endpoint("order_place")
_TRANSFER = Endpoint("transfer")
_WITHDRAW = Endpoint("withdraw")
_KEYS = Endpoint("key_management")

_V5 = "/api/v5"

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # account reads
    **{
        ("GET", f"{_V5}/account/{name}"): _ACCOUNT
        for name in (
            "balance",
            "positions",
            "positions-history",
            "account-position-risk",
            "bills",
            "bills-archive",
            "config",
            "instruments",
            "max-size",
            "max-avail-size",
            "leverage-info",
            "adjust-leverage-info",
            "max-loan",
            "trade-fee",
            "interest-accrued",
            "interest-rate",
            "interest-limits",
            "max-withdrawal",
            "risk-state",
            "greeks",
            "position-tiers",
            "collateral-assets",
        )
    },
    **{
        ("GET", f"{_V5}/asset/{name}"): _ACCOUNT
        for name in (
            "balances",
            "currencies",
            "asset-valuation",
            "non-tradable-assets",
            "bills",
            "transfer-state",
            "deposit-address",
            "deposit-history",
            "withdrawal-history",
            "deposit-withdraw-status",
        )
    },
    ("GET", f"{_V5}/trade/account-rate-limit"): _ACCOUNT,
    ("GET", f"{_V5}/users/subaccount/list"): _ACCOUNT,
    # order reads
    **{
        ("GET", f"{_V5}/trade/{name}"): _ORDER_READ
        for name in (
            "order",
            "orders-pending",
            "orders-history",
            "orders-history-archive",
            "fills",
            "fills-history",
            "order-algo",
            "orders-algo-pending",
            "orders-algo-history",
        )
    },
    # orders
    ("POST", f"{_V5}/trade/order"): _PLACE,
    ("POST", f"{_V5}/trade/batch-orders"): _PLACE_BATCH,
    ("POST", f"{_V5}/trade/amend-order"): _PLACE,
    ("POST", f"{_V5}/trade/amend-batch-orders"): _PLACE_BATCH,
    ("POST", f"{_V5}/trade/order-algo"): _PLACE,
    ("POST", f"{_V5}/trade/amend-algos"): _PLACE,
    ("POST", f"{_V5}/trade/close-position"): _PLACE,
    ("POST", f"{_V5}/account/set-leverage"): _SETTING,
    ("POST", f"{_V5}/trade/cancel-order"): _CANCEL,
    ("POST", f"{_V5}/trade/cancel-batch-orders"): _CANCEL_BATCH,
    ("POST", f"{_V5}/trade/cancel-algos"): _CANCEL_BATCH,
    ("POST", f"{_V5}/trade/cancel-advance-algos"): _CANCEL_BATCH,
    ("POST", f"{_V5}/trade/mass-cancel"): _CANCEL,
    ("POST", f"{_V5}/trade/cancel-all-after"): _CANCEL,
    # -- must refuse (§4.5): withdrawals ---------------------------------------
    ("POST", f"{_V5}/asset/withdrawal"): _WITHDRAW,
    ("POST", f"{_V5}/asset/withdrawal-lightning"): _WITHDRAW,
    ("POST", f"{_V5}/asset/cancel-withdrawal"): _WITHDRAW,
    ("POST", f"{_V5}/fiat/create-withdrawal"): _WITHDRAW,
    ("POST", f"{_V5}/fiat/cancel-withdrawal"): _WITHDRAW,
    # -- must refuse: transfers, conversions, earn, loans ---------------------
    ("POST", f"{_V5}/asset/transfer"): _TRANSFER,
    ("POST", f"{_V5}/asset/subaccount/transfer"): _TRANSFER,
    ("POST", f"{_V5}/users/subaccount/set-transfer-out"): _TRANSFER,
    ("POST", f"{_V5}/asset/convert/trade"): _TRANSFER,
    ("POST", f"{_V5}/asset/convert-dust-assets"): _TRANSFER,
    ("POST", f"{_V5}/trade/easy-convert"): _TRANSFER,
    ("POST", f"{_V5}/trade/one-click-repay"): _TRANSFER,
    ("POST", f"{_V5}/trade/one-click-repay-v2"): _TRANSFER,
    ("POST", f"{_V5}/fiat/buy-sell/trade"): _TRANSFER,
    # Moves a grid bot's profit out of the bot; named "withdraw" but internal.
    ("POST", f"{_V5}/tradingBot/grid/withdraw-income"): _TRANSFER,
    ("POST", f"{_V5}/account/borrow-repay"): _TRANSFER,
    ("POST", f"{_V5}/account/spot-manual-borrow-repay"): _TRANSFER,
    ("POST", f"{_V5}/account/quick-margin-borrow-repay"): _TRANSFER,
    ("POST", f"{_V5}/account/move-positions"): _TRANSFER,
    ("POST", f"{_V5}/account/fixed-loan/borrowing-order"): _TRANSFER,
    ("POST", f"{_V5}/account/fixed-loan/amend-borrowing-order"): _TRANSFER,
    ("POST", f"{_V5}/account/fixed-loan/manual-reborrow"): _TRANSFER,
    ("POST", f"{_V5}/account/fixed-loan/repay-borrowing-order"): _TRANSFER,
    ("POST", f"{_V5}/finance/savings/purchase-redempt"): _TRANSFER,
    ("POST", f"{_V5}/finance/savings/set-lending-rate"): _TRANSFER,
    **{
        ("POST", f"{_V5}/finance/staking-defi/{name}"): _TRANSFER
        for name in (
            "purchase",
            "redeem",
            "cancel",
            "eth/purchase",
            "eth/redeem",
            "eth/cancel-redeem",
            "sol/purchase",
            "sol/redeem",
            "sol/cancel-redeem",
        )
    },
    ("POST", f"{_V5}/finance/flexible-loan/borrow"): _TRANSFER,
    ("POST", f"{_V5}/finance/flexible-loan/repay"): _TRANSFER,
    ("POST", f"{_V5}/finance/flexible-loan/adjust-collateral"): _TRANSFER,
    ("POST", f"{_V5}/finance/okusd/subscribe"): _TRANSFER,
    ("POST", f"{_V5}/finance/okusd/redeem"): _TRANSFER,
    ("POST", f"{_V5}/finance/sfp/dcd/order"): _TRANSFER,
    ("POST", f"{_V5}/finance/sfp/dcd/trade"): _TRANSFER,
    ("POST", f"{_V5}/finance/sfp/dcd/redeem"): _TRANSFER,
    ("POST", f"{_V5}/broker/nd/set-subaccount-assets"): _TRANSFER,
    ("POST", f"{_V5}/asset/broker/nd/subaccount-deposit-address"): _TRANSFER,
    ("POST", f"{_V5}/asset/broker/nd/modify-subaccount-deposit-address"): _TRANSFER,
    # -- must refuse: API keys and sub-accounts -------------------------------
    ("GET", f"{_V5}/users/subaccount/apikey"): _KEYS,
    ("POST", f"{_V5}/users/subaccount/apikey"): _KEYS,
    ("POST", f"{_V5}/users/subaccount/modify-apikey"): _KEYS,
    ("POST", f"{_V5}/users/subaccount/delete-apikey"): _KEYS,
    ("POST", f"{_V5}/users/subaccount/subaccount-apikey"): _KEYS,
    ("POST", f"{_V5}/users/subaccount/create-subaccount"): _KEYS,
    ("GET", f"{_V5}/broker/nd/subaccount/apikey"): _KEYS,
    ("POST", f"{_V5}/broker/nd/subaccount/apikey"): _KEYS,
    ("POST", f"{_V5}/broker/nd/subaccount/modify-apikey"): _KEYS,
    ("POST", f"{_V5}/broker/nd/subaccount/delete-apikey"): _KEYS,
    ("POST", f"{_V5}/broker/nd/create-subaccount"): _KEYS,
    ("POST", f"{_V5}/broker/nd/delete-subaccount"): _KEYS,
    ("POST", f"{_V5}/broker/nd/report-subaccount-ip"): _KEYS,
    ("GET", f"{_V5}/broker/dma/subaccount/apikey"): _KEYS,
    ("POST", f"{_V5}/broker/dma/subaccount/apikey"): _KEYS,
}

CATALOGUE = Catalogue(ENDPOINTS)

_PUBLIC_PREFIXES = (
    f"{_V5}/market/",
    f"{_V5}/public/",
    f"{_V5}/system/",
    f"{_V5}/rubik/",
)


def is_public_path(path: str) -> bool:
    """Market data, instruments, server time and statistics need no key."""
    return path.startswith(_PUBLIC_PREFIXES)


def _classify_one(request: httpx.Request) -> ClassifiedRequest:
    result = classify_with(CATALOGUE, request, is_public_path=is_public_path)
    if result.endpoint is None:
        if "withdraw" in result.path:
            return ClassifiedRequest("withdraw", result.method, result.path, None)
        if "apikey" in result.path or "api-key" in result.path:
            return ClassifiedRequest("key_management", result.method, result.path, None)
    return result


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify against the catalogue (an allowlist: anything unknown is denied).

    Two additions to the shared matcher. An unknown path that names a
    withdrawal or an API key is classified as one, so a new endpoint of that
    sort (OKX adds some every quarter) is logged as the attempt it is. And a
    method-override header that disagrees with the real method is read both
    ways: OKX acts on the real method, the shared matcher on the override, so
    ``POST /trade/order`` dressed as a GET would otherwise pass as an order
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
# OKX limits every endpoint on its own, per 2 s: private ones per user ID,
# public ones per IP, and order placement, amendment and cancellation per user
# ID and instrument (a batch spends one per order). On top, a sub-account may
# place or amend at most 1,000 orders per 2 s (50061). OKX sends no usage
# headers. The numbers are OKX's documented limits as ccxt 4.5.90's cost table
# encodes them (requests per 2 s = 20 / cost) and as the emulator applies them
# (§4.6 [unverified for the specific numbers; ccxt cost table agrees]); an
# endpoint not listed gets the smallest common limit, 5 per 2 s.
_PER_INSTRUMENT: dict[str, float] = {
    f"POST {_V5}/trade/order": 60,
    f"POST {_V5}/trade/batch-orders": 300,
    f"POST {_V5}/trade/amend-order": 60,
    f"POST {_V5}/trade/amend-batch-orders": 300,
    f"POST {_V5}/trade/cancel-order": 60,
    f"POST {_V5}/trade/cancel-batch-orders": 300,
}
_PER_ENDPOINT: dict[str, float] = {
    # public, per IP
    f"GET {_V5}/public/time": 10,
    f"GET {_V5}/public/instruments": 20,
    f"GET {_V5}/public/funding-rate": 10,
    f"GET {_V5}/public/mark-price": 10,
    f"GET {_V5}/public/open-interest": 20,
    f"GET {_V5}/public/price-limit": 20,
    f"GET {_V5}/market/ticker": 20,
    f"GET {_V5}/market/tickers": 20,
    f"GET {_V5}/market/index-tickers": 20,
    f"GET {_V5}/market/books": 40,
    f"GET {_V5}/market/books-full": 10,
    f"GET {_V5}/market/candles": 40,
    f"GET {_V5}/market/history-candles": 20,
    f"GET {_V5}/market/trades": 100,
    f"GET {_V5}/market/history-trades": 10,
    # account, per user ID
    f"GET {_V5}/account/balance": 10,
    f"GET {_V5}/account/positions": 10,
    f"GET {_V5}/account/positions-history": 10,
    f"GET {_V5}/account/account-position-risk": 10,
    f"GET {_V5}/account/bills": 10,
    f"GET {_V5}/account/bills-archive": 5,
    f"GET {_V5}/account/config": 5,
    f"GET {_V5}/account/instruments": 20,
    f"GET {_V5}/account/max-size": 20,
    f"GET {_V5}/account/max-avail-size": 20,
    f"GET {_V5}/account/leverage-info": 20,
    f"GET {_V5}/account/adjust-leverage-info": 5,
    f"GET {_V5}/account/max-loan": 20,
    f"GET {_V5}/account/trade-fee": 5,
    f"GET {_V5}/account/interest-accrued": 5,
    f"GET {_V5}/account/interest-rate": 5,
    f"GET {_V5}/account/interest-limits": 5,
    f"GET {_V5}/account/max-withdrawal": 20,
    f"GET {_V5}/account/risk-state": 10,
    f"GET {_V5}/account/greeks": 10,
    f"GET {_V5}/account/position-tiers": 10,
    f"GET {_V5}/account/collateral-assets": 5,
    f"GET {_V5}/asset/balances": 12,
    f"GET {_V5}/asset/currencies": 12,
    f"GET {_V5}/asset/asset-valuation": 2,
    f"GET {_V5}/asset/non-tradable-assets": 12,
    f"GET {_V5}/asset/bills": 12,
    f"GET {_V5}/asset/transfer-state": 20,
    f"GET {_V5}/asset/deposit-address": 12,
    f"GET {_V5}/asset/deposit-history": 12,
    f"GET {_V5}/asset/withdrawal-history": 12,
    f"GET {_V5}/asset/deposit-withdraw-status": 1,
    f"GET {_V5}/trade/account-rate-limit": 20,
    f"GET {_V5}/users/subaccount/list": 2,
    # orders, per user ID
    f"GET {_V5}/trade/order": 60,
    f"GET {_V5}/trade/orders-pending": 60,
    f"GET {_V5}/trade/orders-history": 40,
    f"GET {_V5}/trade/orders-history-archive": 20,
    f"GET {_V5}/trade/fills": 60,
    f"GET {_V5}/trade/fills-history": 10,
    f"GET {_V5}/trade/order-algo": 20,
    f"GET {_V5}/trade/orders-algo-pending": 20,
    f"GET {_V5}/trade/orders-algo-history": 20,
    f"POST {_V5}/trade/order-algo": 20,
    f"POST {_V5}/trade/amend-algos": 20,
    f"POST {_V5}/trade/close-position": 20,
    f"POST {_V5}/account/set-leverage": 20,
    f"POST {_V5}/trade/cancel-algos": 20,
    f"POST {_V5}/trade/cancel-advance-algos": 20,
    f"POST {_V5}/trade/mass-cancel": 5,
    f"POST {_V5}/trade/cancel-all-after": 2,
}
RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit(
        "INSTRUMENT",
        60,
        2,
        "requests",
        "endpoint",
        endpoints=tuple(_PER_INSTRUMENT),
        endpoint_capacities=tuple(_PER_INSTRUMENT.items()),
        per_symbol=True,
    ),
    RateLimit(
        "ENDPOINT",
        5,
        2,
        "requests",
        "endpoint",
        except_endpoints=tuple(_PER_INSTRUMENT),
        endpoint_capacities=tuple(_PER_ENDPOINT.items()),
    ),
    RateLimit(
        "SUB_ACCOUNT_ORDERS",
        1000,
        2,
        "orders",
        "account",
        endpoints=(
            f"POST {_V5}/trade/order",
            f"POST {_V5}/trade/batch-orders",
            f"POST {_V5}/trade/amend-order",
            f"POST {_V5}/trade/amend-batch-orders",
        ),
    ),
)


# -- 5. Order-intent parser ----------------------------------------------------------------
# Instruments whose id has exactly two parts (BTC-USDT) are spot or margin;
# swaps, futures and options have more (BTC-USDT-SWAP, BTC-USD-250328).
_SPOT_INSTRUMENT = re.compile(r"[^-]+-[^-]+")


def _decimal(order: Mapping[str, Any], field: str, *, signed: bool = False) -> Decimal | None:
    # Only orderPx is signed ("-1": at market); the side is ``side``.
    return parse_amount(order.get(field), exchange=NAME, field=field, signed=signed)


def _text(order: Mapping[str, Any], field: str) -> str | None:
    value = order.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"okx order field {field} is not a string")
    return value


def _flag(order: Mapping[str, Any], field: str) -> bool | None:
    value = order.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"okx order field {field} is not true or false")


def _non_negative(value: Decimal | None, field: str) -> Decimal | None:
    if value is not None and value < 0:
        raise InvalidInput(f"okx order field {field} is negative")
    return value


def _symbol(order: Mapping[str, Any]) -> str:
    symbol = _text(order, "instId")
    if symbol is None:
        raise InvalidInput("okx order has no instId")
    return symbol


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _size_is_quote(order: Mapping[str, Any], symbol: str) -> bool:
    # sz counts the quote currency only in a SPOT market order, where tgtCcy
    # decides and defaults to quote for a buy (OKX: "Only applicable to SPOT
    # Market Orders. Default is quote_ccy for buy, base_ccy for sell").
    # Elsewhere OKX ignores tgtCcy and sz is base or contracts. SPOT is certain
    # only with tdMode cash on a two-part instrument; a cross-margin order on
    # BTC-USDT may or may not be SPOT, and reading its sz as base can only
    # overstate a quote amount, never understate a base one: limits stay safe.
    if (
        _text(order, "ordType") != "market"
        or _text(order, "tdMode") != "cash"
        or _SPOT_INSTRUMENT.fullmatch(symbol) is None
    ):
        return False
    target = _text(order, "tgtCcy")
    if target is not None:
        return target == "quote_ccy"
    return _text(order, "side") == "buy"


def _place_intent(order: Mapping[str, Any]) -> OrderIntent:
    symbol = _symbol(order)
    size = _non_negative(_decimal(order, "sz"), "sz")
    price = _decimal(order, "px")
    if price is None:
        # Algo orders: orderPx "-1" means "at market" (no limit price).
        algo_price = _decimal(order, "orderPx", signed=True)
        price = algo_price if algo_price is not None and algo_price >= 0 else None
    quote = _size_is_quote(order, symbol)
    return OrderIntent(
        symbol=symbol,
        side=_lower(_text(order, "side")),
        type=_lower(_text(order, "ordType")),
        quantity=None if quote else size,
        price=_non_negative(price, "px"),
        quote_quantity=size if quote else None,
        client_order_id=_text(order, "clOrdId") or _text(order, "algoClOrdId"),
        reduce_only=_flag(order, "reduceOnly"),
    )


def _amend_intent(order: Mapping[str, Any]) -> OrderIntent:
    return OrderIntent(
        symbol=_symbol(order),
        type="amend",
        quantity=_non_negative(_decimal(order, "newSz"), "newSz"),
        price=_non_negative(_decimal(order, "newPx"), "newPx"),
        client_order_id=_text(order, "clOrdId") or _text(order, "algoClOrdId"),
    )


def _close_intent(order: Mapping[str, Any]) -> OrderIntent:
    return OrderIntent(
        symbol=_symbol(order),
        type="close_position",
        client_order_id=_text(order, "clOrdId"),
        reduce_only=True,
    )


def _leverage_intent(order: Mapping[str, Any]) -> OrderIntent:
    symbol = _text(order, "instId") or _text(order, "ccy")
    if symbol is None:
        raise InvalidInput("okx set-leverage names neither instId nor ccy")
    return OrderIntent(
        symbol=symbol,
        type="set_leverage",
        leverage=_non_negative(_decimal(order, "lever"), "lever"),
    )


_INTENT_PARSERS = {
    f"{_V5}/trade/order": _place_intent,
    f"{_V5}/trade/batch-orders": _place_intent,
    f"{_V5}/trade/order-algo": _place_intent,
    f"{_V5}/trade/amend-order": _amend_intent,
    f"{_V5}/trade/amend-batch-orders": _amend_intent,
    f"{_V5}/trade/amend-algos": _amend_intent,
    f"{_V5}/trade/close-position": _close_intent,
    f"{_V5}/account/set-leverage": _leverage_intent,
}
_PARSERS_BY_PATH = {key.lower(): parser for key, parser in _INTENT_PARSERS.items()}


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order in an order-placing request (batch endpoints: a JSON array).

    Requests of any other kind give no intents. OKX reads order parameters
    from the JSON body only, so parameters in the query string of an order
    request are refused (InvalidInput) rather than left unchecked, as are
    bodies that are not strict JSON (duplicate keys, NaN) or lack instId.
    ``classified``: ``classify(request)``, when the caller made it already.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern is None:
        return []
    parser = _PARSERS_BY_PATH[classified.pattern.lower()]
    if request.url.query:
        raise InvalidInput("okx order parameters must be in the JSON body, not the query string")
    payload = load_json(request.read())
    orders = payload if isinstance(payload, list) else [payload]
    if not orders:
        raise InvalidInput("okx order request holds no order")
    if not all(isinstance(order, dict) for order in orders):
        raise InvalidInput("okx order request is not a JSON object or array of objects")
    return [parser(order) for order in orders]


# -- 6. Error map ----------------------------------------------------------------------------
# OKX answers most errors with HTTP 200 and a non-"0" code in the body. Codes
# from §4.7 and ccxt's exact table. Messages are our own: the exchange's msg
# is never copied, since some venues echo the signed request text in theirs.
_AUTH_CODES = frozenset(
    {
        "50007",  # account blocked
        "50008",  # user does not exist
        "50009",  # account blocked by liquidation
        "50030",  # no permission for this endpoint
        "50035",  # endpoint requires an IP-bound key
        "50100",  # API frozen
        "50101",  # key does not match the environment (live vs demo)
        "50103",  # OK-ACCESS-KEY header missing
        "50104",  # OK-ACCESS-PASSPHRASE header missing
        "50105",  # passphrase incorrect
        "50106",  # OK-ACCESS-SIGN header missing
        "50107",  # OK-ACCESS-TIMESTAMP header missing
        "50110",  # source IP not in the key's allowlist
        "50111",  # invalid OK-ACCESS-KEY
        "50113",  # invalid signature
        "50114",  # invalid authorization
        "50119",  # key does not exist
        "50120",  # key lacks the permission
    }
)
_TIMESTAMP_CODES = frozenset({"50102", "50112"})
_RATE_CODES = frozenset({"50011", "50061", "51113"})
_UNAVAILABLE_CODES = frozenset(
    {
        "50001",  # service temporarily unavailable
        "50004",  # endpoint timed out: the order may or may not exist
        "50005",  # API offline
        "50013",  # system busy
        "50026",  # system error
    }
)
_BALANCE_CODES = frozenset({"51008", "51119", "51127", "51131", "51502"})
# Every OKX limit is counted over 2 s; OKX sends no Retry-After.
_RATE_WINDOW_SECONDS = 2.0


def _retry_after(headers: Mapping[str, str]) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                break
    return _RATE_WINDOW_SECONDS


def _error_for_code(
    code: str, status: int, headers: Mapping[str, str], *, is_order: bool
) -> UpstreamError:
    base = code.split("_", 1)[0]  # sub-codes such as 51008_1000
    if base in _AUTH_CODES:
        return AuthenticationFailed(
            f"okx refused the key (code {code})", exchange=NAME, code=code, status=status
        )
    if base in _TIMESTAMP_CODES:
        return TimestampOutsideWindow(
            f"okx says the request timestamp is outside its 30 s window (code {code})",
            exchange=NAME,
            code=code,
            status=status,
        )
    if base in _RATE_CODES:
        return RateLimitedUpstream(
            f"okx rate limit reached (code {code})",
            exchange=NAME,
            code=code,
            status=status,
            retry_after=_retry_after(headers),
        )
    if base in _UNAVAILABLE_CODES:
        return ExchangeUnavailable(
            f"okx is unavailable or busy (code {code})", exchange=NAME, code=code, status=status
        )
    if base in _BALANCE_CODES:
        return InsufficientBalance(
            f"okx: insufficient balance (code {code})", exchange=NAME, code=code, status=status
        )
    if is_order or base.startswith(("51", "54", "55")):
        return OrderRejected(
            f"okx rejected the order (code {code})", exchange=NAME, code=code, status=status
        )
    return ExchangeRejected(
        f"okx rejected the request (code {code})", exchange=NAME, code=code, status=status
    )


def _error_for_status(status: int, headers: Mapping[str, str]) -> UpstreamError | None:
    if status == 429:
        return RateLimitedUpstream(
            "okx rate limit reached (HTTP 429)",
            exchange=NAME,
            status=status,
            retry_after=_retry_after(headers),
        )
    if status in (401, 403):
        return AuthenticationFailed(
            f"okx refused the key (HTTP {status})", exchange=NAME, status=status
        )
    if status >= 500:
        return ExchangeUnavailable(
            f"okx is unavailable (HTTP {status})", exchange=NAME, status=status
        )
    if status >= 400:
        return ExchangeRejected(
            f"okx rejected the request (HTTP {status})", exchange=NAME, status=status
        )
    return None


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error an OKX response stands for, or None for a success.

    Batch answers with code "2" (some orders accepted, some not) are a
    success: the body says which order failed, and calling the whole request
    failed would invite a resend that duplicates the accepted orders. Code
    "1" (every order failed) maps from the first order's sCode.
    """
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    code = payload.get("code") if isinstance(payload, dict) else None
    code = str(code) if code is not None else None
    if code in (None, "", "0"):
        return _error_for_status(status, headers)
    if code == "2":
        return None
    if code == "1":
        data = payload.get("data") if isinstance(payload, dict) else None
        for entry in data if isinstance(data, list) else []:
            order_code = entry.get("sCode") if isinstance(entry, dict) else None
            if order_code not in (None, "", "0", 0):
                return _error_for_code(str(order_code), status, headers, is_order=True)
        return OrderRejected(
            "okx rejected the order (code 1)", exchange=NAME, code=code, status=status
        )
    return _error_for_code(code, status, headers, is_order=False)


# -- 7. Key-permission query -----------------------------------------------------------------
PERMISSION_PATH = f"{_V5}/account/config"


def permission_request(environment: str) -> httpx.Request:
    """The unsigned request for the key's own configuration (``perm``, ``ip``)."""
    return httpx.Request("GET", base_url(PERMISSION_PATH, environment) + PERMISSION_PATH)


def parse_permissions(body: bytes) -> KeyPermissions:
    """Read ``perm`` (read_only, trade, withdraw) and ``ip`` from the account config.

    Raises the mapped UpstreamError when OKX answered with an error, and
    InvalidInput when the answer lacks ``perm``: a key whose withdrawal right
    cannot be read must not pass as one without it.
    """
    error = map_error(200, body, {})
    if error is not None:
        raise error
    try:
        payload = json.loads(body)
        config = payload["data"][0]
        perm = config["perm"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise InvalidInput("okx account config has no perm field") from None
    if not isinstance(perm, str):
        raise InvalidInput("okx account config perm is not a string")
    rights = {part.strip() for part in perm.split(",") if part.strip()}
    ips = config.get("ip")
    return KeyPermissions(
        can_read=bool(rights),
        can_trade="trade" in rights,
        can_withdraw="withdraw" in rights,
        # "" means the key is bound to no IP; absent means OKX did not say.
        ip_restricted=bool(ips.strip()) if isinstance(ips, str) else None,
    )


# -- 7b. Server time and key shapes (the doctor) ----------------------------------------------
TIME_PATH = f"{_V5}/public/time"


def time_request(environment: str) -> httpx.Request:
    """The public clock: ``{"code": "0", "data": [{"ts": "<ms>"}]}``."""
    return httpx.Request("GET", base_url(TIME_PATH, environment) + TIME_PATH)


def parse_server_time(body: bytes) -> int:
    """``data[0].ts`` in ms; InvalidInput when the answer has none."""
    try:
        value = json.loads(body)["data"][0]["ts"]
        return int(value)
    except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError):
        raise InvalidInput("okx time answer has no data[0].ts") from None


# API keys are UUIDs and secrets 32 upper-case hex digits: both shapes are common
# in code, so they count only on a line that names OKX or a key. The passphrase
# is chosen by the user and has no shape: only its assignment gives it away.
_KEY_WORDS = re.compile(r"(?i)okx|api[_-]?key|access[_-]?key|secret")
KEY_PATTERNS = (
    KeyPattern(
        "okx api key",
        re.compile(
            r"(?<![0-9a-f-])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-f-])"
        ),
        _KEY_WORDS,
    ),
    KeyPattern(
        "okx secret", re.compile(r"(?<![0-9A-Za-z])[0-9A-F]{32}(?![0-9A-Za-z])"), _KEY_WORDS
    ),
    KeyPattern(
        "okx passphrase",
        re.compile(r"(?i)okx[_-]?(?:api[_-]?)?pass(?:phrase)?[\"']?\s*[:=]\s*[\"']?([^\s\"']{4,})"),
    ),
)


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# Orders and batch orders take clOrdId (1-32 letters and digits) in each JSON
# object; GET /trade/order finds one by instId and clOrdId, 51603 "Order does
# not exist" otherwise. Algo orders keep their own algoClOrdId: none is added.
_CLIENT_ID_PATTERNS = frozenset({f"{_V5}/trade/order", f"{_V5}/trade/batch-orders"})
_ORDER_NOT_FOUND = "51603"


def _object_starts(text: str, is_list: bool) -> list[int]:
    # Where each top-level JSON object begins ("{"), found with the decoder
    # itself so that strings holding braces cannot mislead it.
    decoder = json.JSONDecoder()
    index = len(text) - len(text.lstrip())
    if not is_list:
        return [index]
    starts: list[int] = []
    index += 1
    while True:
        while text[index].isspace() or text[index] == ",":
            index += 1
        if text[index] == "]":
            return starts
        starts.append(index)
        _, index = decoder.raw_decode(text, index)


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``clOrdId`` set in every order object that lacks the key.

    The id is written into the body text right after each object's ``{``, so
    every other byte (numbers as the bot spelled them included) is kept.
    Raises InvalidInput as ``parse_order`` does for a body that is not strict JSON.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern not in _CLIENT_ID_PATTERNS:
        return request
    raw = request.read()
    payload = load_json(raw)
    orders = payload if isinstance(payload, list) else [payload]
    missing = [isinstance(order, dict) and "clOrdId" not in order for order in orders]
    if not any(missing):
        return request
    text = raw.decode("utf-8")
    pieces: list[str] = []
    last = 0
    for start, needs_id in zip(
        _object_starts(text, isinstance(payload, list)), missing, strict=True
    ):
        if needs_id:
            empty = text[start + 1 :].lstrip().startswith("}")
            pieces.append(text[last : start + 1])
            pieces.append(f'"clOrdId":"{new_id()}"' + ("" if empty else ","))
            last = start + 1
    pieces.append(text[last:])
    headers = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in ("content-length", "transfer-encoding")
    ]
    return httpx.Request(
        request.method, request.url, headers=headers, content="".join(pieces).encode("utf-8")
    )


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    a single order object without ``clOrdId``, and an id written as it is read."""
    if classified.kind != "order_place" or classified.pattern not in _CLIENT_ID_PATTERNS:
        return request, list(intents)
    return json_order_with_id(request, intents, "clOrdId", new_id, plain=True)


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """GET /api/v5/trade/order for the order's instId and clOrdId."""
    if not intent.client_order_id:
        return None
    params = {"instId": intent.symbol, "clOrdId": intent.client_order_id}
    return httpx.Request("GET", request.url.copy_with(path=f"{_V5}/trade/order", params=params))


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "unknown"
    if not isinstance(payload, dict):
        return "unknown"
    if status == 200 and payload.get("code") == "0" and payload.get("data"):
        return "found"
    return "absent" if payload.get("code") == _ORDER_NOT_FOUND else "unknown"


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /api/v5/market/ticker for ``symbol`` (an instId)."""
    params = {"instId": symbol}
    return httpx.Request("GET", request.url.copy_with(path=f"{_V5}/market/ticker", params=params))


def parse_price(body: bytes) -> Decimal | None:
    try:
        price = Decimal(str(json.loads(body)["data"][0]["last"]))
    except (ValueError, KeyError, IndexError, TypeError, ArithmeticError):
        return None
    return price if price.is_finite() and price > 0 else None


_PAGE = 100  # orders-pending answers at most 100 orders a page


def open_orders_request(request: httpx.Request) -> httpx.Request | None:
    """GET /api/v5/trade/orders-pending: every pending order, all instrument types (a page)."""
    params = {"limit": str(_PAGE)}
    path = f"{_V5}/trade/orders-pending"
    return httpx.Request("GET", request.url.copy_with(path=path, params=params))


def count_open_orders(body: bytes) -> int | None:
    """How many orders are pending; None when OKX's page is full (there may be more)."""
    try:
        payload = json.loads(body)
        orders = payload["data"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None
    if payload.get("code") != "0" or not isinstance(orders, list) or len(orders) >= _PAGE:
        return None
    return len(orders)


def _has_positions(symbol: str) -> bool:
    # Swaps (BTC-USDT-SWAP) and dated futures (BTC-USD-250328) hold positions; spot does not.
    parts = symbol.upper().split("-")
    return len(parts) == 3 and (parts[2] == "SWAP" or parts[2].isdigit())


def position_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /api/v5/account/positions for a swap or futures instId; None for spot."""
    if not _has_positions(symbol):
        return None
    params = {"instId": symbol}
    path = f"{_V5}/account/positions"
    return httpx.Request("GET", request.url.copy_with(path=path, params=params))


def position_notional(body: bytes, symbol: str) -> Decimal | None:
    """``notionalUsd`` of the instrument's positions, absolute, long and short; 0 if none."""
    try:
        payload = json.loads(body)
        if payload.get("code") != "0":
            return None
        total = Decimal(0)
        for row in payload["data"]:
            if row["instId"] == symbol:
                total += abs(Decimal(str(row["notionalUsd"] or "0")))
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError, ArithmeticError):
        return None
    return total if total.is_finite() else None


ORDER_TOOLS = OrderTools(
    add_client_order_id=add_client_order_id,
    with_client_order_id=with_client_order_id,
    lookup_request=lookup_request,
    lookup_outcome=lookup_outcome,
    price_request=price_request,
    parse_price=parse_price,
    open_orders_request=open_orders_request,
    count_open_orders=count_open_orders,
    position_request=position_request,
    position_notional=position_notional,
    positions_on="swaps and futures (notionalUsd); spot orders have no position",
)


# -- 9. WebSockets (the gateway) ---------------------------------------------------------------
# Public, private and business endpoints `[doc]`; demo trading on wspap.okx.com.
WS_URLS: dict[str, str] = {
    "production": "wss://ws.okx.com:8443",
    "testnet": "wss://wspap.okx.com:8443",
    "demo": "wss://wspap.okx.com:8443",
}
# Private ops -> the REST endpoint doing the same (classification, intents, policy).
WS_OPS: dict[str, str] = {
    "order": "/api/v5/trade/order",
    "batch-orders": "/api/v5/trade/batch-orders",
    "cancel-order": "/api/v5/trade/cancel-order",
    "batch-cancel-orders": "/api/v5/trade/cancel-batch-orders",
    "amend-order": "/api/v5/trade/amend-order",
    "batch-amend-orders": "/api/v5/trade/amend-batch-orders",
}
# Private channels -> the REST read of the same data: subscribing reads the account.
WS_CHANNELS: dict[str, str] = {
    "orders": "/api/v5/trade/orders-pending",
    "account": "/api/v5/account/balance",
    "positions": "/api/v5/account/positions",
    "balance_and_position": "/api/v5/account/balance",
    "fills": "/api/v5/trade/fills",
}


def ws_kind(path: str) -> Literal["public", "api"] | None:
    route = path.split("?", 1)[0].rstrip("/")
    if route == "/ws/v5/public":
        return "public"
    if route in ("/ws/v5/private", "/ws/v5/business"):
        return "api"
    return None


def ws_url(path: str, environment: str) -> str:
    base = WS_URLS.get(environment)
    if base is None:
        raise InvalidInput(f"okx has no WebSocket host in {environment}")
    return base + path


def ws_login(credential: Credential, now_ms: int) -> str:
    """The login frame: sign = base64 HMAC-SHA256(timestamp + "GET" + "/users/self/verify"),
    timestamp in seconds `[doc]`."""
    passphrase = credential.passphrase
    if passphrase is None:
        raise SigningError("okx credentials need a passphrase")
    stamp = str(now_ms // 1000)
    sign = hmac_sha256_b64(credential.secret, (stamp + "GET/users/self/verify").encode())
    arg = {
        "apiKey": credential.api_key,
        "passphrase": passphrase.reveal_text(),
        "timestamp": stamp,
        "sign": sign,
    }
    return json.dumps({"op": "login", "args": [arg]}, separators=(",", ":"))


def ws_login_answer(text: str) -> bool | None:
    frame = _wire.json_object(text)
    if frame is None:
        return None
    if frame.get("event") == "login":
        return frame.get("code") == "0"
    if frame.get("event") == "error":
        return False
    return None


def ws_local_answer(text: str) -> str | None:
    """A bot's own login (ccxt sends one with its placeholder keys): the gateway has already
    logged the connection in, so it says so and sends nothing upstream."""
    frame = _wire.json_object(text)
    if frame is not None and frame.get("op") == "login":
        return '{"event":"login","code":"0","msg":"","connId":"keybroker"}'
    if text == "ping":
        return "pong"
    return None


def ws_read_call(text: str) -> WsCall:
    frame = _wire.json_object(text)
    if frame is None or not isinstance(frame.get("op"), str):
        raise InvalidInput("an OKX WebSocket frame is a JSON object with an op")
    op = str(frame["op"])
    args = frame.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
        raise InvalidInput("args must be a non-empty list of objects")
    if op in WS_OPS:
        batch = op.startswith("batch-")
        body = _wire.frame_args_body(args if batch else args[0])
        rest = RestTwin("POST", WS_OPS[op], content=body, content_type="application/json")
        return WsCall(frame.get("id"), op, {}, rest, frame)
    if op in ("subscribe", "unsubscribe"):
        channels = {str(a.get("channel")) for a in args}
        unknown = sorted(c for c in channels if c not in WS_CHANNELS)
        if unknown:
            raise InvalidInput(f"the private channel {unknown[0]!r} is not catalogued")
        path = WS_CHANNELS[sorted(channels)[0]]
        return WsCall(frame.get("id"), op, {}, RestTwin("GET", path), frame)
    raise InvalidInput(f"the WebSocket op {op!r} is not catalogued")


def ws_sign_call(call: WsCall, credential: Credential, now_ms: int) -> str:
    """The frame to send on the logged-in connection, rebuilt from the judged REST body
    (which carries the client order id the gateway may have added)."""
    frame: dict[str, object] = {"op": call.method}
    if call.request_id is not None:
        frame["id"] = call.request_id
    if call.method in WS_OPS:
        body = json.loads(call.rest.content)
        frame["args"] = body if isinstance(body, list) else [body]
    else:
        frame["args"] = call.frame.get("args", [])
    return json.dumps(frame, separators=(",", ":"))


def ws_error_frame(request_id: object, status: int, code: str, message: str) -> str:
    """OKX's error shape with its generic "operation failed" code 1 and our message, so a
    bot treats the refusal as a failed op rather than a dropped connection."""
    body: dict[str, object] = {"code": "1", "msg": message, "data": [], "event": "error"}
    if request_id is not None:
        body["id"] = request_id
    return json.dumps(body, separators=(",", ":"))


def ws_request_id(text: str) -> object:
    frame = _wire.json_object(text)
    return None if frame is None else frame.get("id")


def ws_response_id(text: str) -> object:
    frame = _wire.json_object(text)
    if frame is None or "op" not in frame:
        return None
    return frame.get("id")


def ws_subscription(text: str) -> tuple[object, str, tuple[str, ...]] | None:
    frame = _wire.json_object(text)
    if frame is None or frame.get("op") not in ("subscribe", "unsubscribe"):
        return None
    args = frame.get("args")
    if not isinstance(args, list) or not all(isinstance(a, dict) for a in args):
        return None
    names = tuple(json.dumps(a, sort_keys=True, separators=(",", ":")) for a in args)
    return frame.get("id"), str(frame["op"]), names


def ws_subscription_replies(request_id: object, action: str, names: tuple[str, ...]) -> list[str]:
    return [
        json.dumps({"event": action, "arg": json.loads(name), "connId": "keybroker"})
        for name in names
    ]


def ws_stream_subscribe(name: str) -> str:
    return json.dumps({"op": "subscribe", "args": [json.loads(name)]}, separators=(",", ":"))


def ws_is_data(text: str) -> bool:
    frame = _wire.json_object(text, exact=False)  # every market-data frame: keys only
    return frame is not None and "event" not in frame


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
    stream_path=lambda name: "/ws/v5/public",
    streams_of=lambda path, query: ((), False),
    stream_subscribe=ws_stream_subscribe,
    is_data=ws_is_data,
    login_frame=ws_login,
    login_answer=ws_login_answer,
    local_answer=ws_local_answer,
)


PROFILE = ExchangeProfile(
    name=NAME,
    env_prefix="OKX",
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
    time_request=time_request,
    parse_server_time=parse_server_time,
    key_patterns=KEY_PATTERNS,
    orders=ORDER_TOOLS,
    rate_limits=RATE_LIMITS,
    websocket=WEBSOCKET,
)
