"""kraken: Kraken spot REST, how its private calls are signed, named, limited and answered.

    >>> request = httpx.Request("POST", "https://api.kraken.com/0/private/Balance")
    >>> PROFILE.classify(PROFILE.sign(request, credential)).kind
    'account_read'

Every private call is ``POST /0/private/<Method>``: the operation is in the
path, never in a parameter. The body (form-encoded; JSON on a few endpoints)
carries a ``nonce`` that must strictly increase per key, and there is no
timestamp window at all, so the nonce is the only replay protection. Kraken
answers HTTP 200 even for errors and lists them in an ``error`` array.
Source: exchange-auth.md §6 (and §1 for the cross-exchange rules).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

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
    uuid_client_id,
)
from keybroker.model import Credential
from keybroker.secret import Secret

NAME = "kraken"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# -- 1. Base URLs ------------------------------------------------------------------
# Kraken has no spot REST sandbox (only Kraken Futures has a demo), so there is
# deliberately no testnet entry: a testnet credential must fail loudly rather
# than be routed to production.
BASE_URLS: dict[str, dict[str, str]] = {
    "spot": {"production": "https://api.kraken.com"},
}


def base_url(path: str, environment: str) -> str:
    """The REST host for ``environment``; InvalidInput for anything but production."""
    url = BASE_URLS["spot"].get(environment)
    if url is None:
        raise InvalidInput(
            f"kraken has no {environment} environment for spot REST; "
            "use a production credential (and the paper venue to trade without funds)"
        )
    return url


# -- 2. Credential rules --------------------------------------------------------------
def _decoded_secret(secret: Secret) -> bytes:
    # Kraken keys the HMAC with the base64 *decoding* of the private key as shown.
    try:
        key = base64.b64decode(secret.reveal(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "secret is not base64 (Kraken shows the private key in base64)"
        ) from None
    if not key:
        raise InvalidInput("secret is empty")
    return key


def check_secret(secret: Secret, key_type: str) -> None:
    """The private key must be base64 that decodes; the message never shows the value."""
    _decoded_secret(secret)


CREDENTIALS = CredentialRules(
    needs_passphrase=False,
    key_types=("hmac",),
    check_secret=check_secret,
    hmac_algorithm="sha512",
    hmac_key=_decoded_secret,
)


# -- 3. Signer ---------------------------------------------------------------------------
def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Put ``nonce`` in the body and sign it the way Kraken checks it.

    ``API-Sign = base64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + body)))``.
    An existing ``nonce`` parameter (from a client given placeholder keys) is
    replaced where it stands; without one, ``nonce`` is put first, as Kraken's
    own example does. Every other byte of the body and URL is kept, and the
    hash covers exactly the body that is sent. ``API-Key`` and ``API-Sign``
    are replaced. Raises SigningError without a nonce, InvalidInput for a body
    that cannot carry one (a JSON body that is not an object).
    """
    if nonce is None:
        raise SigningError("kraken signs with a nonce; ExchangeProfile.sign supplies one")
    if not 0 < nonce < 2**64:
        raise SigningError("kraken nonces are unsigned 64-bit integers")
    body = request.read()
    is_json = _is_json(request, body)
    body = _with_nonce_json(body, nonce) if is_json else _with_nonce_form(body, nonce)
    uri_path = request.url.raw_path.split(b"?", 1)[0]
    message = uri_path + signing.sha256(str(nonce).encode("ascii") + body)
    signature = signing.hmac_sha512_b64(credential.secret, message, _decoded_secret)
    content_type = request.headers.get("content-type") or (JSON if is_json else FORM)
    # Content-Type is always re-set (same value) so that its position, and so the
    # bytes of a re-signed request, do not depend on whether it was there before.
    headers = {"API-Key": credential.api_key, "API-Sign": signature, "Content-Type": content_type}
    return _wire.replace_body(request, body, headers)


