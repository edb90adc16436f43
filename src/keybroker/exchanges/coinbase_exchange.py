"""coinbase-exchange: everything keybroker knows about this exchange's wire format.

Sections, in the order of ``_template.py``: base URLs, credential rules,
signer, endpoint catalogue, order-intent parser, error map, key-permission
query, PROFILE. Source of truth: ../shared/design/exchange-auth.md.
"""

from __future__ import annotations

import httpx

from keybroker.errors import UpstreamError
from keybroker.exchanges.base import (
    Catalogue,
    ClassifiedRequest,
    CredentialRules,
    ExchangeProfile,
    OrderIntent,
    classify_with,
)
from keybroker.model import Credential

NAME = "coinbase-exchange"

# -- 1. Base URLs ------------------------------------------------------------------
BASE_URLS: dict[str, dict[str, str]] = {
    "rest": {
        "production": "https://api.exchange.coinbase.com",
        "testnet": "https://api-public.sandbox.exchange.coinbase.com",
    },
}


def base_url(path: str, environment: str) -> str:
    urls = next(iter(BASE_URLS.values()))
    return urls.get(environment) or urls["production"]


# -- 2. Credential rules --------------------------------------------------------------
CREDENTIALS = CredentialRules(needs_passphrase=True, key_types=("hmac",))


# -- 3. Signer ---------------------------------------------------------------------------
def sign(
    request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
) -> httpx.Request:
    raise NotImplementedError("coinbase-exchange signer: issue #3")


# -- 4. Endpoint catalogue -----------------------------------------------------------------
CATALOGUE = Catalogue({})


def is_public_path(path: str) -> bool:
    return False


def classify(request: httpx.Request) -> ClassifiedRequest:
    return classify_with(CATALOGUE, request, is_public_path=is_public_path)


# -- 5. Order-intent parser ----------------------------------------------------------------
def parse_order(request: httpx.Request) -> list[OrderIntent]:
    raise NotImplementedError("coinbase-exchange order parser: issue #3")


# -- 6. Error map ----------------------------------------------------------------------------
def map_error(status: int, body: bytes, headers: object) -> UpstreamError | None:
    raise NotImplementedError("coinbase-exchange error map: issue #3")


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
    map_error_response=map_error,  # type: ignore[arg-type]
)
