"""Ask a running gateway which exchange a credential is on: what the bridges need, and a bot lacks.

    >>> credential_exchange("binance-main", gateway_url="http://127.0.0.1:8787", token=token)
    'binance'

A bot is given a credential's name and a bot token, nothing more.
``connect_ccxt`` and ``gateway_config`` must still pick ccxt's exchange class
or the adapter, so when the caller does not say ``exchange=``, they ask the
gateway's ``GET /_/credentials``, which lists only the credentials that token
was granted (name, exchange, environment; nothing that identifies the key).
"""

from __future__ import annotations

import httpx

from keybroker.client.config import GATEWAY_TOKEN_HEADER, gateway_root
from keybroker.client.errors import config_error
from keybroker.secret import Secret

LISTING_PATH = "/_/credentials"
_TIMEOUT_S = 10.0


def credential_exchange(
    credential: str, *, token: Secret | str, gateway_url: str | None = None
) -> str:
    """The exchange (keybroker's profile name) of ``credential``, as the gateway says.

    Raises ExchangeError (``InvalidConfig``) naming the fix when the gateway
    cannot be reached, refuses the token, or does not list the credential for
    this token (not granted, or no such credential).
    """
    root = gateway_root(gateway_url)
    text = token.reveal_text() if isinstance(token, Secret) else token
    try:
        answer = httpx.get(
            root + LISTING_PATH,
            headers={GATEWAY_TOKEN_HEADER: text.strip()},
            timeout=_TIMEOUT_S,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise config_error(
            f"could not reach the keybroker gateway at {root} to learn the exchange of "
            f"{credential!r} ({type(exc).__name__}); start it with `keybroker serve`, "
            "or pass exchange="
        ) from None
    if answer.status_code == 401:
        raise config_error(
            f"the gateway at {root} refused the bot token (401): it is unknown, expired or "
            "revoked; make one with `keybroker tokens create`"
        )
    if answer.status_code != 200:
        raise config_error(
            f"the gateway at {root} answered {answer.status_code} to {LISTING_PATH}; "
            "is it a keybroker gateway of this version? Or pass exchange="
        )
    try:
        listed = answer.json()["credentials"]
        exchanges = {item["name"]: str(item["exchange"]) for item in listed}
    except (ValueError, KeyError, TypeError):
        raise config_error(
            f"the gateway at {root} gave an unreadable {LISTING_PATH} answer; pass exchange="
        ) from None
    name = credential.strip()
    if name not in exchanges:
        raise config_error(
            f"the bot token is not granted credential {name!r}, or the gateway has no such "
            f"credential; grant it with `keybroker tokens create BOT --credential {name}`"
        )
    return exchanges[name]


__all__ = ["LISTING_PATH", "credential_exchange"]