def _is_json(request: httpx.Request, body: bytes) -> bool:
    # Kraken reads the body by its Content-Type; without one, the body's shape decides.
    content_type = request.headers.get("content-type")
    if content_type is not None:
        return "json" in content_type.lower()
    return body.lstrip().startswith(b"{")


def _field_name(part: bytes) -> bytes:
    return unquote_to_bytes(part.split(b"=", 1)[0].replace(b"+", b" "))


def _with_nonce_form(body: bytes, nonce: int) -> bytes:
    field = b"nonce=" + str(nonce).encode("ascii")
    if not body:
        return field
    parts = body.split(b"&")
    if not any(_field_name(part) == b"nonce" for part in parts):
        return field + b"&" + body
    # Every copy is replaced, so whichever one the server reads is ours.
    return b"&".join(field if _field_name(part) == b"nonce" else part for part in parts)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _top_level_members(text: str) -> list[tuple[str, int, int]]:
    # (key, value start, value end) of each member of a JSON object, as offsets
    # into ``text``, so that one value can be replaced without re-serialising.
    def skip(at: int) -> int:
        match = _WHITESPACE.match(text, at)
        return match.end() if match else at

    members: list[tuple[str, int, int]] = []
    at = skip(0)
    if text[at : at + 1] != "{":
        raise InvalidInput("kraken JSON body must be an object")
    at = skip(at + 1)
    if text[at : at + 1] == "}":
        return _complete(text, skip(at + 1), members)
    try:
        while True:
            if text[at : at + 1] != '"':
                raise ValueError
            key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
            at = skip(at)
            if text[at : at + 1] != ":":
                raise ValueError
            start = skip(at + 1)
            _, end = _DECODER.raw_decode(text, start)
            members.append((key, start, end))
            at = skip(end)
            if text[at : at + 1] == ",":
                at = skip(at + 1)
                continue
            if text[at : at + 1] == "}":
                return _complete(text, skip(at + 1), members)
            raise ValueError
    except ValueError:
        raise InvalidInput("kraken JSON body is not valid JSON") from None


def _complete(
    text: str, at: int, members: list[tuple[str, int, int]]
) -> list[tuple[str, int, int]]:
    if at != len(text):
        raise InvalidInput("kraken JSON body has data after the object")
    return members


def _with_nonce_json(body: bytes, nonce: int) -> bytes:
    try:
        text = body.decode("utf-8") if body.strip() else "{}"
    except UnicodeDecodeError:
        raise InvalidInput("kraken JSON body is not UTF-8") from None
    members = _top_level_members(text)
    spans = [(start, end) for key, start, end in members if key == "nonce"]
    if not spans:
        # Kraken's reference documents the nonce as an int64 JSON number.
        brace = text.index("{")
        inserted = f'"nonce":{nonce}' + ("," if members else "")
        return (text[: brace + 1] + inserted + text[brace + 1 :]).encode("utf-8")
    for start, end in reversed(spans):
        # Keep the type the client chose (ccxt sends the nonce as a string).
        value = f'"{nonce}"' if text[start] == '"' else str(nonce)
        text = text[:start] + value + text[end:]
    return text.encode("utf-8")


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# Weights are Kraken's REST call-counter points (a per-key counter that decays
# by 0.33-1 per second, capped at 15-20 by tier): 1 per call, 2 for ledger and
# trade history. Order placement and cancellation cost 0 there and count on
# the per-pair trading-engine counter instead (order_count).
_READ = Endpoint("account_read")
_ORDER_READ = Endpoint("order_read")
_HISTORY = Endpoint("order_read", weight=2)
_PLACE = Endpoint("order_place", weight=0, order_count=1)
_CANCEL = Endpoint("order_cancel", weight=0, order_count=1)
_TRANSFER = Endpoint("transfer")
_WITHDRAW = Endpoint("withdraw")

