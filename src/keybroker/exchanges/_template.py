"""<name>: everything keybroker knows about <Exchange>'s wire format.

    >>> signed = PROFILE.sign(httpx.Request("POST", url, content=body), credential, now_ms=ts)
    >>> PROFILE.classify(signed).kind
    'order_place'

The section order every exchange module follows; never registered in
``PROFILES``. To add an exchange: copy this file to ``<name>.py``, fill in
each section top to bottom (``binance.py`` is the worked example), add the
published signing examples to ``tests/vectors/exchanges/<name>.json`` (with
their source URLs), write ``tests/unit/exchanges/test_<name>.py`` and
``tests/differential/test_ccxt_<name>.py``, and register ``PROFILE`` in
``exchanges/__init__.py``. Add the name to ``model.ExchangeName`` too.

Sections: base URLs, credential rules, signer, endpoint catalogue, rate
limits, order-intent parser, error map, key-permission query, PROFILE. Source of
truth: ../shared/design/exchange-auth.md (the exchange's own section, §0,
§1, §12, §13). Exchange knowledge stays in this one module; anything
exchange-neutral belongs in ``base.py`` or ``_wire.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from keybroker.errors import InvalidInput, UpstreamError
from keybroker.exchanges.base import (
    Catalogue,
    ClassifiedRequest,
    CredentialRules,
    Endpoint,
    ExchangeProfile,
    KeyPermissions,
    OrderIntent,
    RateLimit,
    classify_with,
    read_usage_headers,
)
from keybroker.model import Credential
from keybroker.secret import Secret

NAME = "template"

# -- 1. Base URLs ------------------------------------------------------------------
# product host -> environment ("production", "testnet", "demo") -> base URL.
# List only environments that exist: a missing one must raise, never fall
# back to production (a testnet key sent to the real exchange is a bug the
# user should hear about). Say in a comment how the test environments differ
# (separate keys per site, paths a testnet does not serve, a demo header).
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://api.example.invalid",
    },
}


def base_url(path: str, environment: str) -> str:
    """The base URL serving ``path`` in ``environment``; InvalidInput if there is none.

    Route by path prefix when products live on different hosts (Binance:
    /api and /sapi on api.binance.com, /fapi on fapi.binance.com).
    """
    url = BASE_URLS["rest"].get(environment)
    if url is None:
        raise InvalidInput(f"{NAME} has no {environment} environment")
    return url


# -- 2. Credential rules --------------------------------------------------------------
def check_secret(secret: Secret, key_type: str) -> None:
    """Cheap shape checks of the secret for ``key_type``; InvalidInput names the field only.

    Examples: "the secret is base64" (Kraken), "the PEM parses as that key
    type" (crypto.signing.load_private_key, catching SigningError). Never put
    the value, or any part of it, into a message.
    """


CREDENTIALS = CredentialRules(
    needs_passphrase=False, key_types=("hmac",), check_secret=check_secret
)


# -- 3. Signer ---------------------------------------------------------------------------
# Rules every signer keeps (spec §1):
# * Auth fields another client put there (placeholder key, signature,
#   timestamp, nonce, passphrase, JWT) are replaced; everything else (path,
#   parameter order, body bytes) is kept byte for byte, so signing a signed
#   request again gives the same bytes.
# * Sign exactly the bytes that are sent. Never let httpx re-encode a query
#   or re-serialise a body after signing; a test compares request.url.query
#   with what was signed.
# * Primitives come from keybroker.crypto.signing only (crypto/ is the only
#   package that imports cryptography).
# * now_ms and nonce are arguments, so published vectors reproduce exactly.
# * It is the hot path: build the new httpx.Request once, with _wire's fast
#   builders (replace_headers_fast, with_query, build_request) rather than
#   httpx.Request(..., content=...), which re-parses URL and headers.
#   bench/bench_signing.py measures the result against ccxt and a bare HMAC.
def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    """Return ``request`` signed for ``credential``; SigningError if this key cannot sign it."""
    raise NotImplementedError("copy _template.py and write the exchange's signer")


# -- 4. Endpoint catalogue -----------------------------------------------------------------
# (method, path pattern) -> Endpoint(kind, weight, order_count, is_batch), with
# the weights of the exchange's docs. Patterns use {name} for one segment.
# Catalogue every withdraw, transfer and key-management endpoint of the spec's
# "must refuse" list; cover whole families (new sub-paths appear every
# quarter) in classify() below. Private paths not listed are unknown_private
# and denied: the catalogue is an allowlist.
_ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/v1/time"): Endpoint("public", 1),
    ("POST", "/v1/order"): Endpoint("order_place", 1, order_count=1),
    ("POST", "/v1/withdraw"): Endpoint("withdraw", 1),
}
CATALOGUE = Catalogue(_ENDPOINTS)


def is_public_path(path: str) -> bool:
    """Uncatalogued paths that are plainly public market data (the rest is private)."""
    return False


def classify(request: httpx.Request) -> ClassifiedRequest:
    """Kind and weight of a request, on its normalised path, whatever its spelling.

    classify_with normalises the path (case, percent-encoding, doubled
    slashes, dot segments, trailing slash) and reads both verbs when a
    method-override header is present. Add here: dangerous path families,
    operations named in the body rather than the path, and weights that
    depend on parameters.
    """
    return classify_with(CATALOGUE, request, is_public_path=is_public_path)


# -- 4b. Rate limits -----------------------------------------------------------------------
# The budgets the exchange enforces (RateLimit: name, capacity per_seconds,
# what counts -- the catalogue's weight, its order_count, or requests -- and
# whose budget it is: the IP's, the account's or each endpoint's), with the
# spec's numbers and their tags ([doc], [unverified]). Say whether windows are
# fixed on the clock (fixed_window=True, Binance) or rolling, or a draining
# counter (decaying=True, Kraken). Where responses report usage, read_usage
# maps those headers to limit names (base.read_usage_headers does the parsing).
RATE_LIMITS: tuple[RateLimit, ...] = (RateLimit("REQUESTS", 10, 1, "requests", "account"),)


def read_usage(headers: Mapping[str, str]) -> dict[str, float]:
    """{limit name: used} from the exchange's usage headers (none here)."""
    return read_usage_headers(headers, {})


