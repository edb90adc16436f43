"""coinbase: Coinbase Advanced Trade with CDP API keys, one JWT per request.

    >>> request = httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/accounts")
    >>> PROFILE.sign(request, credential).headers["Authorization"][:10]
    'Bearer eyJ'

Nothing about the request is signed except ``METHOD host/path`` (no query,
no body): the JWT binds the key to one URI for 120 seconds. Keys are ES256
(EC P-256 PEM, key name ``organizations/{org}/apiKeys/{id}``) or Ed25519
(key id, secret in base64: 32-byte seed then 32-byte public key). The same
JWT authenticates the retail ``/v2`` API, whose send, withdrawal and
deposit endpoints are catalogued here so that they are refused.
Source: exchange-auth.md §7 and §13.4 (the official SDK's claim layout).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
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
    KeyPattern,
    KeyPermissions,
    LookupOutcome,
    OrderIntent,
    OrderTools,
    RateLimit,
    classify_either_method,
    json_order_with_id,
    parse_amount,
    read_usage_headers,
    uuid_client_id,
)
from keybroker.model import Credential
from keybroker.secret import Secret

NAME = "coinbase"

# -- 1. Base URLs ------------------------------------------------------------------
# The sandbox is a static mock with canned answers (exchange-auth.md §7.2,
# unverified); it is still the right place for a testnet credential to go.
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://api.coinbase.com",
        "testnet": "https://api-sandbox.coinbase.com",
    },
}


def base_url(path: str, environment: str) -> str:
    """The REST host, which Advanced Trade and ``/v2`` share; InvalidInput if unknown."""
    url = BASE_URLS["rest"].get(environment)
    if url is None:
        raise InvalidInput(f"coinbase has no {environment} environment")
    return url


# -- 2. Credential rules --------------------------------------------------------------
# PKCS#8 DER of an Ed25519 private key is this fixed prefix and the 32-byte seed
# (RFC 8410); wrapping a CDP seed this way lets crypto.signing load it as a PEM.
_ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
# SubjectPublicKeyInfo DER of an Ed25519 public key is 12 bytes and the key.
_ED25519_SPKI_LENGTH = 44


def _pem(secret: Secret) -> bytes:
    raw = secret.reveal().strip()
    # A PEM copied out of the CDP key JSON file often keeps its "\n" escapes.
    if b"\\n" in raw and b"\n" not in raw:
        raw = raw.replace(b"\\n", b"\n")
    return raw + b"\n"


def _ed25519_key(secret: Secret) -> tuple[bytes, bytes | None]:
    # (PEM, the public key the secret claims, if it carries one).
    if secret.reveal().lstrip().startswith(b"-----BEGIN"):
        return _pem(secret), None
    try:
        raw = base64.b64decode(secret.reveal().strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("ed25519 secret is neither a PEM nor base64") from None
    if len(raw) != 64:
        raise SigningError("ed25519 secret must be base64 of 64 bytes (seed, then public key)")
    der = _ED25519_PKCS8_PREFIX + raw[:32]
    pem = (
        b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"
    )
    return pem, raw[32:]


def _ed25519_pem(secret: Secret) -> bytes:
    return _ed25519_key(secret)[0]


def check_secret(secret: Secret, key_type: str) -> None:
    """ES256: an EC P-256 PEM. Ed25519: a PEM, or CDP's base64 seed+public key that agree.

    Raises InvalidInput naming the problem, never the value.
    """
    try:
        if key_type == "es256":
            signing.load_private_key(_pem(secret), "es256")
            return
        pem, claimed_public = _ed25519_key(secret)
        public_pem = signing.public_key_pem(pem, "ed25519")
    except SigningError as error:
        raise InvalidInput(f"secret: {error}") from None
    if claimed_public is not None:
        body = "".join(line for line in public_pem.splitlines() if not line.startswith("-----"))
        der = base64.b64decode(body)
        if len(der) != _ED25519_SPKI_LENGTH or der[-32:] != claimed_public:
            raise InvalidInput("secret: the public half does not belong to the seed")


CREDENTIALS = CredentialRules(
    needs_passphrase=False, key_types=("es256", "ed25519"), check_secret=check_secret
)


# -- 3. Signer ---------------------------------------------------------------------------
JWT_LIFETIME_SECONDS = 120
# Auth headers of Coinbase's older HMAC keys: a request carrying them next to a
# JWT is ambiguous, so they go.
_LEGACY_AUTH_HEADERS = (
    "CB-ACCESS-KEY",
    "CB-ACCESS-SIGN",
    "CB-ACCESS-TIMESTAMP",
    "CB-ACCESS-PASSPHRASE",
)


def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Set ``Authorization: Bearer <JWT>`` for this request's method, host and path.

    Claims follow the official SDK: ``sub`` = key name, ``iss`` = ``cdp``,
    ``nbf`` = now, ``exp`` = now + 120 s, ``uri`` = ``"METHOD host/path"``
    without the query. The JWT header's ``nonce`` is random, or derived from
    ``nonce`` when a test passes one. ES256 signatures are randomized, so
    only Ed25519 tokens are byte-for-byte reproducible. Any existing
    Authorization (and legacy CB-ACCESS-*) header is replaced; URL and body
    bytes are kept.
    """
    if credential.key_type not in ("es256", "ed25519"):
        raise SigningError(f"coinbase signs with es256 or ed25519 keys, not {credential.key_type}")
    algorithm = "ES256" if credential.key_type == "es256" else "EdDSA"
    now_s = now_ms // 1000
    host = request.url.netloc.decode("ascii")
    path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
    header = {"alg": algorithm, "kid": credential.api_key, "nonce": _jwt_nonce(nonce), "typ": "JWT"}
    claims = {
        "sub": credential.api_key,
        "iss": "cdp",
        "nbf": now_s,
        "exp": now_s + JWT_LIFETIME_SECONDS,
        "uri": f"{request.method} {host}{path}",
    }
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    if credential.key_type == "es256":
        signature = signing.es256_raw(credential.secret, signing_input, _pem)
    else:
        signature = signing.ed25519_sign(credential.secret, signing_input, _ed25519_pem)
    token = signing_input.decode("ascii") + "." + signing.b64url(signature)
    headers = {"Authorization": f"Bearer {token}"}
    body = request.read()
    if body:
        # Always re-set, so a re-signed request keeps its header order.
        headers["Content-Type"] = request.headers.get("content-type") or "application/json"
    return _wire.replace_headers(request, headers, remove=_LEGACY_AUTH_HEADERS)