PRIVATE_METHODS: dict[str, Endpoint] = {
    # account
    "Balance": _READ,
    "BalanceEx": _READ,
    "TradeBalance": _READ,
    "CreditLines": _READ,
    "TradeVolume": _READ,
    "OpenPositions": _READ,
    "Ledgers": Endpoint("account_read", weight=2),
    "QueryLedgers": _READ,
    "GetApiKeyInfo": _READ,
    "GetWebSocketsToken": _READ,
    "ListWalletAccounts": _READ,
    "Level3": _READ,
    "AddExport": _READ,
    "ExportStatus": _READ,
    "RetrieveExport": _READ,
    "RemoveExport": _READ,
    "DepositMethods": _READ,
    "DepositAddresses": _READ,  # unless it asks for a new address, see classify()
    "DepositStatus": _READ,
    "Earn/Strategies": _READ,
    "Earn/Allocations": _READ,
    "Earn/AllocateStatus": _READ,
    "Earn/DeallocateStatus": _READ,
    "Staking/Assets": _READ,
    "Staking/Pending": _READ,
    "Staking/Transactions": _READ,
    # orders
    "OpenOrders": _ORDER_READ,
    "ClosedOrders": _ORDER_READ,
    "QueryOrders": _ORDER_READ,
    "OrderAmends": _ORDER_READ,
    "QueryTrades": _ORDER_READ,
    "TradesHistory": _HISTORY,
    "AddOrder": _PLACE,
    "AddOrderBatch": Endpoint("order_place", weight=0, order_count=1, is_batch=True),
    "EditOrder": _PLACE,
    "AmendOrder": _PLACE,
    "CancelOrder": _CANCEL,
    "CancelOrderBatch": Endpoint("order_cancel", weight=0, order_count=1, is_batch=True),
    "CancelAll": Endpoint("order_cancel"),
    "CancelAllOrdersAfter": Endpoint("order_cancel"),
    # Every Withdraw* method needs the "Withdraw Funds" permission, which a key
    # given to keybroker must not have; the read-only ones also reveal the
    # account's withdrawal destinations. None of them is signed.
    "Withdraw": _WITHDRAW,
    "WithdrawCancel": _WITHDRAW,
    "WithdrawMethods": _WITHDRAW,
    "WithdrawAddresses": _WITHDRAW,
    "WithdrawInfo": _WITHDRAW,
    "WithdrawStatus": _WITHDRAW,
    # funds leaving the spot wallet or changing product
    "WalletTransfer": _TRANSFER,
    "AccountTransfer": _TRANSFER,
    "CreateSubaccount": _TRANSFER,
    "Earn/Allocate": _TRANSFER,
    "Earn/Deallocate": _TRANSFER,
    "Stake": _TRANSFER,
    "Unstake": _TRANSFER,
}

ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("POST", f"/0/private/{method}"): endpoint for method, endpoint in PRIVATE_METHODS.items()
}
CATALOGUE = Catalogue(ENDPOINTS)

_NEW_DEPOSIT_ADDRESS = Endpoint("transfer")


