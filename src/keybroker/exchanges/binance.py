"""binance: everything keybroker knows about Binance's REST wire format.

    >>> signed = PROFILE.sign(httpx.Request("POST", url, content=body), credential, now_ms=ts)
    >>> signed.read()   # body + b"&timestamp=<ts>&signature=<hex HMAC of query + body>"

Covers spot ``/api/v3``, SAPI ``/sapi/v1..v4`` (wallet, sub-accounts, key
restrictions) and USDⓈ-M futures ``/fapi/v1..v3``, each on its own host.
Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, PROFILE. Source of truth: ../shared/design/exchange-auth.md §2 and §3.

Binance signs parameters, not requests: the signature is over the query
string concatenated with the form body, exactly as sent, and since
2026-01-15 that payload must be the percent-encoded form. So the signer
works on raw bytes and never re-encodes what is already valid.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote_to_bytes

import httpx

from keybroker.crypto.signing import (
    ed25519_b64,
    hmac_sha256_hex,
    load_private_key,
    rsa_sha256_b64,
)
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
from keybroker.exchanges._wire import (
    HTTPX_INTERNALS_MATCH,
    build_request,
    header_triples,
    load_json,
    with_body,
    with_query,
)
from keybroker.exchanges.base import (
    DANGEROUS_KINDS,
    PLAIN_CLIENT_ID,
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
    RequestKind,
    RestTwin,
    WebSocketSupport,
    WsCall,
    classify_either_method,
    normalize_path,
    parse_amount,
    read_usage_headers,
)
from keybroker.model import Credential
from keybroker.secret import Secret

NAME = "binance"

# -- 1. Base URLs ------------------------------------------------------------------
# Each product family lives on its own host, and the test environments differ
# per family: the spot testnet and demo mode serve /api only (no /sapi at all),
# and USDⓈ-M futures has a single demo host that its docs now call the testnet.
# A testnet key from testnet.binance.vision does not work on demo-fapi (keys
# are created per site); the user registers one credential per site.
BASE_URLS: dict[str, dict[str, str]] = {
    "spot": {
        "production": "https://api.binance.com",
        "testnet": "https://testnet.binance.vision",
        "demo": "https://demo-api.binance.com",
    },
    "sapi": {
        "production": "https://api.binance.com",
    },
    "usdm": {
        "production": "https://fapi.binance.com",
        "testnet": "https://demo-fapi.binance.com",
        "demo": "https://demo-fapi.binance.com",
    },
    "papi": {
        "production": "https://papi.binance.com",
    },
}

# First path segment -> product host. Anything else (/dapi, /eapi, ...) is a
# product keybroker does not speak for Binance yet, and says so.
_PRODUCT_BY_PREFIX = {
    "api": "spot",
    "sapi": "sapi",
    "fapi": "usdm",
    "futures": "usdm",
    "papi": "papi",
}


def base_url(path: str, environment: str) -> str:
    """The host serving ``path``: spot and SAPI on api.binance.com, /fapi on fapi.binance.com.

    Raises InvalidInput for a path of a product without a host here, and for
    an environment that product does not have (no /sapi outside production).
    """
    first = normalize_path(path).lstrip("/").split("/", 1)[0]
    product = _PRODUCT_BY_PREFIX.get(first)
    if product is None:
        raise InvalidInput(
            f"binance path prefix /{first} is not supported; "
            f"known prefixes: {', '.join('/' + p for p in _PRODUCT_BY_PREFIX)}"
        )
    url = BASE_URLS[product].get(environment)
    if url is None:
        raise InvalidInput(
            f"binance /{first} endpoints exist only in: {', '.join(BASE_URLS[product])}; "
            f"not in {environment}"
        )
    return url


# -- 2. Credential rules --------------------------------------------------------------
def check_secret(secret: Secret, key_type: str) -> None:
    """Cheap shape checks: an ASCII HMAC secret, or a PEM private key of the right type.

    Binance takes RSA keys of 2048 or 4096 bits; a smaller key is refused here
    rather than by the exchange at the first order.
    """
    if key_type == "hmac":
        if not secret.reveal().isascii():
            raise InvalidInput("secret of an HMAC key must be ASCII")
        return
    try:
        key = load_private_key(secret.reveal(), key_type)
    except SigningError:
        raise InvalidInput(
            f"secret is not an unencrypted PEM {key_type} private key (PKCS#8)"
        ) from None
    if key_type == "rsa" and getattr(key, "key_size", 0) < 2048:
        raise InvalidInput("secret is an RSA key shorter than 2048 bits; Binance needs 2048+")


CREDENTIALS = CredentialRules(
    needs_passphrase=False, key_types=("hmac", "rsa", "ed25519"), check_secret=check_secret
)


# -- 3. Signer ---------------------------------------------------------------------------
API_KEY_HEADER = "X-MBX-APIKEY"
_API_KEY_HEADER = API_KEY_HEADER.encode("ascii")
# Headers the signer owns: the key, and the framing it recomputes for the new
# body. They are dropped wherever they were and set last, in a fixed order,
# so re-signing a signed request gives the same bytes.
_SIGNER_HEADERS = frozenset({b"x-mbx-apikey", b"content-length", b"transfer-encoding"})
_FORM = b"application/x-www-form-urlencoded"
# Methods whose parameters Binance takes in a form body (ccxt sends them there).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# The 2026 rule: the signed payload must be the percent-encoded form. A byte is
# left as it is if RFC 3986 allows it raw in a query (unreserved, sub-delims,
# ":@/?") or if it starts a valid %XX escape; anything else (non-ASCII, space,
# quotes, brackets, braces, a stray "%") is encoded. Valid input therefore
# passes byte for byte (ccxt's unencoded "/" and ":" included), and what was
# not a valid encoding becomes one, which is then both signed and sent.
_NOT_PERCENT_ENCODED = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]|%(?![0-9A-Fa-f]{2})")
_RAW_ALLOWED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%"
# A parameter name holding an escape: the server decodes names, so
# "%73ignature" is a signature too.
_ESCAPED_NAME = re.compile(rb"(?:^|&)[^=&%]*%")


def _percent_encode_byte(match: re.Match[bytes]) -> bytes:
    return b"%%%02X" % match.group()[0]


def percent_encode_payload(raw: bytes) -> bytes:
    """``raw`` with every byte that may not appear unencoded in a query percent-encoded.

    Idempotent: encoding an already-encoded payload returns it unchanged.
    """
    # translate() deletes the allowed bytes in C: nothing left means nothing
    # to encode, unless a "%" is not the start of an escape.
    if not raw.translate(None, _RAW_ALLOWED) and (
        b"%" not in raw or _NOT_PERCENT_ENCODED.search(raw) is None
    ):
        return raw
    return _NOT_PERCENT_ENCODED.sub(_percent_encode_byte, raw)


def _has_auth(part: bytes) -> bool:
    return (
        b"timestamp" in part
        or b"signature" in part
        or (b"%" in part and _ESCAPED_NAME.search(part) is not None)
    )


def _auth_params(part: bytes) -> tuple[list[bytes], int] | None:
    """``part`` split without its signature and timestamp parameters, or None if it has none.

    The second item is where the first timestamp was, -1 if none; its slot
    is kept as an empty placeholder for the caller to fill.
    """
    if not _has_auth(part):
        return None  # the common case: an unsigned request, nothing to take out
    pieces = part.split(b"&")
    names = [piece.partition(b"=")[0] for piece in pieces]
    if b"%" in part:
        names = [unquote_to_bytes(name) if b"%" in name else name for name in names]
    if b"timestamp" not in names and b"signature" not in names:
        return None
    kept = [
        piece
        for piece, name in zip(pieces, names, strict=True)
        if name != b"timestamp" and name != b"signature"
    ]
    if b"timestamp" not in names:
        return kept, -1
    first = names.index(b"timestamp")
    timestamp_at = first - names[:first].count(b"signature")
    kept.insert(timestamp_at, b"")
    return kept, timestamp_at


@lru_cache(maxsize=1024)
def _is_signed_endpoint(method: str, raw_path: str) -> bool:
    # Cached per (method, raw path): the signer runs on every request and the
    # set of paths a bot uses is small. Public (NONE) and key-only endpoints
    # (USER_STREAM, MARKET_DATA) take the API key but reject or ignore a
    # signature; everything else, unknown endpoints included, is signed.
    path = normalize_path(raw_path)
    if path in _KEY_ONLY_PATHS:
        return False
    found = CATALOGUE.lookup(method.upper(), path)
    if found is not None:
        return found[1].kind != "public"
    return not is_public_path(path)


def _signature(credential: Credential, payload: bytes) -> bytes:
    if credential.key_type == "hmac":
        return hmac_sha256_hex(credential.secret, payload).encode("ascii")
    if credential.key_type == "rsa":
        signature = rsa_sha256_b64(credential.secret.reveal(), payload)
    elif credential.key_type == "ed25519":
        signature = ed25519_b64(credential.secret, payload)
    else:
        raise SigningError(f"binance cannot sign with {credential.key_type} keys")
    # Base64 holds "+", "/" and "=", which mean something in a query: encode them.
    return signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D").encode("ascii")


def _strip_auth(part: bytes) -> bytes:
    found = _auth_params(part)
    if found is None:
        return part
    kept, timestamp_at = found
    if timestamp_at >= 0:
        del kept[timestamp_at]
    return b"&".join(kept)


def _place_timestamp(query: bytes, body: bytes, stamp: bytes, method: str) -> tuple[bytes, bytes]:
    # Where the request had a timestamp, the new one takes its place (another
    # client's parameter order is kept); otherwise it goes at the end of the
    # body, or of the query when there is no body.
    in_query = _auth_params(query) if query else None
    in_body = _auth_params(body) if body else None
    placed = False
    if in_query is not None:
        kept, at = in_query
        if at >= 0:
            kept[at] = stamp
            placed = True
        query = b"&".join(kept)
    if in_body is not None:
        kept, at = in_body
        if at >= 0:
            if placed:
                del kept[at]  # the query's copy wins at Binance; send only that one
            else:
                kept[at] = stamp
                placed = True
        body = b"&".join(kept)
    if placed:
        return query, body
    if body or (not query and method in _BODY_METHODS):
        return query, body + b"&" + stamp if body else stamp
    return (query + b"&" + stamp if query else stamp), body


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Sign ``request`` as Binance's SIGNED endpoints require; see the module docstring.

    ``timestamp`` is set to ``now_ms`` where the request already had one (so
    the parameter order of another client is kept) or appended to the form
    body (the query when there is no body); every old ``signature`` goes and
    the new one is appended last, after the body if there is one, else after
    the query. The payload signed is the query bytes followed by the body
    bytes, with no separator. ``recvWindow`` and every other parameter are
    kept byte for byte and in order. Public and key-only endpoints get only
    the ``X-MBX-APIKEY`` header (and lose any stale signature and timestamp).
    Raises SigningError for a key this signer cannot use or a non-form body.
    """
    try:
        api_key = credential.api_key.encode("ascii")
    except UnicodeEncodeError:
        raise SigningError("binance api key must be ASCII") from None
    url = request.url
    method = request.method
    sent_query = url.query
    query = percent_encode_payload(sent_query) if sent_query else sent_query
    body = _body(request)
    if body:
        body = percent_encode_payload(body)
    if _is_signed_endpoint(method, _raw_path(url)):
        stamp = b"timestamp=%d" % now_ms
        if (query and _has_auth(query)) or (body and _has_auth(body)):
            query, body = _place_timestamp(query, body, stamp, method)
        elif body or (not query and method in _BODY_METHODS):
            body = body + b"&" + stamp if body else stamp
        else:
            query = query + b"&" + stamp if query else stamp
        signature = b"signature=" + _signature(credential, query + body)
        if body:
            body = body + b"&" + signature
        else:
            query = query + b"&" + signature if query else signature
    else:
        query = _strip_auth(query)
        body = _strip_auth(body)
    if query != sent_query:
        url = with_query(url, query)
    return _rebuild(request, url, body, api_key)