def _jwt_nonce(nonce: int | None) -> str:
    # The SDK sends secrets.token_hex() (32 random bytes as hex); a test-given
    # nonce becomes the same shape so that tokens are reproducible.
    if nonce is None:
        return secrets.token_hex(32)
    if not 0 <= nonce < 2**256:
        raise SigningError("coinbase JWT nonce must fit in 32 bytes")
    return f"{nonce:064x}"


def _segment(value: Mapping[str, Any]) -> str:
    return signing.b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Weights are requests (about 30/s per key on Advanced Trade, 10,000/hour on /v2;
# both unverified). Full paths, because two API families share the host.
_V3 = "/api/v3/brokerage"
_READ = Endpoint("account_read")
_ORDER_READ = Endpoint("order_read")
_PLACE = Endpoint("order_place", order_count=1)
_TRANSFER = Endpoint("transfer")
_WITHDRAW = Endpoint("withdraw")
# Creating, editing or deleting accounts, portfolios or the user: administration
# of the account itself. No kind fits better, and this one is never signed.
_ADMIN = Endpoint("key_management")

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    # Advanced Trade: account and market reads (authenticated copies of market data)
    ("GET", f"{_V3}/accounts"): _READ,
    ("GET", f"{_V3}/accounts/{{account_uuid}}"): _READ,
    ("GET", f"{_V3}/products"): _READ,
    ("GET", f"{_V3}/products/{{product_id}}"): _READ,
    ("GET", f"{_V3}/products/{{product_id}}/candles"): _READ,
    ("GET", f"{_V3}/products/{{product_id}}/ticker"): _READ,
    ("GET", f"{_V3}/best_bid_ask"): _READ,
    ("GET", f"{_V3}/product_book"): _READ,
    ("GET", f"{_V3}/transaction_summary"): _READ,
    ("GET", f"{_V3}/portfolios"): _READ,
    ("GET", f"{_V3}/portfolios/{{portfolio_uuid}}"): _READ,
    ("GET", f"{_V3}/payment_methods"): _READ,
    ("GET", f"{_V3}/payment_methods/{{payment_method_id}}"): _READ,
    ("GET", f"{_V3}/key_permissions"): _READ,
    ("GET", f"{_V3}/convert/trade/{{trade_id}}"): _READ,
    ("GET", f"{_V3}/cfm/balance_summary"): _READ,
    ("GET", f"{_V3}/cfm/positions"): _READ,
    ("GET", f"{_V3}/cfm/positions/{{product_id}}"): _READ,
    ("GET", f"{_V3}/cfm/sweeps"): _READ,
    ("GET", f"{_V3}/cfm/intraday/current_margin_window"): _READ,
    ("GET", f"{_V3}/cfm/intraday/margin_setting"): _READ,
    ("GET", f"{_V3}/intx/portfolio/{{portfolio_uuid}}"): _READ,
    ("GET", f"{_V3}/intx/positions/{{portfolio_uuid}}"): _READ,
    ("GET", f"{_V3}/intx/positions/{{portfolio_uuid}}/{{symbol}}"): _READ,
    ("GET", f"{_V3}/intx/balances/{{portfolio_uuid}}"): _READ,
    # Advanced Trade: orders
    ("GET", f"{_V3}/orders/historical/batch"): _ORDER_READ,
    ("GET", f"{_V3}/orders/historical/fills"): _ORDER_READ,
    ("GET", f"{_V3}/orders/historical/{{order_id}}"): _ORDER_READ,
    ("POST", f"{_V3}/orders"): _PLACE,
    ("POST", f"{_V3}/orders/edit"): _PLACE,
    ("POST", f"{_V3}/orders/close_position"): _PLACE,
    # Previews place nothing.
    ("POST", f"{_V3}/orders/preview"): _ORDER_READ,
    ("POST", f"{_V3}/orders/edit_preview"): _ORDER_READ,
    ("POST", f"{_V3}/orders/batch_cancel"): Endpoint("order_cancel", is_batch=True),
    # Advanced Trade: funds moving between portfolios, products or currencies
    ("POST", f"{_V3}/portfolios/move_funds"): _TRANSFER,
    ("POST", f"{_V3}/portfolios"): _TRANSFER,
    ("PUT", f"{_V3}/portfolios/{{portfolio_uuid}}"): _TRANSFER,
    ("DELETE", f"{_V3}/portfolios/{{portfolio_uuid}}"): _TRANSFER,
    ("POST", f"{_V3}/convert/quote"): _TRANSFER,
    ("POST", f"{_V3}/convert/trade/{{trade_id}}"): _TRANSFER,
    ("POST", f"{_V3}/cfm/sweeps/schedule"): _TRANSFER,
    ("DELETE", f"{_V3}/cfm/sweeps"): _TRANSFER,
    ("POST", f"{_V3}/intx/allocate"): _TRANSFER,
    # Retail /v2 (same JWT): reads
    ("GET", "/v2/accounts"): _READ,
    ("GET", "/v2/accounts/{account_id}"): _READ,
    ("GET", "/v2/accounts/{account_id}/addresses"): _READ,
    ("GET", "/v2/accounts/{account_id}/addresses/{address_id}"): _READ,
    ("GET", "/v2/accounts/{account_id}/addresses/{address_id}/transactions"): _READ,
    ("GET", "/v2/accounts/{account_id}/transactions"): _READ,
    ("GET", "/v2/accounts/{account_id}/transactions/{transaction_id}"): _READ,
    ("GET", "/v2/accounts/{account_id}/buys"): _READ,
    ("GET", "/v2/accounts/{account_id}/buys/{buy_id}"): _READ,
    ("GET", "/v2/accounts/{account_id}/sells"): _READ,
    ("GET", "/v2/accounts/{account_id}/sells/{sell_id}"): _READ,
    ("GET", "/v2/accounts/{account_id}/deposits"): _READ,
    ("GET", "/v2/accounts/{account_id}/deposits/{deposit_id}"): _READ,
    ("GET", "/v2/accounts/{account_id}/withdrawals"): _READ,
    ("GET", "/v2/accounts/{account_id}/withdrawals/{withdrawal_id}"): _READ,
    ("GET", "/v2/payment-methods"): _READ,
    ("GET", "/v2/payment-methods/{payment_method_id}"): _READ,
    ("GET", "/v2/user"): _READ,
    ("GET", "/v2/user/auth"): _READ,
    # Retail /v2: sending crypto (type=send goes to any address), withdrawals
    ("POST", "/v2/accounts/{account_id}/transactions"): _WITHDRAW,
    ("POST", "/v2/accounts/{account_id}/transactions/{transaction_id}/complete"): _WITHDRAW,
    ("POST", "/v2/accounts/{account_id}/transactions/{transaction_id}/resend"): _WITHDRAW,
    ("POST", "/v2/accounts/{account_id}/withdrawals"): _WITHDRAW,
    ("POST", "/v2/accounts/{account_id}/withdrawals/{withdrawal_id}/commit"): _WITHDRAW,
    # Retail /v2: deposits, retail buys and sells (they pull from payment methods), addresses
    ("DELETE", "/v2/accounts/{account_id}/transactions/{transaction_id}"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/deposits"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/deposits/{deposit_id}/commit"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/buys"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/buys/{buy_id}/commit"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/sells"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/sells/{sell_id}/commit"): _TRANSFER,
    ("POST", "/v2/accounts/{account_id}/addresses"): _TRANSFER,
    # Retail /v2: account administration
    ("POST", "/v2/accounts"): _ADMIN,
    ("POST", "/v2/accounts/{account_id}/primary"): _ADMIN,
    ("PUT", "/v2/accounts/{account_id}"): _ADMIN,
    ("DELETE", "/v2/accounts/{account_id}"): _ADMIN,
    ("PUT", "/v2/user"): _ADMIN,
}
CATALOGUE = Catalogue(ENDPOINTS)