def is_public_path(path: str) -> bool:
    """Market data lives under ``/0/public/``; everything else needs a key."""
    return path.startswith("/0/public/")


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Classify by path; ``DepositAddresses`` asking for a new address counts as a transfer.

    That call is the one place where Kraken's body changes what a method
    does: ``new=true`` creates a deposit address. Reading an unparsable body
    also counts as asking, so the error is on the refusing side.
    """
    found = classify_either_method(CATALOGUE, request, is_public_path=is_public_path)
    if found.path == "/0/private/depositaddresses" and _asks_for_new_address(request):
        return ClassifiedRequest("transfer", found.method, found.path, _NEW_DEPOSIT_ADDRESS)
    return found


def _asks_for_new_address(request: httpx.Request) -> bool:
    try:
        fields = _fields(request)
    except InvalidInput:
        return True
    query = dict(parse_qsl(request.url.query.decode("ascii", "replace"), keep_blank_values=True))
    for value in (fields.get("new"), query.get("new")):
        if value is not None and str(value).strip().lower() not in ("false", "0", ""):
            return True
    return False


# -- 4b. Rate limits -----------------------------------------------------------------------
# Kraken keeps a call counter per API key that each private call raises (by
# its weight above: 2 for ledger and trade history, 1 otherwise, 0 for order
# placement and cancellation) and that drains continuously; a call that would
# lift it over the maximum fails with EAPI:Rate limit exceeded. The defaults
# are the Starter tier's, the lowest: maximum 15, draining 0.33 a second
# (Intermediate 20 / 0.5, Pro 20 / 1; a capacity override keeps the drain
# time, so it stays on the safe side). Orders count on a separate trading
# counter per currency pair, 60 draining 1 a second at Starter [unverified
# numbers, §6.7]; Kraken adds penalty points for cancelling young orders,
# which no limiter can know in advance. There are no usage headers.
RATE_LIMITS: tuple[RateLimit, ...] = (
    RateLimit("CALLS", 15, 15 / 0.33, "weight", "account", decaying=True, kinds=PRIVATE_KINDS),
    RateLimit("TRADING", 60, 60, "orders", "account", decaying=True, per_symbol=True),
)


# -- 5. Order-intent parser ----------------------------------------------------------------
_BATCH_FIELD = re.compile(r"^orders\[(\d+)\]\[([^\[\]]+)\]$")
# Order types whose execution price is ``price2`` (``price`` is the trigger).
_LIMIT_ON_PRICE2 = frozenset({"stop-loss-limit", "take-profit-limit", "trailing-stop-limit"})
# Order types that execute at market once triggered: ``price`` is no execution price.
_MARKET_ON_TRIGGER = frozenset({"market", "stop-loss", "take-profit", "trailing-stop"})


def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """Intents of AddOrder, AddOrderBatch (one per order), EditOrder and AmendOrder; [] otherwise.

    Amounts are Decimal. With ``oflags`` containing ``viqc`` the volume is in
    the quote currency and becomes ``quote_quantity``. EditOrder and
    AmendOrder may not name the pair, in which case ``symbol`` is ``""``.
    Relative prices (``+5``, ``-1%``, ``#2``) cannot be checked against a
    price collar and raise InvalidInput, as do repeated fields. ``classified``:
    ``classify(request)``, when the caller made it already.
    """
    classified = classified or classify(request)
    if classified.kind != "order_place":
        return []
    method = classified.path.rsplit("/", 1)[-1]
    fields = _fields(request)
    if method == "addorderbatch":
        return _batch_intents(fields)
    if method == "amendorder":
        return [
            OrderIntent(
                symbol=_text(fields.get("pair")) or "",
                quantity=_amount(fields, "order_qty"),
                price=_price(fields, "limit_price"),
                client_order_id=_text(fields.get("cl_ord_id")),
            )
        ]
    if method == "editorder":
        price_field = "price2" if "price2" in fields else "price"
        return [
            OrderIntent(
                symbol=_text(fields.get("pair")) or "",
                quantity=_amount(fields, "volume"),
                price=_price(fields, price_field),
                client_order_id=_text(fields.get("cl_ord_id") or fields.get("userref")),
            )
        ]
    return [_order_intent(fields, pair=None)]


def _order_intent(fields: Mapping[str, Any], pair: str | None) -> OrderIntent:
    order_type = (_text(fields.get("ordertype")) or "").lower() or None
    flags = {flag.strip().lower() for flag in (_text(fields.get("oflags")) or "").split(",")}
    volume = _amount(fields, "volume")
    if order_type in _LIMIT_ON_PRICE2:
        price = _price(fields, "price2")
    elif order_type in _MARKET_ON_TRIGGER:
        price = None
    else:
        price = _price(fields, "price")
    in_quote = "viqc" in flags
    return OrderIntent(
        symbol=_text(fields.get("pair")) or pair or "",
        side=_text(fields.get("type")),
        type=order_type,
        quantity=None if in_quote else volume,
        price=price,
        quote_quantity=volume if in_quote else None,
        client_order_id=_text(fields.get("cl_ord_id") or fields.get("userref")),
        reduce_only=_flag(fields.get("reduce_only")),
        leverage=_leverage(fields.get("leverage")),
    )


def _batch_intents(fields: Mapping[str, Any]) -> list[OrderIntent]:
    pair = _text(fields.get("pair"))
    orders = fields.get("orders")
    if orders is None:
        # Form encoding: orders[0][ordertype]=limit&orders[0][volume]=1&...
        grouped: dict[int, dict[str, Any]] = {}
        for name, value in fields.items():
            match = _BATCH_FIELD.match(name)
            if match:
                grouped.setdefault(int(match.group(1)), {})[match.group(2)] = value
        orders = [grouped[index] for index in sorted(grouped)]
    if not isinstance(orders, list) or not all(isinstance(order, dict) for order in orders):
        raise InvalidInput("kraken AddOrderBatch needs a list of orders")
    if not orders:
        raise InvalidInput("kraken AddOrderBatch has no orders")
    return [_order_intent(order, pair) for order in orders]


def _fields(request: httpx.Request) -> dict[str, Any]:
    body = request.read()
    if _is_json(request, body):
        if not body.strip():
            return {}
        parsed = _wire.load_json(body)
        if not isinstance(parsed, dict):
            raise InvalidInput("kraken JSON body must be an object")
        return parsed
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidInput("kraken form body is not UTF-8") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        # Two copies of one field could mean different orders to us and to Kraken.
        if name in fields:
            raise InvalidInput("kraken form body repeats a field")
        fields[name] = value
    return fields


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _amount(fields: Mapping[str, Any], name: str) -> Decimal | None:
    # The side is ``type``: no Kraken amount is signed (relative prices are refused below).
    return parse_amount(fields.get(name), exchange=NAME, field=name)


def _price(fields: Mapping[str, Any], name: str) -> Decimal | None:
    value = fields.get(name)
    if isinstance(value, str) and value.strip()[:1] in ("+", "-", "#"):
        raise InvalidInput(
            f"kraken relative {name} cannot be checked by policy; send an absolute one"
        )
    if isinstance(value, str) and value.strip().endswith("%"):
        raise InvalidInput(f"kraken percentage {name} cannot be checked by policy")
    return _amount(fields, name)


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1")


def _leverage(value: Any) -> Decimal | None:
    # Kraken writes leverage as "5" or "5:1"; "none" means none.
    text = _text(value)
    if text is None or text.lower() == "none":
        return None
    return _amount({"leverage": text.removesuffix(":1")}, "leverage")


# -- 6. Error map ----------------------------------------------------------------------------
# Kraken answers HTTP 200 with {"error": ["EClass:Message", ...]}. Exact
# strings first; classes (the part before the first colon) after.
ERRORS: dict[str, type[UpstreamError]] = {
    "EAPI:Invalid key": AuthenticationFailed,
    "EAPI:Invalid signature": AuthenticationFailed,
    "EGeneral:Permission denied": AuthenticationFailed,
    "ESession:Invalid session": AuthenticationFailed,
    "ETrade:User Locked": AuthenticationFailed,
    # Locked out after repeated failures: retrying would only extend it, so it is
    # not a rate limit that a client backs off from automatically.
    "EGeneral:Temporary lockout": AuthenticationFailed,
    # Kraken has no clock window; its nonce is our "timestamp". A rejected nonce
    # means another signer on this key went ahead of ours (or our high-water mark
    # was lost), the same remedy family as clock skew, not a bad key. Resending
    # the same bytes cannot succeed, which TimestampOutsideWindow also says.
    "EAPI:Invalid nonce": TimestampOutsideWindow,
    "EAPI:Rate limit exceeded": RateLimitedUpstream,
    "EOrder:Rate limit exceeded": RateLimitedUpstream,
    "EGeneral:Too many requests": RateLimitedUpstream,
    "EService:Throttled": RateLimitedUpstream,
    "EOrder:Insufficient funds": InsufficientBalance,
    "EOrder:Insufficient margin": InsufficientBalance,
    "EFunding:Invalid amount": InsufficientBalance,
    "EService:Unavailable": ExchangeUnavailable,
    "EService:Busy": ExchangeUnavailable,
    "EService:Market in cancel_only mode": ExchangeUnavailable,
    "EService:Market in post_only mode": ExchangeUnavailable,
    "EGeneral:Internal error": ExchangeUnavailable,
    "EDatabase:Internal error": ExchangeUnavailable,
    "EGeneral:Invalid arguments": OrderRejected,
    "EQuery:Unknown asset pair": OrderRejected,
    "EQuery:Invalid asset pair": OrderRejected,
}
ERROR_CLASSES: dict[str, type[UpstreamError]] = {
    "EOrder": OrderRejected,
    "ETrade": OrderRejected,
    "EService": ExchangeUnavailable,
    "EDatabase": ExchangeUnavailable,
}


def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error for a Kraken answer, or None for a success.

    The first entry of the ``error`` array decides (for AddOrderBatch also the
    per-order ``error`` fields); the error carries Kraken's string as its code.
    Non-JSON answers fall back on the HTTP status. ``EService:Throttled:<unix
    time>`` gets ``retry_after`` from that time and the response's Date.
    """
    messages = _error_messages(body)
    if messages:
        return _from_message(messages[0], status, headers)
    if status == 429:
        return RateLimitedUpstream(
            "kraken: rate limited (HTTP 429)",
            exchange=NAME,
            code=status,
            status=status,
            retry_after=_retry_after_header(headers),
        )
    if status >= 500:
        return ExchangeUnavailable(
            f"kraken: HTTP {status}", exchange=NAME, code=status, status=status
        )
    if status in (401, 403):
        return AuthenticationFailed(
            f"kraken: HTTP {status}", exchange=NAME, code=status, status=status
        )
    if status >= 400:
        return ExchangeRejected(f"kraken: HTTP {status}", exchange=NAME, code=status, status=status)
    return None


def _error_messages(body: bytes) -> list[str]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(payload, dict):
        return []
    errors = payload.get("error")
    found = [item for item in errors if isinstance(item, str)] if isinstance(errors, list) else []
    result = payload.get("result")
    if not found and isinstance(result, dict) and isinstance(result.get("orders"), list):
        for order in result["orders"]:
            if isinstance(order, dict) and isinstance(order.get("error"), str):
                found.append(order["error"])
    return [item for item in found if item.strip()]


def _from_message(text: str, status: int, headers: Mapping[str, str]) -> UpstreamError:
    # Kraken is not consistent about a space after the colon ("EService: Throttled: 1700000000").
    canonical = re.sub(r":\s+", ":", text.strip())[:160]
    throttled_until = None
    key = canonical
    if canonical.startswith("EService:Throttled"):
        key = "EService:Throttled"
        throttled_until = canonical[len(key) :].lstrip(":")
    if key not in ERRORS:
        # "EGeneral:Invalid arguments:price" and friends carry a detail after a second colon.
        key = next((known for known in ERRORS if canonical.startswith(known + ":")), canonical)
    kind = ERRORS.get(key) or ERROR_CLASSES.get(canonical.split(":", 1)[0], ExchangeRejected)
    message = f"kraken: {canonical}"
    if issubclass(kind, RateLimitedUpstream):
        retry_after = _retry_after_header(headers)
        if throttled_until:
            retry_after = _seconds_until(throttled_until, headers) or retry_after
        return kind(message, exchange=NAME, code=canonical, status=status, retry_after=retry_after)
    return kind(message, exchange=NAME, code=canonical, status=status)


def _retry_after_header(headers: Mapping[str, str]) -> float | None:
    value = _header(headers, "retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _seconds_until(unix_seconds: str, headers: Mapping[str, str]) -> float | None:
    # Measured against the response's own Date, so that map_error stays pure.
    date = _header(headers, "date")
    try:
        until = float(unix_seconds)
        now = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        return None
    return max(0.0, until - now) if now is not None else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


# -- 7. Key-permission query -------------------------------------------------------------------
def permission_request(environment: str) -> httpx.Request:
    """``POST /0/private/GetApiKeyInfo`` (needs no permission); sign adds the nonce."""
    return httpx.Request(
        "POST",
        base_url("/0/private/GetApiKeyInfo", environment) + "/0/private/GetApiKeyInfo",
        headers={"Content-Type": FORM},
        content=b"",
    )


def parse_permission_response(body: bytes) -> KeyPermissions:
    """Read ``result.permissions`` (slugs such as ``withdraw-funds``) and ``result.ipAllowlist``.

    Documented slugs: ``query-funds``, ``withdraw-funds``, ``query-open-trades``,
    ``modify-trades``; the others are matched by the same pattern
    (``query-*`` reads, ``modify-*``/``cancel-*``/``close-*`` trades, anything
    naming ``withdraw`` withdraws), erring towards reporting more power.
    """
    messages = _error_messages(body)
    if messages:
        raise InvalidInput(f"kraken GetApiKeyInfo failed: {messages[0][:80]}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("kraken GetApiKeyInfo answer is not JSON") from None
    result = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("permissions"), list):
        raise InvalidInput("kraken GetApiKeyInfo answer has no permissions list")
    permissions = {str(item).strip().lower() for item in result["permissions"]}
    allowlist = result.get("ipAllowlist")
    return KeyPermissions(
        can_read=any(item.startswith("query-") for item in permissions),
        can_trade=any(item.startswith(("modify-", "cancel-", "close-")) for item in permissions),
        can_withdraw=any("withdraw" in item for item in permissions),
        ip_restricted=bool(allowlist) if isinstance(allowlist, list) else None,
    )


# -- 7b. Key shapes (the doctor) ---------------------------------------------------------------
# Private keys are 64 bytes in base64 (88 characters ending in "=="); API keys
# are 56 base64 characters, too common a shape to count without a key word near.
KEY_PATTERNS = (
    KeyPattern(
        "kraken private key",
        re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])"),
    ),
    KeyPattern(
        "kraken api key",
        re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{56}(?![A-Za-z0-9+/=])"),
        re.compile(r"(?i)kraken|api[_-]?key"),
    ),
)