def _raw_path(url: httpx.URL) -> str:
    # The parsed path as it was sent, without building url.raw_path's bytes.
    if HTTPX_INTERNALS_MATCH:
        path: str = url._uri_reference.path
        return path
    return url.raw_path.partition(b"?")[0].decode("ascii")  # pragma: no cover


def _body(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:
        return request.read()


def _rebuild(request: httpx.Request, url: httpx.URL, body: bytes, api_key: bytes) -> httpx.Request:
    # Hot path: the new request is built once, from parts already in httpx's
    # own form (see _wire.build_request): the parsed URL with only its query
    # swapped, the original's headers minus those the signer owns, the body.
    kept = [item for item in header_triples(request.headers) if item[1] not in _SIGNER_HEADERS]
    has_host = False
    content_type = None
    for _, lower, value in kept:
        if lower == b"host":
            has_host = True
        elif lower == b"content-type":
            content_type = value
    if not has_host:
        kept.insert(0, (b"Host", b"host", url.netloc))
    if body:
        if content_type is None:
            kept.append((b"Content-Type", b"content-type", _FORM))
        elif not content_type.lower().startswith(_FORM):
            raise SigningError("binance signs form bodies only (x-www-form-urlencoded)")
    if body or request.method in _BODY_METHODS:
        kept.append((b"Content-Length", b"content-length", b"%d" % len(body)))
    kept.append((_API_KEY_HEADER, b"x-mbx-apikey", api_key))
    return build_request(request.method, url, kept, body, request.extensions)


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Weights are the request weights of Binance's docs (spot: of the 6000/min IP
# budget; SAPI: IP or UID weight as documented; USDⓈ-M: of the 2400/min IP
# budget), as of 2026 and as ccxt 4.5.90's API map quotes them. Where the
# weight depends on parameters (depth limit, symbol given or not) the entry
# holds the default and classify() computes the real one. order_count is what
# a call charges against the account's order-rate limits. The weights of the
# transfer and withdrawal entries matter little: they are never signed.
_ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # spot: market data (security type NONE)
    ("GET", "/api/v3/ping"): Endpoint("public", 1),
    ("GET", "/api/v3/time"): Endpoint("public", 1),
    ("GET", "/api/v3/exchangeInfo"): Endpoint("public", 20),
    ("GET", "/api/v3/depth"): Endpoint("public", 5),
    ("GET", "/api/v3/trades"): Endpoint("public", 10),
    ("GET", "/api/v3/historicalTrades"): Endpoint("public", 10),
    ("GET", "/api/v3/aggTrades"): Endpoint("public", 2),
    ("GET", "/api/v3/klines"): Endpoint("public", 2),
    ("GET", "/api/v3/uiKlines"): Endpoint("public", 2),
    ("GET", "/api/v3/avgPrice"): Endpoint("public", 2),
    ("GET", "/api/v3/ticker/24hr"): Endpoint("public", 2),
    ("GET", "/api/v3/ticker/tradingDay"): Endpoint("public", 4),
    ("GET", "/api/v3/ticker/price"): Endpoint("public", 2),
    ("GET", "/api/v3/ticker/bookTicker"): Endpoint("public", 2),
    ("GET", "/api/v3/ticker"): Endpoint("public", 4),
    ("GET", "/sapi/v1/system/status"): Endpoint("public", 1),
    # spot: account and order reads
    ("GET", "/api/v3/account"): Endpoint("account_read", 20),
    ("GET", "/api/v3/account/commission"): Endpoint("account_read", 20),
    ("GET", "/api/v3/rateLimit/order"): Endpoint("account_read", 40),
    ("GET", "/api/v3/myTrades"): Endpoint("order_read", 20),
    ("GET", "/api/v3/myPreventedMatches"): Endpoint("order_read", 20),
    ("GET", "/api/v3/myAllocations"): Endpoint("order_read", 20),
    ("GET", "/api/v3/order"): Endpoint("order_read", 4),
    ("GET", "/api/v3/openOrders"): Endpoint("order_read", 6),
    ("GET", "/api/v3/allOrders"): Endpoint("order_read", 20),
    ("GET", "/api/v3/orderList"): Endpoint("order_read", 4),
    ("GET", "/api/v3/allOrderList"): Endpoint("order_read", 20),
    ("GET", "/api/v3/openOrderList"): Endpoint("order_read", 6),
    # spot: user data stream (USER_STREAM: API key only, no signature)
    ("POST", "/api/v3/userDataStream"): Endpoint("account_read", 2),
    ("PUT", "/api/v3/userDataStream"): Endpoint("account_read", 2),
    ("DELETE", "/api/v3/userDataStream"): Endpoint("account_read", 2),
    # spot: orders
    ("POST", "/api/v3/order"): Endpoint("order_place", 1, order_count=1),
    ("POST", "/api/v3/order/test"): Endpoint("order_place", 1),
    ("POST", "/api/v3/order/cancelReplace"): Endpoint("order_place", 1, order_count=1),
    ("PUT", "/api/v3/order/amend/keepPriority"): Endpoint("order_place", 4),
    ("POST", "/api/v3/order/oco"): Endpoint("order_place", 1, order_count=2, is_batch=True),
    ("POST", "/api/v3/orderList/oco"): Endpoint("order_place", 1, order_count=2, is_batch=True),
    ("POST", "/api/v3/orderList/oto"): Endpoint("order_place", 1, order_count=2, is_batch=True),
    ("POST", "/api/v3/orderList/otoco"): Endpoint("order_place", 1, order_count=3, is_batch=True),
    ("POST", "/api/v3/sor/order"): Endpoint("order_place", 1, order_count=1),
    ("POST", "/api/v3/sor/order/test"): Endpoint("order_place", 1),
    ("DELETE", "/api/v3/order"): Endpoint("order_cancel", 1),
    ("DELETE", "/api/v3/openOrders"): Endpoint("order_cancel", 1),
    ("DELETE", "/api/v3/orderList"): Endpoint("order_cancel", 1),
    # SAPI: reads
    ("GET", "/sapi/v1/account/apiRestrictions"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/account/status"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/account/apiTradingStatus"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/account/info"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/capital/config/getall"): Endpoint("account_read", 10),
    ("GET", "/sapi/v1/capital/deposit/hisrec"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/capital/deposit/address"): Endpoint("account_read", 10),
    ("GET", "/sapi/v1/capital/withdraw/history"): Endpoint("account_read", 18000),
    ("GET", "/sapi/v1/asset/tradeFee"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/asset/assetDetail"): Endpoint("account_read", 1),
    ("GET", "/sapi/v1/asset/transfer"): Endpoint("account_read", 1),
    ("POST", "/sapi/v1/asset/get-funding-asset"): Endpoint("account_read", 1),
    ("POST", "/sapi/v3/asset/getUserAsset"): Endpoint("account_read", 5),
    ("GET", "/sapi/v1/sub-account/list"): Endpoint("account_read", 1),
    ("GET", "/sapi/v3/sub-account/assets"): Endpoint("account_read", 60),
    # SAPI: withdrawals (never signed)
    ("POST", "/sapi/v1/capital/withdraw/apply"): Endpoint("withdraw", 900),
    ("POST", "/sapi/v1/localentity/withdraw/apply"): Endpoint("withdraw", 900),
    ("POST", "/sapi/v1/managed-subaccount/withdraw"): Endpoint("withdraw", 1),
    ("POST", "/sapi/v1/account/enableFastWithdrawSwitch"): Endpoint("withdraw", 1),
    ("POST", "/sapi/v1/account/disableFastWithdrawSwitch"): Endpoint("withdraw", 1),
    ("POST", "/sapi/v1/giftcard/createCode"): Endpoint("withdraw", 1),
    ("POST", "/sapi/v1/giftcard/buyCode"): Endpoint("withdraw", 1),
    # SAPI: transfers between wallets, products and accounts
    ("POST", "/sapi/v1/asset/transfer"): Endpoint("transfer", 900),
    ("POST", "/sapi/v1/futures/transfer"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/margin/transfer"): Endpoint("transfer", 600),
    ("POST", "/sapi/v1/margin/isolated/transfer"): Endpoint("transfer", 600),
    ("POST", "/sapi/v1/margin/loan"): Endpoint("transfer", 3000),
    ("POST", "/sapi/v1/margin/repay"): Endpoint("transfer", 3000),
    ("POST", "/sapi/v1/margin/borrow-repay"): Endpoint("transfer", 1500),
    ("POST", "/sapi/v1/asset/convert-transfer"): Endpoint("transfer", 5),
    ("POST", "/sapi/v1/asset/dust"): Endpoint("transfer", 10),
    ("POST", "/sapi/v1/convert/getQuote"): Endpoint("transfer", 200),
    ("POST", "/sapi/v1/convert/acceptQuote"): Endpoint("transfer", 500),
    ("POST", "/sapi/v1/giftcard/redeemCode"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/simple-earn/flexible/subscribe"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/simple-earn/flexible/redeem"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/simple-earn/locked/subscribe"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/simple-earn/locked/redeem"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/staking/purchase"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/staking/redeem"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/managed-subaccount/deposit"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/sub-account/universalTransfer"): Endpoint("transfer", 360),
    ("POST", "/sapi/v1/sub-account/transfer/subToMaster"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/sub-account/transfer/subToSub"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/sub-account/futures/transfer"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/sub-account/futures/internalTransfer"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/sub-account/margin/transfer"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/broker/transfer"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/broker/transfer/futures"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/broker/universalTransfer"): Endpoint("transfer", 1),
    ("POST", "/sapi/v1/portfolio/bnb-transfer"): Endpoint("transfer", 1500),
    ("POST", "/papi/v1/bnb-transfer"): Endpoint("transfer", 750),
    # SAPI: API-key management (the prefix families in _DANGEROUS_FAMILIES cover
    # every sub-path; these entries name the documented ones)
    ("POST", "/sapi/v1/sub-account/subAccountApi/ipRestriction"): Endpoint("key_management", 1),
    ("POST", "/sapi/v2/sub-account/subAccountApi/ipRestriction"): Endpoint("key_management", 1),
    ("DELETE", "/sapi/v1/sub-account/subAccountApi/ipRestriction/ipList"): Endpoint(
        "key_management", 1
    ),
    ("POST", "/sapi/v1/broker/subAccountApi"): Endpoint("key_management", 1),
    ("DELETE", "/sapi/v1/broker/subAccountApi"): Endpoint("key_management", 1),
    ("POST", "/sapi/v1/broker/subAccountApi/permission"): Endpoint("key_management", 1),
    ("POST", "/sapi/v2/broker/subAccountApi/ipRestriction"): Endpoint("key_management", 1),
    # USDⓈ-M: market data (security type NONE; historicalTrades is MARKET_DATA)
    ("GET", "/fapi/v1/ping"): Endpoint("public", 1),
    ("GET", "/fapi/v1/time"): Endpoint("public", 1),
    ("GET", "/fapi/v1/exchangeInfo"): Endpoint("public", 1),
    ("GET", "/fapi/v1/depth"): Endpoint("public", 10),
    ("GET", "/fapi/v1/trades"): Endpoint("public", 5),
    ("GET", "/fapi/v1/historicalTrades"): Endpoint("public", 20),
    ("GET", "/fapi/v1/aggTrades"): Endpoint("public", 20),
    ("GET", "/fapi/v1/klines"): Endpoint("public", 5),
    ("GET", "/fapi/v1/continuousKlines"): Endpoint("public", 5),
    ("GET", "/fapi/v1/indexPriceKlines"): Endpoint("public", 5),
    ("GET", "/fapi/v1/markPriceKlines"): Endpoint("public", 5),
    ("GET", "/fapi/v1/premiumIndexKlines"): Endpoint("public", 5),
    ("GET", "/fapi/v1/premiumIndex"): Endpoint("public", 1),
    ("GET", "/fapi/v1/fundingRate"): Endpoint("public", 1),
    ("GET", "/fapi/v1/fundingInfo"): Endpoint("public", 1),
    ("GET", "/fapi/v1/ticker/24hr"): Endpoint("public", 1),
    ("GET", "/fapi/v1/ticker/price"): Endpoint("public", 1),
    ("GET", "/fapi/v2/ticker/price"): Endpoint("public", 1),
    ("GET", "/fapi/v1/ticker/bookTicker"): Endpoint("public", 2),
    ("GET", "/fapi/v1/openInterest"): Endpoint("public", 1),
    # USDⓈ-M: account and order reads
    ("GET", "/fapi/v2/account"): Endpoint("account_read", 5),
    ("GET", "/fapi/v3/account"): Endpoint("account_read", 5),
    ("GET", "/fapi/v2/balance"): Endpoint("account_read", 5),
    ("GET", "/fapi/v3/balance"): Endpoint("account_read", 5),
    ("GET", "/fapi/v2/positionRisk"): Endpoint("account_read", 5),
    ("GET", "/fapi/v3/positionRisk"): Endpoint("account_read", 5),
    ("GET", "/fapi/v1/income"): Endpoint("account_read", 30),
    ("GET", "/fapi/v1/leverageBracket"): Endpoint("account_read", 1),
    ("GET", "/fapi/v1/commissionRate"): Endpoint("account_read", 20),
    ("GET", "/fapi/v1/apiTradingStatus"): Endpoint("account_read", 1),
    ("GET", "/fapi/v1/positionSide/dual"): Endpoint("account_read", 30),
    ("GET", "/fapi/v1/multiAssetsMargin"): Endpoint("account_read", 30),
    ("GET", "/fapi/v1/rateLimit/order"): Endpoint("account_read", 1),
    ("GET", "/fapi/v1/order"): Endpoint("order_read", 1),
    ("GET", "/fapi/v1/openOrder"): Endpoint("order_read", 1),
    ("GET", "/fapi/v1/openOrders"): Endpoint("order_read", 1),
    ("GET", "/fapi/v1/allOrders"): Endpoint("order_read", 5),
    ("GET", "/fapi/v1/userTrades"): Endpoint("order_read", 5),
    ("GET", "/fapi/v1/forceOrders"): Endpoint("order_read", 20),
    # USDⓈ-M: user data stream (USER_STREAM)
    ("POST", "/fapi/v1/listenKey"): Endpoint("account_read", 1),
    ("PUT", "/fapi/v1/listenKey"): Endpoint("account_read", 1),
    ("DELETE", "/fapi/v1/listenKey"): Endpoint("account_read", 1),
    # USDⓈ-M: orders. A new order costs no IP weight, only order count.
    ("POST", "/fapi/v1/order"): Endpoint("order_place", 0, order_count=1),
    ("PUT", "/fapi/v1/order"): Endpoint("order_place", 1, order_count=1),
    ("POST", "/fapi/v1/order/test"): Endpoint("order_place", 0),
    # Up to 5 orders; charges 5 on the 10-second order counter.
    ("POST", "/fapi/v1/batchOrders"): Endpoint("order_place", 5, order_count=5, is_batch=True),
    ("PUT", "/fapi/v1/batchOrders"): Endpoint("order_place", 5, order_count=5, is_batch=True),
    # Leverage and margin mode change the risk of every later order: they are
    # order_place so that a policy allowing trades must also allow them, and
    # the leverage call yields an intent carrying the leverage.
    ("POST", "/fapi/v1/leverage"): Endpoint("order_place", 1),
    ("POST", "/fapi/v1/marginType"): Endpoint("order_place", 1),
    ("POST", "/fapi/v1/positionSide/dual"): Endpoint("order_place", 1),
    ("POST", "/fapi/v1/multiAssetsMargin"): Endpoint("order_place", 1),
    # Moves margin in or out of an isolated position.
    ("POST", "/fapi/v1/positionMargin"): Endpoint("transfer", 1),
    ("DELETE", "/fapi/v1/order"): Endpoint("order_cancel", 1),
    ("DELETE", "/fapi/v1/allOpenOrders"): Endpoint("order_cancel", 1),
    ("DELETE", "/fapi/v1/batchOrders"): Endpoint("order_cancel", 1, is_batch=True),
    ("POST", "/fapi/v1/countdownCancelAll"): Endpoint("order_cancel", 10),
}
CATALOGUE = Catalogue(_ENDPOINTS)

# Endpoints that take the API key but no signature (USER_STREAM, MARKET_DATA).
_KEY_ONLY_PATHS = frozenset(
    normalize_path(p)
    for p in (
        "/api/v3/userDataStream",
        "/api/v3/historicalTrades",
        "/fapi/v1/listenKey",
        "/fapi/v1/historicalTrades",
    )
)

# Families of dangerous paths, whatever the verb and whatever the last segments:
# new sub-paths appear every quarter, and each one of these moves keys or value.
# Every family is under /sapi/ (classify looks no further for other paths).
_DANGEROUS_FAMILIES: tuple[tuple[re.Pattern[str], RequestKind], ...] = (
    (re.compile(r"^/sapi/v\d+/(sub-account|broker)/subaccountapi(/|$)"), "key_management"),
    (re.compile(r"^/sapi/v\d+/account/apirestrictions/"), "key_management"),
    (re.compile(r"^/sapi/v\d+/(localentity|managed-subaccount)/withdraw(/|$)"), "withdraw"),
    (re.compile(r"^/sapi/v\d+/capital/withdraw/apply(/|$)"), "withdraw"),
    (re.compile(r"^/sapi/v\d+/giftcard/"), "withdraw"),
)
# For an uncatalogued private path (denied anyway), a more telling kind for
# the audit log when the path plainly says what it does.
_TELLING_WORDS: tuple[tuple[str, RequestKind], ...] = (
    ("withdraw", "withdraw"),
    ("apikey", "key_management"),
    ("api-key", "key_management"),
    ("transfer", "transfer"),
)
_PUBLIC_PREFIXES = ("/api/v3/ticker/", "/fapi/v1/ticker/", "/futures/data/")


def is_public_path(path: str) -> bool:
    """Market-data families that are public even where not catalogued one by one."""
    return path.startswith(_PUBLIC_PREFIXES)


def _query_params(request: httpx.Request) -> dict[str, str]:
    return dict(parse_qsl(request.url.query.decode("ascii", "replace"), keep_blank_values=True))


def _symbol_count(params: Mapping[str, str]) -> int | None:
    if params.get("symbol"):
        return 1
    symbols = params.get("symbols")
    if not symbols:
        return None
    try:
        listed = json.loads(symbols)
    except ValueError:
        return None
    return len(listed) if isinstance(listed, list) else None


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        return default


def _by_limit(
    steps: tuple[tuple[int, int], ...], default_limit: int
) -> Callable[[Mapping[str, str]], int]:
    def weight(params: Mapping[str, str]) -> int:
        limit = _int_param(params, "limit", default_limit)
        for up_to, cost in steps:
            if limit <= up_to:
                return cost
        return steps[-1][1]

    return weight


def _by_symbols(
    one: int, many: Callable[[int], int], none: int
) -> Callable[[Mapping[str, str]], int]:
    def weight(params: Mapping[str, str]) -> int:
        count = _symbol_count(params)
        if count is None:
            return none
        return one if params.get("symbol") else many(count)

    return weight


def _ticker_24hr_many(count: int) -> int:
    return 2 if count <= 20 else 40 if count <= 100 else 80


_FAPI_KLINES = _by_limit(((99, 1), (499, 2), (1000, 5), (1500, 10)), 500)

# (method, path) -> weight from the request's query parameters.
_WEIGHT_BY_PARAMS: dict[tuple[str, str], Callable[[Mapping[str, str]], int]] = {
    ("GET", "/api/v3/depth"): _by_limit(((100, 5), (500, 25), (1000, 50), (5000, 250)), 100),
    ("GET", "/api/v3/ticker/24hr"): _by_symbols(2, _ticker_24hr_many, 80),
    ("GET", "/api/v3/ticker/price"): _by_symbols(2, lambda n: 4, 4),
    ("GET", "/api/v3/ticker/bookTicker"): _by_symbols(2, lambda n: 4, 4),
    ("GET", "/api/v3/ticker"): _by_symbols(4, lambda n: min(4 * n, 200), 4),
    ("GET", "/api/v3/ticker/tradingDay"): _by_symbols(4, lambda n: min(4 * n, 200), 4),
    ("GET", "/api/v3/openOrders"): _by_symbols(6, lambda n: 80, 80),
    ("GET", "/api/v3/myTrades"): lambda p: 5 if p.get("orderId") else 20,
    ("GET", "/fapi/v1/depth"): _by_limit(((50, 2), (100, 5), (500, 10), (1000, 20)), 500),
    ("GET", "/fapi/v1/klines"): _FAPI_KLINES,
    ("GET", "/fapi/v1/continuousKlines"): _FAPI_KLINES,
    ("GET", "/fapi/v1/indexPriceKlines"): _FAPI_KLINES,
    ("GET", "/fapi/v1/markPriceKlines"): _FAPI_KLINES,
    ("GET", "/fapi/v1/premiumIndexKlines"): _FAPI_KLINES,
    ("GET", "/fapi/v1/ticker/24hr"): _by_symbols(1, lambda n: 40, 40),
    ("GET", "/fapi/v1/ticker/price"): _by_symbols(1, lambda n: 2, 2),
    ("GET", "/fapi/v2/ticker/price"): _by_symbols(1, lambda n: 2, 2),
    ("GET", "/fapi/v1/ticker/bookTicker"): _by_symbols(2, lambda n: 5, 5),
    ("GET", "/fapi/v1/openOrders"): _by_symbols(1, lambda n: 40, 40),
    ("GET", "/fapi/v1/apiTradingStatus"): _by_symbols(1, lambda n: 10, 10),
}
_WEIGHT_RULES = {
    (method, normalize_path(path)): rule for (method, path), rule in _WEIGHT_BY_PARAMS.items()
}


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Kind and weight of a request, on its normalised path, whatever its spelling.

    A method-override header can only make a request look riskier (the signer
    signs the request's own verb). Dangerous families (sub-account and broker
    API-key management, gift cards, travel-rule withdrawals) win over anything
    else, on every verb. Weights that depend on parameters are computed from
    the query.
    """
    result = classify_either_method(CATALOGUE, request, is_public_path=is_public_path)
    for pattern, kind in _DANGEROUS_FAMILIES if result.path.startswith("/sapi/") else ():
        if pattern.match(result.path):
            if result.kind in DANGEROUS_KINDS:
                return result
            return ClassifiedRequest(
                kind, result.method, result.path, result.endpoint, result.pattern
            )
    if result.kind == "unknown_private":
        squashed = result.path.replace("_", "")
        for word, kind in _TELLING_WORDS:
            if word in squashed:
                return ClassifiedRequest(kind, result.method, result.path, None)
        return result
    rule = _WEIGHT_RULES.get((result.method, result.path))
    if rule is not None and result.endpoint is not None:
        weight = rule(_query_params(request))
        endpoint = dataclasses.replace(result.endpoint, weight=weight)
        return dataclasses.replace(result, endpoint=endpoint)
    return result


# -- 4b. Rate limits -----------------------------------------------------------------------
# Binance counts in windows aligned to the clock (the minute, 10 seconds, the
# day) and every response says how much of the minute's weight is used. Limits
# are per IP for weight and per account for orders (§2.8, §3). The spot weight
# budget is seed 001's 1,200 a minute, which the emulator enforces too; Binance
# documents 6,000 for spot REST in 2026, so raise it with a limit override
# ({"binance:production:api.binance.com:REQUEST_WEIGHT": 6000}) where that holds.
# SAPI endpoints each have their own minute budget, 12,000 by IP or 180,000 by
# UID [unverified, §2.8]; the catalogue does not say which, so each SAPI
# endpoint gets 12,000 unless it costs more (then it is a UID endpoint).
_SAPI_UID_ENDPOINTS = tuple(
    (f"{method} {path}", 180_000.0)
    for (method, path), endpoint in _ENDPOINTS.items()
    if path.startswith("/sapi/") and endpoint.weight > 12_000
)
RATE_LIMITS: tuple[RateLimit, ...] = (
    # spot (/api)
    RateLimit("REQUEST_WEIGHT", 1200, 60, "weight", "ip", paths=("/api/",), fixed_window=True),
    RateLimit("RAW_REQUESTS", 61_000, 300, "requests", "ip", paths=("/api/",), fixed_window=True),
    RateLimit("ORDERS_10S", 100, 10, "orders", "account", paths=("/api/",), fixed_window=True),
    RateLimit(
        "ORDERS_1D", 200_000, 86_400, "orders", "account", paths=("/api/",), fixed_window=True
    ),
    # wallet, sub-account and other SAPI families
    RateLimit(
        "SAPI_WEIGHT",
        12_000,
        60,
        "weight",
        "endpoint",
        paths=("/sapi/",),
        endpoint_capacities=_SAPI_UID_ENDPOINTS,
        fixed_window=True,
    ),
    # USDⓈ-M futures (/fapi, and the /futures/data statistics on the same host)
    RateLimit(
        "REQUEST_WEIGHT", 2400, 60, "weight", "ip", paths=("/fapi/", "/futures/"), fixed_window=True
    ),
    RateLimit("ORDERS_10S", 300, 10, "orders", "account", paths=("/fapi/",), fixed_window=True),
    RateLimit("ORDERS_1M", 1200, 60, "orders", "account", paths=("/fapi/",), fixed_window=True),
)

# Response header (lower case) -> the limit it reports. Other intervals of
# X-MBX-USED-WEIGHT-* (an exchange may add a -1S or -1H one) have no budget here.
_USAGE_HEADERS = {
    "x-mbx-used-weight-1m": "REQUEST_WEIGHT",
    "x-mbx-order-count-10s": "ORDERS_10S",
    "x-mbx-order-count-1d": "ORDERS_1D",
    "x-mbx-order-count-1m": "ORDERS_1M",
    "x-sapi-used-ip-weight-1m": "SAPI_WEIGHT",
    "x-sapi-used-uid-weight-1m": "SAPI_WEIGHT",
}


def read_usage(headers: Mapping[str, str]) -> dict[str, float]:
    """{limit name: used} from X-MBX-USED-WEIGHT-1M, X-MBX-ORDER-COUNT-* and X-SAPI-USED-*."""
    return read_usage_headers(headers, _USAGE_HEADERS)


# -- 5. Order-intent parser ----------------------------------------------------------------
def _form_params(raw: bytes, where: str) -> dict[str, str]:
    if len(raw) <= _FORM_CACHE_MAX_BYTES:
        return dict(_parsed_form(raw, where))
    return _parse_form(raw, where)


# An order's body is read several times on its way through the gateway (classify, parse,
# client order id): the same few bytes parse once. Refusals (InvalidInput) are not cached.
_FORM_CACHE_MAX_BYTES = 2048


@lru_cache(maxsize=128)
def _parsed_form(raw: bytes, where: str) -> tuple[tuple[str, str], ...]:
    return tuple(_parse_form(raw, where).items())


def _parse_form(raw: bytes, where: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(
        raw.decode("utf-8", "replace"), keep_blank_values=True, errors="replace"
    ):
        if name in params:
            # Which copy the exchange acts on is not documented; a policy must
            # never check one copy while the exchange executes the other.
            raise InvalidInput(f"binance parameter {name!r} appears twice in the {where}")
        params[name] = value
    return params


def request_params(request: httpx.Request) -> dict[str, str]:
    """All parameters of a request, decoded; the query string wins over the body, as at Binance."""
    params = _form_params(_body(request), "body")
    params.update(_form_params(request.url.query, "query string"))
    return params


def _decimal(value: Any, name: str) -> Decimal | None:
    # No Binance amount is signed.
    return parse_amount(value, exchange=NAME, field=name)


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _upper(value: Any) -> str | None:
    text = _text(value)
    return text.upper() if text is not None else None


def _symbol(params: Mapping[str, Any]) -> str:
    symbol = _text(params.get("symbol"))
    if symbol is None:
        raise InvalidInput("binance order request has no symbol")
    return symbol


def _single_order(params: Mapping[str, Any]) -> OrderIntent:
    reduce_only = _flag(params.get("reduceOnly"))
    if _flag(params.get("closePosition")):
        reduce_only = True  # closes the whole position: reduce-only by definition
    return OrderIntent(
        symbol=_symbol(params),
        side=_text(params.get("side")),
        type=_upper(params.get("type")),
        quantity=_decimal(params.get("quantity"), "quantity"),
        price=_decimal(params.get("price"), "price"),
        quote_quantity=_decimal(params.get("quoteOrderQty"), "quoteOrderQty"),
        client_order_id=_text(params.get("newClientOrderId")),
        reduce_only=reduce_only,
    )


def _leg(
    params: Mapping[str, str], symbol: str, prefix: str, side: str | None, quantity: Decimal | None
) -> OrderIntent:
    price = _decimal(params.get(prefix + "Price"), prefix + "Price")
    if price is None:
        price = _decimal(params.get(prefix + "StopPrice"), prefix + "StopPrice")
    return OrderIntent(
        symbol=symbol,
        side=side,
        type=_upper(params.get(prefix + "Type")),
        quantity=quantity,
        price=price,
        client_order_id=_text(params.get(prefix + "ClientOrderId")),
    )


def _oco(params: Mapping[str, str]) -> list[OrderIntent]:
    symbol = _symbol(params)
    side = _text(params.get("side"))
    quantity = _decimal(params.get("quantity"), "quantity")
    return [_leg(params, symbol, leg, side, quantity) for leg in ("above", "below")]


def _legacy_oco(params: Mapping[str, str]) -> list[OrderIntent]:
    symbol = _symbol(params)
    side = _text(params.get("side"))
    quantity = _decimal(params.get("quantity"), "quantity")
    stop_limit = _decimal(params.get("stopLimitPrice"), "stopLimitPrice")
    return [
        OrderIntent(
            symbol=symbol,
            side=side,
            type="LIMIT_MAKER",
            quantity=quantity,
            price=_decimal(params.get("price"), "price"),
            client_order_id=_text(params.get("limitClientOrderId")),
        ),
        OrderIntent(
            symbol=symbol,
            side=side,
            type="STOP_LOSS_LIMIT" if stop_limit is not None else "STOP_LOSS",
            quantity=quantity,
            price=stop_limit
            if stop_limit is not None
            else _decimal(params.get("stopPrice"), "stopPrice"),
            client_order_id=_text(params.get("stopClientOrderId")),
        ),
    ]


def _oto(params: Mapping[str, str], pending_legs: tuple[str, ...]) -> list[OrderIntent]:
    symbol = _symbol(params)
    working = _leg(
        params,
        symbol,
        "working",
        _text(params.get("workingSide")),
        _decimal(params.get("workingQuantity"), "workingQuantity"),
    )
    pending_side = _text(params.get("pendingSide"))
    pending_quantity = _decimal(params.get("pendingQuantity"), "pendingQuantity")
    return [working] + [
        _leg(params, symbol, leg, pending_side, pending_quantity) for leg in pending_legs
    ]


def _batch(params: Mapping[str, str]) -> list[OrderIntent]:
    raw = params.get("batchOrders")
    if not raw:
        raise InvalidInput("binance batch order request has no batchOrders parameter")
    orders = load_json(raw.encode("utf-8"))
    if not isinstance(orders, list) or not all(isinstance(o, dict) for o in orders):
        raise InvalidInput("binance batchOrders must be a JSON list of order objects")
    if not orders:
        raise InvalidInput("binance batchOrders is empty")
    return [_single_order(order) for order in orders]


def _amend(params: Mapping[str, str]) -> list[OrderIntent]:
    return [
        OrderIntent(
            symbol=_symbol(params),
            quantity=_decimal(params.get("newQty"), "newQty"),
            client_order_id=_text(params.get("origClientOrderId")),
        )
    ]


def _leverage(params: Mapping[str, str]) -> list[OrderIntent]:
    return [
        OrderIntent(symbol=_symbol(params), leverage=_decimal(params.get("leverage"), "leverage"))
    ]


_ORDER_PARSERS: dict[tuple[str, str], Callable[[Mapping[str, str]], list[OrderIntent]]] = {
    ("POST", "/api/v3/order"): lambda p: [_single_order(p)],
    ("POST", "/api/v3/order/test"): lambda p: [_single_order(p)],
    ("POST", "/api/v3/order/cancelReplace"): lambda p: [_single_order(p)],
    ("PUT", "/api/v3/order/amend/keepPriority"): _amend,
    ("POST", "/api/v3/sor/order"): lambda p: [_single_order(p)],
    ("POST", "/api/v3/sor/order/test"): lambda p: [_single_order(p)],
    ("POST", "/api/v3/order/oco"): _legacy_oco,
    ("POST", "/api/v3/orderList/oco"): _oco,
    ("POST", "/api/v3/orderList/oto"): lambda p: _oto(p, ("pending",)),
    ("POST", "/api/v3/orderList/otoco"): lambda p: _oto(p, ("pendingAbove", "pendingBelow")),
    ("POST", "/fapi/v1/order"): lambda p: [_single_order(p)],
    ("PUT", "/fapi/v1/order"): lambda p: [_single_order(p)],
    ("POST", "/fapi/v1/order/test"): lambda p: [_single_order(p)],
    ("POST", "/fapi/v1/batchOrders"): _batch,
    ("PUT", "/fapi/v1/batchOrders"): _batch,
    ("POST", "/fapi/v1/leverage"): _leverage,
    ("POST", "/fapi/v1/marginType"): lambda p: [OrderIntent(symbol=_symbol(p))],
}
_ORDER_PARSERS_BY_PATH = {
    (method, normalize_path(path)): parser for (method, path), parser in _ORDER_PARSERS.items()
}


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order the request places (batch and order-list endpoints give several).

    Cancels give one symbol-only intent when they name a symbol, so a symbol
    allowlist can judge them; other requests give none. Raises InvalidInput
    for a missing symbol, a malformed amount or a parameter given twice.
    ``classified``: ``classify(request)``, when the caller made it already.
    """
    result = classified or classify(request)
    parser = _ORDER_PARSERS_BY_PATH.get((result.method, result.path))
    if parser is not None:
        return parser(request_params(request))
    if result.kind == "order_cancel":
        params = request_params(request)
        if params.get("symbol"):
            client_id = params.get("origClientOrderId") or params.get("listClientOrderId")
            return [OrderIntent(symbol=params["symbol"], client_order_id=client_id or None)]
    return []


# -- 6. Error map ----------------------------------------------------------------------------
_AUTH_CODES = frozenset({-1002, -1022, -2014, -2015})
_RATE_CODES = frozenset({-1003, -1015})
_UNAVAILABLE_CODES = frozenset({-1000, -1001, -1006, -1007, -1008, -1016})
_BALANCE_CODES = frozenset({-2018, -2019})
_ORDER_CODES = frozenset(
    {-1013, -1111, -1115, -1116, -1117, -1118, -1131, -2010, -2011, -2013, -2021, -2022, -2026}
)
_BANNED_UNTIL = re.compile(r"banned until (\d{10,})")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _ban_until_ms(
    message: str, headers: Mapping[str, str], retry_after: float | None
) -> int | None:
    found = _BANNED_UNTIL.search(message)
    if found:
        return int(found.group(1))
    date = headers.get("date") or headers.get("Date")
    if date and retry_after is not None:
        try:
            return int(parsedate_to_datetime(date).timestamp() * 1000 + retry_after * 1000)
        except (TypeError, ValueError):
            return None
    return None


def _code_and_message(body: bytes) -> tuple[int | None, str]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, ""
    if (
        isinstance(payload, list)
        and payload
        and all(
            isinstance(item, dict) and isinstance(item.get("code"), int) and item["code"] < 0
            for item in payload
        )
    ):
        payload = payload[0]  # a batch whose every order failed: report the first
    if not isinstance(payload, dict):
        return None, ""
    code = payload.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        return None, ""
    message = payload.get("msg")
    text = message if isinstance(message, str) else ""
    # The exchange's message names parameters, never our secrets; keep it short
    # and printable so it cannot carry a body into a log line.
    return code, "".join(ch for ch in text[:200] if ch.isprintable())


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error a Binance response stands for, or None for a success.

    A 2xx whose body is a list of order results is a success unless every
    order in it failed (a batch's partial failure is reported per order in
    the body). 5xx means the outcome is unknown, never that the order failed.
    """
    code, message = _code_and_message(body)
    if 200 <= status < 300 and (code is None or code >= 0):
        return None
    detail = f"binance {code if code is not None else 'HTTP ' + str(status)}"
    if message:
        detail += f": {message}"
    if status == 418:
        retry_after = _retry_after(headers)
        return IPBanned(
            f"{detail} (IP banned)",
            exchange=NAME,
            code=code,
            status=status,
            retry_after=retry_after,
            ban_until_ms=_ban_until_ms(message, headers, retry_after),
        )
    if status == 429 or code in _RATE_CODES:
        return RateLimitedUpstream(
            detail, exchange=NAME, code=code, status=status, retry_after=_retry_after(headers)
        )
    error_type: type[UpstreamError]
    if code in _AUTH_CODES or (code is None and status == 401):
        error_type = AuthenticationFailed
    elif code == -1021:
        error_type = TimestampOutsideWindow
    elif code in _BALANCE_CODES or (code == -2010 and "insufficient balance" in message.lower()):
        error_type = InsufficientBalance
    elif code in _ORDER_CODES or (code is not None and -5999 <= code <= -4000):
        error_type = OrderRejected
    elif code in _UNAVAILABLE_CODES or status >= 500 or status == 408:
        error_type = ExchangeUnavailable
        detail += " (outcome unknown)"
    else:
        error_type = ExchangeRejected
        if status == 403 and code is None:
            detail += ": blocked by the web application firewall"
    return error_type(detail, exchange=NAME, code=code, status=status)


# -- 7. Key-permission query -----------------------------------------------------------------
PERMISSION_PATH = "/sapi/v1/account/apiRestrictions"
PERMISSION_NOTE = (
    "GET /sapi/v1/account/apiRestrictions exists in production only: "
    "the spot testnet and demo mode serve no /sapi endpoints"
)


def permission_request(environment: str) -> httpx.Request:
    """The unsigned apiRestrictions request; InvalidInput outside production (no /sapi there)."""
    return httpx.Request("GET", base_url(PERMISSION_PATH, environment) + PERMISSION_PATH)


def parse_permissions(body: bytes) -> KeyPermissions:
    """Read apiRestrictions: any way of moving funds out counts as withdrawing.

    ``enableInternalTransfer`` and ``permitsUniversalTransfer`` move funds to
    other accounts or products without a withdrawal, so they set
    ``can_withdraw`` as ``enableWithdrawals`` does. An error body raises the
    mapped error instead.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("binance apiRestrictions answer is not JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput("binance apiRestrictions answer is not a JSON object")
    if isinstance(payload.get("code"), int) and "enableReading" not in payload:
        error = map_error(400, body, {})
        if error is not None:
            raise error

    def flag(name: str) -> bool:
        return payload.get(name) is True

    ip_restrict = payload.get("ipRestrict")
    return KeyPermissions(
        can_read=flag("enableReading"),
        can_trade=any(
            flag(name)
            for name in (
                "enableSpotAndMarginTrading",
                "enableFutures",
                "enableMargin",
                "enableVanillaOptions",
                "enablePortfolioMarginTrading",
                "enableFixApiTrade",
            )
        ),
        can_withdraw=any(
            flag(name)
            for name in ("enableWithdrawals", "enableInternalTransfer", "permitsUniversalTransfer")
        ),
        ip_restricted=ip_restrict if isinstance(ip_restrict, bool) else None,
    )


# -- 7b. Server time and key shapes (the doctor) ----------------------------------------------
TIME_PATH = "/api/v3/time"


def time_request(environment: str) -> httpx.Request:
    """The public spot clock: ``{"serverTime": ms}``."""
    return httpx.Request("GET", base_url(TIME_PATH, environment) + TIME_PATH)


def parse_server_time(body: bytes) -> int:
    """``serverTime`` in ms; InvalidInput when the answer has none."""
    try:
        value = json.loads(body)["serverTime"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidInput("binance time answer has no serverTime") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("binance serverTime is not an integer")
    return value


# API keys and HMAC secrets are both 64 letters and digits, mixed case. Requiring
# a lower-case letter, an upper-case letter and a digit keeps SHA-256 hex digests
# (lower case only) out of the match.
_ALNUM_64 = r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[a-z])(?=[A-Za-z0-9]*[A-Z])(?=[A-Za-z0-9]*[0-9])"
KEY_PATTERNS = (
    KeyPattern(
        "binance api key or secret", re.compile(_ALNUM_64 + r"[A-Za-z0-9]{64}(?![A-Za-z0-9])")
    ),
)


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# Single-order endpoints take newClientOrderId, and GET on the same path finds
# an order by origClientOrderId (-2013 "Order does not exist." otherwise).
# Order lists and futures batches carry their ids inside other fields; the
# gateway adds none there. Prices come from the product's ticker/price.
_SINGLE_ORDER_PATHS = frozenset({"/api/v3/order", "/fapi/v1/order"})
_PRICE_PATHS = {"api": "/api/v3/ticker/price", "fapi": "/fapi/v1/ticker/price"}
_ORDER_NOT_FOUND = -2013


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``newClientOrderId`` added where a single order has none.

    The parameter goes where the others are: the form body when there is one,
    else the query. Every other byte is kept. Raises InvalidInput as
    ``parse_order`` does for a parameter given twice. ``classified``:
    ``classify(request)``, when the caller made it already.
    """
    result = classified or classify(request)
    if result.kind != "order_place" or result.path not in _SINGLE_ORDER_PATHS:
        return request
    if request_params(request).get("newClientOrderId"):
        return request
    return _with_id_field(request, new_id().encode("ascii"))


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result, without reading the order again.

    Only for the plain case: a single order whose parameters name no
    ``newClientOrderId`` at all (blank is a second copy once one is added, which
    ``parse_order`` refuses) and an id written as it is read. Otherwise None.
    """
    if classified.kind != "order_place" or classified.path not in _SINGLE_ORDER_PATHS:
        return request, list(intents)  # add_client_order_id leaves it alone
    if len(intents) != 1 or "newClientOrderId" in request_params(request):
        return None
    value = new_id()
    if PLAIN_CLIENT_ID.fullmatch(value) is None:
        return None
    added = _with_id_field(request, value.encode("ascii"))
    return added, [intents[0].with_client_order_id(value)]


def _with_id_field(request: httpx.Request, value: bytes) -> httpx.Request:
    field = b"newClientOrderId=" + value
    body = _body(request)
    query = request.url.query
    if body or (not query and request.method in _BODY_METHODS):
        return with_body(request, body + b"&" + field if body else field)
    url = with_query(request.url, query + b"&" + field if query else field)
    return with_body(request, body, url=url)


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """GET the order by its client order id on the spot or USDⓈ-M path ``request`` used."""
    result = classify(request)
    if result.path not in _SINGLE_ORDER_PATHS or not intent.client_order_id:
        return None
    params = {"symbol": intent.symbol, "origClientOrderId": intent.client_order_id}
    return httpx.Request("GET", request.url.copy_with(path=result.path, params=params))


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    if status == 200:
        return "found"
    code, _ = _code_and_message(body)
    return "absent" if code == _ORDER_NOT_FOUND else "unknown"


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """The product's public last-price request for ``symbol`` (spot or USDⓈ-M)."""
    first = normalize_path(request.url.path).lstrip("/").split("/", 1)[0]
    path = _PRICE_PATHS.get(first)
    if path is None:
        return None
    return httpx.Request("GET", request.url.copy_with(path=path, params={"symbol": symbol}))


def parse_price(body: bytes) -> Decimal | None:
    try:
        price = Decimal(str(json.loads(body)["price"]))
    except (ValueError, KeyError, TypeError, InvalidOperation):
        return None
    return price if price.is_finite() and price > 0 else None


# Every open order of the account on a product: spot or USDⓈ-M (no symbol: all of them).
_OPEN_ORDERS_PATHS = {"api": "/api/v3/openOrders", "fapi": "/fapi/v1/openOrders"}
_POSITION_PATH = "/fapi/v2/positionRisk"


def _product(request: httpx.Request) -> str:
    return normalize_path(request.url.path).lstrip("/").split("/", 1)[0]


def open_orders_request(request: httpx.Request) -> httpx.Request | None:
    """GET every open order (all symbols) on the spot or USDⓈ-M product ``request`` used."""
    path = _OPEN_ORDERS_PATHS.get(_product(request))
    if path is None:
        return None
    return httpx.Request("GET", request.url.copy_with(path=path, query=None))


def count_open_orders(body: bytes) -> int | None:
    try:
        orders = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return len(orders) if isinstance(orders, list) else None


def position_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET the USDⓈ-M position in ``symbol``; spot has no positions (None)."""
    if _product(request) != "fapi":
        return None
    params = {"symbol": symbol}
    return httpx.Request("GET", request.url.copy_with(path=_POSITION_PATH, params=params))


def position_notional(body: bytes, symbol: str) -> Decimal | None:
    """The position's ``notional``, absolute; both sides added up in hedge mode; 0 if none."""
    try:
        rows = json.loads(body)
        if not isinstance(rows, list):
            return None
        total = Decimal(0)
        for row in rows:
            if row["symbol"] == symbol:
                total += abs(Decimal(str(row["notional"])))
    except (ValueError, KeyError, TypeError, InvalidOperation):
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
    positions_on="USDⓈ-M futures (/fapi); spot orders have no position",
)


# -- 9. WebSockets (the gateway) ---------------------------------------------------------------
# Hosts per the spot and USDⓈ-M WebSocket docs `[doc]`: streams on stream.*, the
# WebSocket API on ws-api.*; testnet on *.testnet.binance.vision and binancefuture.com.
WS_URLS: dict[str, dict[str, str]] = {
    "stream": {
        "production": "wss://stream.binance.com:9443",
        "testnet": "wss://stream.testnet.binance.vision",
        "demo": "wss://demo-stream.binance.com",
    },
    "api": {
        "production": "wss://ws-api.binance.com:443",
        "testnet": "wss://ws-api.testnet.binance.vision",
        "demo": "wss://demo-ws-api.binance.com",
    },
    "fstream": {
        "production": "wss://fstream.binance.com",
        "testnet": "wss://stream.binancefuture.com",
        "demo": "wss://stream.binancefuture.com",
    },
}

# WebSocket API method -> the REST request that does the same (for classification,
# order intents and policy). A method not listed is refused: default deny.
WS_API_METHODS: dict[str, tuple[str, str]] = {
    "ping": ("GET", "/api/v3/ping"),
    "time": ("GET", "/api/v3/time"),
    "exchangeInfo": ("GET", "/api/v3/exchangeInfo"),
    "depth": ("GET", "/api/v3/depth"),
    "ticker.price": ("GET", "/api/v3/ticker/price"),
    "ticker.book": ("GET", "/api/v3/ticker/bookTicker"),
    "order.place": ("POST", "/api/v3/order"),
    "order.test": ("POST", "/api/v3/order/test"),
    "order.cancel": ("DELETE", "/api/v3/order"),
    "order.status": ("GET", "/api/v3/order"),
    "openOrders.status": ("GET", "/api/v3/openOrders"),
    "openOrders.cancelAll": ("DELETE", "/api/v3/openOrders"),
    "allOrders": ("GET", "/api/v3/allOrders"),
    "myTrades": ("GET", "/api/v3/myTrades"),
    "account.status": ("GET", "/api/v3/account"),
    # Subscribing this connection to the account's events reads the account.
    "userDataStream.subscribe.signature": ("POST", "/api/v3/userDataStream"),
    "userDataStream.unsubscribe": ("DELETE", "/api/v3/userDataStream"),
}
# Methods that carry no key at all (market data, ping); the rest get apiKey,
# timestamp and signature from the gateway.
_WS_UNSIGNED = frozenset(
    {
        "ping",
        "time",
        "exchangeInfo",
        "depth",
        "ticker.price",
        "ticker.book",
        "userDataStream.unsubscribe",
    }
)
_WS_AUTH_PARAMS = frozenset({"apiKey", "signature", "timestamp"})
_STREAM = re.compile(r"^[a-z0-9!_]+@[A-Za-z0-9_@]+$")
# ccxt.pro opens /ws/<n> (a connection index) and subscribes with SUBSCRIBE frames.
_INDEX = re.compile(r"^[0-9]{1,4}$")


def ws_kind(path: str) -> Literal["public", "user", "api"] | None:
    """/ws-api/v3 is the API; /ws/<sym>@<chan>, /stream and bare /ws are market data;
    /ws/<listenKey> is an account's user data stream."""
    route = path.split("?", 1)[0].rstrip("/")
    if route in ("/ws-api/v3", "/ws-fapi/v1"):
        return "api"
    if route in ("/ws", "/stream"):
        return "public"
    if route.startswith("/ws/"):
        name = route[len("/ws/") :]
        if "/" in name or not name:
            return None
        return "public" if _STREAM.match(name) or _INDEX.match(name) else "user"
    return None


def ws_streams_of(path: str, query: str) -> tuple[tuple[str, ...], bool]:
    """/ws/<stream>: one stream, raw; /stream?streams=a/b: several, wrapped; else none yet."""
    route = path.split("?", 1)[0].rstrip("/")
    if route == "/stream":
        for part in query.split("&"):
            key, _, value = part.partition("=")
            if key == "streams":
                return tuple(s for s in unquote_to_bytes(value).decode().split("/") if s), True
        return (), True
    name = route[len("/ws/") :] if route.startswith("/ws/") else ""
    return ((name,) if _STREAM.match(name) else ()), False


def ws_url(path: str, environment: str) -> str:
    """The upstream WebSocket URL for a bot's path (and query) in ``environment``."""
    route = path.split("?", 1)[0]
    host = "api" if route.startswith(("/ws-api/", "/ws-fapi/")) else "stream"
    if route.startswith("/ws-fapi/"):
        host = "fstream"
    url = WS_URLS[host].get(environment)
    if url is None:
        raise InvalidInput(f"binance has no {host} WebSocket host in {environment}")
    if route.startswith("/ws-fapi/"):
        url = url.replace("fstream", "ws-fapi") if environment == "production" else url
    return url + path


_WS_DECODER = json.JSONDecoder(parse_float=Decimal)
"""One decoder for every frame: ``json.loads(text, parse_float=...)`` builds a new one each call."""
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
"""What ``quote(value, safe="")`` leaves as it is: such a value is its own escape."""


def ws_read_call(text: str) -> WsCall:
    """A WebSocket API request frame, with the REST request that does the same."""
    try:
        frame = _WS_DECODER.decode(text)
    except ValueError:
        raise InvalidInput("the frame is not JSON") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("method"), str):
        raise InvalidInput("a WebSocket API frame is an object with a method")
    method = frame["method"]
    raw = frame.get("params") or {}
    if not isinstance(raw, dict):
        raise InvalidInput("params must be an object")
    route = WS_API_METHODS.get(method)
    if route is None:
        raise InvalidInput(f"the WebSocket API method {method!r} is not catalogued")
    params = {
        str(name): value if type(value) is str else _ws_text(value)
        for name, value in raw.items()
        if name not in _WS_AUTH_PARAMS
    }
    http_method, path = route
    query = "&".join(
        f"{name}={value if _UNRESERVED.fullmatch(value) else quote(value, safe='')}"
        for name, value in params.items()
    )
    return WsCall(frame.get("id"), method, params, RestTwin(http_method, path, query))


def _ws_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, Decimal)):
        return str(value)
    raise InvalidInput("WebSocket API params must be strings, numbers or booleans")


def ws_sign_call(call: WsCall, credential: Credential, now_ms: int) -> str:
    """The frame with apiKey, timestamp and signature: the params sorted and un-encoded
    (vector binance-spot-wsapi-hmac-*), HMAC hex or Ed25519/RSA base64."""
    params = dict(call.params)
    if call.method not in _WS_UNSIGNED:
        params["apiKey"] = credential.api_key
        params["timestamp"] = str(now_ms)
        payload = "&".join(f"{name}={params[name]}" for name in sorted(params)).encode()
        if credential.key_type == "hmac":
            params["signature"] = hmac_sha256_hex(credential.secret, payload)
        elif credential.key_type == "rsa":
            params["signature"] = rsa_sha256_b64(credential.secret, payload)
        else:
            params["signature"] = ed25519_b64(credential.secret, payload)
    frame: dict[str, object] = {"id": call.request_id, "method": call.method}
    if params:
        frame["params"] = params
    return _COMPACT.encode(frame)


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""``json.dumps(..., separators=(",", ":"))`` without a new encoder for every frame."""


def ws_error_frame(request_id: object, status: int, code: str, message: str) -> str:
    """Binance's WebSocket API error shape; our refusals use code -2010 (order rejected)
    or -1002 (unauthorized), which bots already handle."""
    numeric = -2010 if code == "policy_denied" else -1002 if status in (401, 403) else -1000
    if code == "rate_limited":
        numeric = -1003
    body = {"id": request_id, "status": status, "error": {"code": numeric, "msg": message}}
    return json.dumps(body, separators=(",", ":"))


def ws_request_id(text: str) -> object:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame.get("id") if isinstance(frame, dict) else None


def ws_response_id(text: str) -> object:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame.get("id") if isinstance(frame, dict) and "status" in frame else None


def ws_subscription(text: str) -> tuple[object, str, tuple[str, ...]] | None:
    """A SUBSCRIBE / UNSUBSCRIBE frame on a market-data connection (what ccxt.pro sends)."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("method") not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return None
    streams = frame.get("params") or []
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
        return None
    return frame.get("id"), str(frame["method"]), tuple(streams)


def ws_subscription_replies(request_id: object, action: str, names: tuple[str, ...]) -> list[str]:
    return [json.dumps({"result": None, "id": request_id}, separators=(",", ":"))]


def ws_keepalive(path: str) -> tuple[str, bytes, bytes] | None:
    """PUT userDataStream with the listen key from /ws/<listenKey> (60 minutes each)."""
    listen_key = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not listen_key.isalnum():
        return None
    return "PUT", b"/api/v3/userDataStream", b"listenKey=" + listen_key.encode("ascii")


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
    stream_path=lambda name: "/ws/" + name,
    streams_of=ws_streams_of,
    keepalive=ws_keepalive,
)


PROFILE = ExchangeProfile(
    name=NAME,
    env_prefix="BINANCE",
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
    permission_note=PERMISSION_NOTE,
    time_request=time_request,
    parse_server_time=parse_server_time,
    key_patterns=KEY_PATTERNS,
    orders=ORDER_TOOLS,
    rate_limits=RATE_LIMITS,
    read_usage=read_usage,
    websocket=WEBSOCKET,
)