_PUBLIC_PREFIXES = (
    f"{_V3}/market/",
    "/v2/currencies",
    "/v2/prices/",
    "/v2/exchange-rates",
)
_PUBLIC_PATHS = frozenset({f"{_V3}/time", "/v2/time"})


def is_public_path(path: str) -> bool:
    """Market data (``/api/v3/brokerage/market/*``, ``time``) and retail price lists."""
    return path in _PUBLIC_PATHS or path.startswith(_PUBLIC_PREFIXES)


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify by method and path: Coinbase never puts the operation in the body."""
    return classify_either_method(CATALOGUE, request, is_public_path=is_public_path)


# -- 4b. Rate limits -----------------------------------------------------------------------
# Advanced Trade allows about 30 private requests a second per user and 10
# public ones per IP; the retail /v2 API 10,000 an hour per key (§7.6: the
# per-second numbers [unverified], the hourly one [doc]). Responses carry
# x-ratelimit-limit and x-ratelimit-remaining (constants of the official SDK);
# the budget they describe is told apart by its size, since the headers do
# not name it.
RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit("PRIVATE", 30, 1, "requests", "account", kinds=PRIVATE_KINDS, paths=(f"{_V3}/",)),
    RateLimit("PUBLIC", 10, 1, "requests", "ip", kinds=("public",)),
    RateLimit("RETAIL", 10_000, 3600, "requests", "account", kinds=PRIVATE_KINDS, paths=("/v2/",)),
)
# An x-ratelimit-limit at least this large is the hourly /v2 budget.
_HOURLY_LIMIT_FLOOR = 1000


def read_usage(headers: Mapping[str, str]) -> dict[str, float]:
    """{"PRIVATE" or "RETAIL": used} from x-ratelimit-limit minus x-ratelimit-remaining."""
    found = read_usage_headers(
        headers, {"x-ratelimit-limit": "limit", "x-ratelimit-remaining": "remaining"}
    )
    if "limit" not in found or "remaining" not in found:
        return {}
    name = "RETAIL" if found["limit"] >= _HOURLY_LIMIT_FLOOR else "PRIVATE"
    return {name: max(0.0, found["limit"] - found["remaining"])}


# -- 5. Order-intent parser ----------------------------------------------------------------
# order_configuration key -> order type; unknown keys pass through as they are.
ORDER_TYPES: dict[str, str] = {
    "market_market_ioc": "market",
    "market_market_fok": "market",
    "sor_limit_ioc": "limit",
    "limit_limit_gtc": "limit",
    "limit_limit_gtd": "limit",
    "limit_limit_fok": "limit",
    "stop_limit_stop_limit_gtc": "stop_limit",
    "stop_limit_stop_limit_gtd": "stop_limit",
    "trigger_bracket_gtc": "bracket",
    "trigger_bracket_gtd": "bracket",
}


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """Intents of ``orders`` (create), ``orders/edit`` and ``orders/close_position``; [] otherwise.

    ``order_configuration`` must hold exactly one configuration, or the
    exchange and the policy could read different orders (InvalidInput).
    ``side`` is lower-cased like every other exchange's. An edit does not
    name the product, so its ``symbol`` is ``""``; a close is a reduce-only
    market order. ``classified``: ``classify(request)``, when the caller made it already.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place":
        return []
    body = _wire.load_json(request.read())
    if not isinstance(body, dict):
        raise InvalidInput("coinbase order body must be a JSON object")
    if classified.path.endswith("/orders/edit"):
        return [
            OrderIntent(
                symbol="",
                quantity=_amount(body, "size"),
                price=_amount(body, "price"),
            )
        ]
    if classified.path.endswith("/orders/close_position"):
        return [
            OrderIntent(
                symbol=_text(body.get("product_id")) or "",
                type="market",
                quantity=_amount(body, "size"),
                client_order_id=_text(body.get("client_order_id")),
                reduce_only=True,
            )
        ]
    configuration = body.get("order_configuration")
    if not isinstance(configuration, dict) or len(configuration) != 1:
        raise InvalidInput("coinbase order_configuration must hold exactly one configuration")
    ((name, params),) = configuration.items()
    if not isinstance(params, dict):
        raise InvalidInput("coinbase order_configuration entry must be an object")
    reduce_only = params.get("reduce_only", body.get("reduce_only"))
    side = _text(body.get("side"))
    return [
        OrderIntent(
            symbol=_text(body.get("product_id")) or "",
            side=side.lower() if side else None,
            type=ORDER_TYPES.get(name, name),
            quantity=_amount(params, "base_size"),
            price=_amount(params, "limit_price"),
            quote_quantity=_amount(params, "quote_size"),
            client_order_id=_text(body.get("client_order_id")),
            reduce_only=reduce_only if isinstance(reduce_only, bool) else None,
            leverage=_amount(body, "leverage"),
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
# Error ids from both API families ({"error": id}, {"errors": [{"id": id}]},
# and the failure reasons of an order answer with "success": false).
ERRORS: dict[str, type[UpstreamError]] = {
    "authentication_error": AuthenticationFailed,
    "unauthorized": AuthenticationFailed,
    "invalid_authentication_method": AuthenticationFailed,
    "invalid_token": AuthenticationFailed,
    "revoked_token": AuthenticationFailed,
    "invalid_scope": AuthenticationFailed,
    "two_factor_required": AuthenticationFailed,
    "PERMISSION_DENIED": AuthenticationFailed,
    # Our JWTs live 120 s from "now": an expired one means our clock is off.
    "expired_token": TimestampOutsideWindow,
    "rate_limit_exceeded": RateLimitedUpstream,
    "resource_exhausted": RateLimitedUpstream,
    "INSUFFICIENT_FUND": InsufficientBalance,
    "PREVIEW_INSUFFICIENT_FUND": InsufficientBalance,
    "UNSUPPORTED_ORDER_CONFIGURATION": OrderRejected,
    "INVALID_ARGUMENT": OrderRejected,
    "internal_server_error": ExchangeUnavailable,
}
_UNKNOWN_REASONS = frozenset({"", "UNKNOWN_FAILURE_REASON", "UNKNOWN"})


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error for a Coinbase answer, or None for a success.

    A 2xx answer is a success unless it says ``"success": false`` (a refused
    order, whose failure reason becomes the code). Otherwise the exchange's
    error id decides where it is known, and the HTTP status where it is not.
    """
    payload = _json(body)
    if status < 400:
        if isinstance(payload, dict) and payload.get("success") is False:
            reason = _failure_reason(payload)
            is_short = ERRORS.get(reason) is InsufficientBalance
            refusal = InsufficientBalance if is_short else OrderRejected
            return refusal(
                f"coinbase: order refused: {reason}", exchange=NAME, code=reason, status=status
            )
        return None
    code = _error_id(payload) or str(status)
    kind = ERRORS.get(code)
    if status == 429 or (kind is not None and issubclass(kind, RateLimitedUpstream)):
        return RateLimitedUpstream(
            f"coinbase: rate limited ({code})",
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
        elif code.startswith(("INVALID_", "UNSUPPORTED_", "PREVIEW_")):
            kind = OrderRejected
        else:
            kind = ExchangeRejected
    return kind(f"coinbase: {code} (HTTP {status})", exchange=NAME, code=code, status=status)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _error_id(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    for key in ("error", "code"):
        if isinstance(payload.get(key), str) and payload[key]:
            return str(payload[key])[:80]
    errors = payload.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        found = errors[0].get("id")
        if isinstance(found, str) and found:
            return found[:80]
    if isinstance(payload.get("error_response"), dict):
        return _failure_reason(payload)
    return None


def _failure_reason(payload: Mapping[str, Any]) -> str:
    # A refused order names its reason in one of several places, some of them
    # "UNKNOWN_FAILURE_REASON" next to a specific one: take the first specific.
    places: list[Any] = [payload.get("failure_reason")]
    response = payload.get("error_response")
    if isinstance(response, dict):
        places += [
            response.get("error"),
            response.get("preview_failure_reason"),
            response.get("new_order_failure_reason"),
            response.get("edit_failure_reason"),
        ]
    errors = payload.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict):
                places += [item.get("edit_failure_reason"), item.get("preview_failure_reason")]
    for place in places:
        if isinstance(place, str) and place not in _UNKNOWN_REASONS:
            return place[:80]
    return "UNKNOWN_FAILURE_REASON"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


# -- 7. Key-permission query -------------------------------------------------------------------
def permission_request(environment: str) -> httpx.Request:
    """``GET /api/v3/brokerage/key_permissions``."""
    return httpx.Request("GET", base_url(_V3, environment) + f"{_V3}/key_permissions")


def parse_permission_response(body: bytes) -> KeyPermissions:
    """``can_view``, ``can_trade``, ``can_transfer`` (transfers include sending crypto out).

    Coinbase does not report an IP allowlist here, so ``ip_restricted`` is
    None. A missing flag raises InvalidInput rather than being guessed.
    """
    payload = _json(body)
    if not isinstance(payload, dict):
        raise InvalidInput("coinbase key_permissions answer is not a JSON object")
    flags = {}
    for name in ("can_view", "can_trade", "can_transfer"):
        value = payload.get(name)
        if not isinstance(value, bool):
            raise InvalidInput(f"coinbase key_permissions answer lacks {name}")
        flags[name] = value
    return KeyPermissions(
        can_read=flags["can_view"],
        can_trade=flags["can_trade"],
        can_withdraw=flags["can_transfer"],
        ip_restricted=None,
    )


# -- 7b. Key shapes (the doctor) ---------------------------------------------------------------
# CDP keys are named organizations/{org}/apiKeys/{id}; their private key is an
# EC PEM block (or, for Ed25519 keys, 64 bytes of base64).
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
KEY_PATTERNS = (
    KeyPattern("coinbase cdp key name", re.compile(rf"organizations/{_UUID}/apiKeys/{_UUID}")),
    KeyPattern(
        "private key (pem)", re.compile(r"-----BEGIN (?:EC |RSA |OPENSSH )?PRIVATE KEY-----")
    ),
    KeyPattern(
        "coinbase ed25519 key",
        re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])"),
        re.compile(r"(?i)coinbase|cdp|private[_-]?key|secret"),
    ),
)


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# Create and close_position take client_order_id (a string; Coinbase's
# examples and SDK use UUIDs, so the gateway adds a UUID made from its own
# id). Advanced Trade has no query by client_order_id: GET
# orders/historical/batch filters by order ids, products, status and dates
# only, and a lookup answer is read without the id. So there is no lookup:
# after a lost answer the gateway reports the outcome unknown with the id,
# and Coinbase documents that a create repeating a client_order_id returns
# the existing order instead of placing a second, so the bot may resend it.
_CLIENT_ID_PATHS = frozenset({f"{_V3}/orders", f"{_V3}/orders/close_position"})


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``client_order_id`` first in a create or close that has none."""
    classified = classified or classify(request)
    if classified.kind != "order_place" or classified.pattern not in _CLIENT_ID_PATHS:
        return request
    body = request.read()
    payload = _wire.load_json(body)
    if not isinstance(payload, dict) or _text(payload.get("client_order_id")) is not None:
        return request
    member = json.dumps(uuid_client_id(new_id()))
    return _wire.with_body(request, _wire.insert_json_member(body, "client_order_id", member))


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    a create or close without ``client_order_id``."""
    if classified.kind != "order_place" or classified.pattern not in _CLIENT_ID_PATHS:
        return request, list(intents)
    return json_order_with_id(request, intents, "client_order_id", lambda: uuid_client_id(new_id()))


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """None: Advanced Trade cannot be asked for an order by its client_order_id (see above)."""
    return None


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    return "unknown"


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET market/products/{product_id} (public): its ``price`` is the last trade's."""
    path = f"{_V3}/market/products/{_wire.quote_rfc3986(symbol)}"
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
    env_prefix="COINBASE",
    base_urls=BASE_URLS,
    route_base_url=base_url,
    credentials=CREDENTIALS,
    sign_request=sign,
    catalogue=CATALOGUE,
    classify_request=classify,
    parse_order_request=parse_order,
    map_error_response=map_error,
    permission_request=permission_request,
    parse_permission_response=parse_permission_response,
    orders=ORDER_TOOLS,
    key_patterns=KEY_PATTERNS,
    rate_limits=RATE_LIMITS,
    read_usage=read_usage,
)