# -- 5. Order-intent parser ----------------------------------------------------------------
def parse_order(
    request: httpx.Request, *, classified: ClassifiedRequest | None = None
) -> list[OrderIntent]:
    """One intent per order the request places, from query, form or JSON body.

    Amounts are Decimal, never float (``_wire.load_json`` parses JSON that
    way and refuses duplicate keys); a parameter given twice is refused, so
    a policy never checks one copy while the exchange executes the other.
    Batch endpoints yield one intent per order. InvalidInput for what cannot
    be read. ``classified``: ``classify(request)`` when the caller (the gateway) made
    it already; use it rather than classifying again.
    """
    return []


# -- 6. Error map ----------------------------------------------------------------------------
def map_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError | None:
    """The typed error a response stands for, or None for a success.

    Map the exchange's codes to AuthenticationFailed (key, signature, IP,
    permission), TimestampOutsideWindow, RateLimitedUpstream (with
    retry_after), IPBanned (with ban_until_ms), InsufficientBalance,
    OrderRejected and ExchangeUnavailable (5xx: outcome unknown), each with
    exchange=NAME, code= and status=. Messages carry the code and the
    exchange's short message, never a request body, header or secret.
    """
    if 200 <= status < 300:
        return None
    return UpstreamError(f"{NAME} HTTP {status}", exchange=NAME, status=status)


# -- 7. Key-permission query -----------------------------------------------------------------
# The request that asks the exchange about the key itself, and its parser:
# any way of moving funds out (withdrawal, internal or universal transfer)
# sets can_withdraw. Where the exchange has none, leave both None and say
# why in PERMISSION_NOTE.
PERMISSION_NOTE = "<exchange> has no endpoint that reports a key's own permissions"


def permission_request(environment: str) -> httpx.Request:
    """The unsigned request asking about the key (signed by ``sign`` like any other)."""
    raise NotImplementedError("copy _template.py and write the permission request")


def parse_permissions(body: bytes) -> KeyPermissions:
    """KeyPermissions from the exchange's answer; the mapped error for an error answer."""
    raise NotImplementedError("copy _template.py and write the permission parser")


PROFILE = ExchangeProfile(
    name=NAME,
    env_prefix="TEMPLATE",
    base_urls=BASE_URLS,
    route_base_url=base_url,
    credentials=CREDENTIALS,
    sign_request=sign,
    catalogue=CATALOGUE,
    classify_request=classify,
    parse_order_request=parse_order,
    map_error_response=map_error,
    permission_request=None,  # permission_request, where the exchange has one
    parse_permission_response=None,  # parse_permissions, likewise
    permission_note=PERMISSION_NOTE,
    rate_limits=RATE_LIMITS,
    read_usage=None,  # read_usage, where the exchange sends usage headers
)
