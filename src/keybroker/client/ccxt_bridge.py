"""A ccxt exchange whose every request goes through the keybroker gateway; no key in the bot.

    >>> import keybroker
    >>> exchange = keybroker.connect_ccxt("binance-main", gateway_url="http://127.0.0.1:8787",
    ...                                   token=token)
    >>> exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)

A ccxt bot changes the one line that built its exchange. What the bridge does:

- **Placeholder credentials.** ccxt refuses to call a private method without
  an apiKey and secret, and signs every private request itself. It gets
  obviously fake ones: its key header, timestamp and signature arrive at the
  gateway, which strips them and signs anew with the credential from the vault.
  The placeholder secret is base64 (Kraken's ccxt class decodes its secret) and
  the placeholder passphrase satisfies OKX's and Coinbase Exchange's checks.
- **URLs rewritten.** Every URL in ``exchange.urls['api']`` (nested tables
  included, ``{hostname}`` filled in first) keeps its path and gets
  ``{gateway_url}/{credential}`` in place of the exchange's scheme and host,
  which is the gateway's routing (``/{credential}/{exchange path}``). Which
  exchange host a path belongs to, and testnet or production, is the
  gateway's choice from the credential, so ccxt's sandbox mode is not needed.
- **The bot token** rides on every request as ``X-Keybroker-Token`` (ccxt adds
  ``exchange.headers`` to each request it sends).

ccxt is an optional dependency (``pip install keybroker[ccxt]``) and is
imported only when this function runs.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from keybroker.client.config import (
    GATEWAY_TOKEN_HEADER,
    PLACEHOLDER_API_KEY,
    PLACEHOLDER_PASSPHRASE,
    PLACEHOLDER_SECRET,
    TOKEN_VARIABLE,
    gateway_base_url,
)
from keybroker.errors import ExchangeError, InvalidInput

# keybroker's profile names that ccxt spells differently; others are the same word.
CCXT_IDS: Mapping[str, str] = {
    "coinbase-exchange": "coinbaseexchange",
    "coinbase_exchange": "coinbaseexchange",
}


def connect_ccxt(
    credential: str,
    *,
    gateway_url: str | None = None,
    token: str | None = None,
    exchange: str | None = None,
    asynchronous: bool = False,
    config: Mapping[str, Any] | None = None,
    pro: bool = False,
) -> Any:
    """A ccxt exchange for the gateway credential ``credential``; see the module docstring.

    ``exchange`` is the credential's exchange (keybroker's profile name, e.g. ``binance``,
    ``okx``, ``coinbase-exchange``, or any ccxt id such as ``binanceusdm``); when it is not
    given, the running gateway is asked (``GET /_/credentials`` with the token).
    ``gateway_url`` defaults to KEYBROKER_GATEWAY_URL, else ``http://127.0.0.1:8787``;
    ``token`` to KEYBROKER_TOKEN. ``asynchronous`` picks ``ccxt.async_support``; ``pro``
    picks ``ccxt.pro`` (asynchronous too), whose WebSocket URLs go to the gateway's
    WebSocket routes with the token as a header, so ``watch_orders``, ``watch_balance``,
    ``watch_ticker`` and ``create_order_ws`` go through the gateway like REST calls do.
    ``config`` goes to the ccxt constructor as usual (options, timeout); credentials in it
    are refused, since the point is that the bot holds none. Raises InvalidInput naming what
    is wrong, or ImportError naming ``pip install keybroker[ccxt]`` when ccxt is missing
    (InvalidInput too when the gateway cannot say the exchange).
    """
    base = gateway_base_url(credential, gateway_url)
    bot_token = token if token is not None else os.environ.get(TOKEN_VARIABLE, "")
    if not isinstance(bot_token, str) or not bot_token.strip():
        raise InvalidInput(f"no bot token: pass token= or set {TOKEN_VARIABLE}")
    given = dict(config or {})
    held = sorted(k for k in ("apiKey", "secret", "password", "uid", "privateKey") if k in given)
    if held:
        raise InvalidInput(
            f"connect_ccxt takes no exchange credentials ({', '.join(held)}): "
            "the gateway signs with the vault's key"
        )
    if exchange is None:
        # Imported here: it loads httpx, which `import keybroker` must not.
        from keybroker.client.gateway_lookup import credential_exchange

        try:
            exchange = credential_exchange(credential, token=bot_token, gateway_url=gateway_url)
        except ExchangeError as exc:
            raise InvalidInput(exc.message) from None
    cls = _ccxt_class(exchange, asynchronous, pro)
    headers = {**dict(given.pop("headers", None) or {}), GATEWAY_TOKEN_HEADER: bot_token.strip()}
    client = cls(
        {
            **given,
            "apiKey": PLACEHOLDER_API_KEY,
            "secret": PLACEHOLDER_SECRET,
            "password": PLACEHOLDER_PASSPHRASE,
            "headers": headers,
        }
    )
    client.urls["api"] = _rewritten(client, client.urls["api"], base)
    if pro:
        api = client.urls["api"]
        if isinstance(api, dict) and "ws" in api:
            api["ws"] = _as_websocket(api["ws"])
        ws_options = dict(client.options.get("ws") or {})
        ws_options["headers"] = {**dict(ws_options.get("headers") or {}), **headers}
        client.options["ws"] = ws_options
    chosen = dict(given.get("options") or {})
    for option, value in _OPTIONS.get(client.id, {}).items():
        if option not in chosen:
            client.options[option] = value
    if client.id == "binance" and "fetchMarkets" not in chosen:
        _only_spoken_market_types(client)
    _raise_gateway_errors(client, importlib.import_module("ccxt"))
    return client


# ccxt options the bridge changes unless the caller set them. Binance's load_markets,
# once a key is set, also asks wallet (fetchCurrencies) and margin (fetchMargins)
# endpoints that the gateway does not open to a spot trading credential; the whole
# load_markets would fail on their 403.
_OPTIONS: Mapping[str, Mapping[str, object]] = {
    "binance": {"fetchCurrencies": False, "fetchMargins": False},
}

# The one ccxt ``binance`` market type whose REST and WebSocket both go through the
# gateway under that class; futures bots use exchange="binanceusdm".
_BINANCE_MARKET_TYPES = ("spot",)


def _only_spoken_market_types(client: Any) -> None:
    """Load only spot markets into ccxt's ``binance`` unless the bot chose its own.

    ccxt's default also loads linear and inverse markets before the first call.
    The inverse list comes from /dapi, which the gateway refuses (403
    unknown_endpoint), so every call of an unchanged bot failed with
    PermissionDenied. Linear markets share their ids with spot (BTCUSDT), and
    ccxt.pro tells a spot stream from a futures one by the exchange's host name
    ("/stream" in its URL), which the gateway's URL does not carry: with them
    loaded, ``watch_ticker("BTC/USDT")`` filed every update under BTC/USDT:USDT
    and never returned.
    """
    fetch = client.options.get("fetchMarkets")
    if isinstance(fetch, dict) and isinstance(fetch.get("types"), list):
        client.options["fetchMarkets"] = {**fetch, "types": list(_BINANCE_MARKET_TYPES)}


# The gateway's own refusals (X-Keybroker-Error) as ccxt's error classes, so a bot's
# existing `except ccxt.PermissionDenied` sees a policy denial for what it is.
_ERRORS: Mapping[str, str] = {
    "bad_token": "AuthenticationError",
    "policy_denied": "PermissionDenied",
    "not_granted": "PermissionDenied",
    "origin_not_allowed": "PermissionDenied",
    "bad_host": "PermissionDenied",
    "rate_limited": "RateLimitExceeded",
    "invalid_request": "BadRequest",
    "body_too_large": "BadRequest",
    "upstream_unreachable": "RequestTimeout",
    "upstream_unavailable": "ExchangeNotAvailable",
    "not_ready": "ExchangeNotAvailable",
    "vault_locked": "ExchangeNotAvailable",
    "audit_unavailable": "ExchangeNotAvailable",
}


def _raise_gateway_errors(client: Any, ccxt: Any) -> None:
    exchange_errors = client.handle_errors

    def handle_errors(
        code: int, reason: str, url: str, method: str, headers: Any, body: str, *rest: Any
    ) -> Any:
        error = _header(headers, "x-keybroker-error")
        if error:
            detail = ""
            try:
                document = json.loads(body)
            except (TypeError, ValueError):
                document = None
            if isinstance(document, dict):
                rule = document.get("rule")
                detail = (f"rule={rule}: " if rule else "") + str(document.get("detail", ""))
            cls = getattr(ccxt, _ERRORS.get(error, "ExchangeError"))
            raise cls(f"{client.id} keybroker gateway {code} {error}: {detail}".rstrip(": "))
        return exchange_errors(code, reason, url, method, headers, body, *rest)

    client.handle_errors = handle_errors


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if str(key).lower() == name:
            return str(value)
    return None


def _ccxt_class(exchange: str, asynchronous: bool, pro: bool = False) -> Any:
    name = "ccxt.pro" if pro else "ccxt.async_support" if asynchronous else "ccxt"
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            "connect_ccxt needs ccxt, an optional extra: pip install keybroker[ccxt]"
        ) from exc
    name = str(exchange).strip().lower()
    ccxt_id = CCXT_IDS.get(name, name)
    cls = getattr(module, ccxt_id, None) if ccxt_id in module.exchanges else None
    if cls is None:
        raise InvalidInput(f"ccxt has no exchange {exchange!r} (ccxt {module.__version__})")
    return cls


def _rewritten(client: Any, urls: Any, base: str) -> Any:
    """``urls`` (a URL, or tables of them) with each URL's scheme and host replaced by ``base``."""
    if isinstance(urls, str):
        parts = urlsplit(client.implode_hostname(urls))
        if not parts.scheme or not parts.netloc:
            return urls  # not a URL (ccxt keeps a few notes among them)
        path = parts.path.rstrip("/")
        return base + path + ("?" + parts.query if parts.query else "")
    if isinstance(urls, Mapping):
        return {key: _rewritten(client, value, base) for key, value in urls.items()}
    return urls


def _as_websocket(urls: Any) -> Any:
    """The gateway's http(s) URLs made ws(s): the same routes, upgraded."""
    if isinstance(urls, str):
        if urls.startswith("https://"):
            return "wss://" + urls[len("https://") :]
        if urls.startswith("http://"):
            return "ws://" + urls[len("http://") :]
        return urls
    if isinstance(urls, Mapping):
        return {key: _as_websocket(value) for key, value in urls.items()}
    return urls


__all__ = ["connect_ccxt"]