# -- 8. Order tools (the gateway) -------------------------------------------------------------
# AddOrder takes cl_ord_id (Kraken "Spot Client Order Identifiers": a long
# UUID, a short 32-hex UUID, or free ASCII text of at most 18 characters) or
# userref (a 32-bit integer); the two exclude each other. The gateway adds a
# long UUID made from its own id. OpenOrders filters by either; an order that
# already filled is not open, so an empty answer is "unknown", never "absent".
# Batches, edits and amends carry their own identifiers: none is added.
_CL_ORD_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32}|[\x21-\x7e]{1,18}"
)
_USERREF = re.compile(r"-?[0-9]{1,10}")


def cl_ord_id(new_id: Callable[[], str]) -> str:
    """A cl_ord_id from the gateway's id: itself when Kraken takes it, else a UUID of it."""
    raw = new_id()
    return raw if _CL_ORD_ID.fullmatch(raw) else uuid_client_id(raw)


def _is_add_order(request: httpx.Request, classified: ClassifiedRequest | None = None) -> bool:
    classified = classified or classify(request)
    return classified.kind == "order_place" and classified.path.endswith("/addorder")


def add_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    *,
    classified: ClassifiedRequest | None = None,
) -> httpx.Request:
    """``request`` with ``cl_ord_id`` added to an AddOrder that has neither it nor ``userref``.

    Form bodies get the field last, JSON bodies first; every other byte is
    kept, and the signer's nonce goes in after (the id is signed with the rest).
    """
    if not _is_add_order(request, classified):
        return request
    fields = _fields(request)
    if _text(fields.get("cl_ord_id")) is not None or _text(fields.get("userref")) is not None:
        return request
    new = cl_ord_id(new_id)
    body = request.read()
    if _is_json(request, body):
        return _wire.with_body(
            request, _wire.insert_json_member(body, "cl_ord_id", json.dumps(new))
        )
    field = b"cl_ord_id=" + _wire.quote_rfc3986(new).encode("ascii")
    return _wire.with_body(request, _wire.append_form_field(body, field))


def with_client_order_id(
    request: httpx.Request,
    new_id: Callable[[], str],
    classified: ClassifiedRequest,
    intents: Sequence[OrderIntent],
) -> tuple[httpx.Request, list[OrderIntent]] | None:
    """``add_client_order_id`` and ``parse_order`` of its result in one step (``OrderTools``):
    an AddOrder that names neither ``cl_ord_id`` nor ``userref`` (not even blank)."""
    if not _is_add_order(request, classified):
        return request, list(intents)
    body = request.read()
    if _is_json(request, body):
        return json_order_with_id(
            request, intents, "cl_ord_id", lambda: cl_ord_id(new_id), absent=("userref",)
        )
    fields = _fields(request)
    if len(intents) != 1 or "cl_ord_id" in fields or "userref" in fields:
        return None
    new = cl_ord_id(new_id)
    field = b"cl_ord_id=" + _wire.quote_rfc3986(new).encode("ascii")
    added = _wire.with_body(request, _wire.append_form_field(body, field))
    return added, [intents[0].with_client_order_id(new)]


def lookup_request(request: httpx.Request, intent: OrderIntent) -> httpx.Request | None:
    """POST /0/private/OpenOrders filtered by the order's cl_ord_id (or userref, if it had one)."""
    wanted = intent.client_order_id
    if not wanted or not _is_add_order(request):
        return None
    name = "userref" if _USERREF.fullmatch(wanted) else "cl_ord_id"
    body = f"{name}={_wire.quote_rfc3986(wanted)}".encode("ascii")
    url = request.url.copy_with(path="/0/private/OpenOrders", query=None)
    return httpx.Request("POST", url, headers={"Content-Type": FORM}, content=body)


def lookup_outcome(status: int, body: bytes) -> LookupOutcome:
    """ "found" when an open order matched; none open may mean "filled": "unknown"."""
    try:
        payload = json.loads(body)
        found = not payload["error"] and bool(payload["result"]["open"])
    except (ValueError, KeyError, TypeError):
        return "unknown"
    return "found" if status == 200 and found else "unknown"


def price_request(request: httpx.Request, symbol: str) -> httpx.Request | None:
    """GET /0/public/Ticker for the pair."""
    url = request.url.copy_with(path="/0/public/Ticker", params={"pair": symbol})
    return httpx.Request("GET", url)


def parse_price(body: bytes) -> Decimal | None:
    # {"error": [], "result": {"XXBTZUSD": {"c": ["<last>", "<volume>"], ...}}}: one pair asked.
    try:
        payload = json.loads(body)
        (ticker,) = payload["result"].values()
        price = Decimal(str(ticker["c"][0]))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, ArithmeticError):
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
    env_prefix="KRAKEN",
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
    key_patterns=KEY_PATTERNS,
    uses_nonce=True,
    orders=ORDER_TOOLS,
    rate_limits=RATE_LIMITS,
)
