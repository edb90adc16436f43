"""``GET /_/credentials``: which credentials the calling bot token may use, and on which exchange.

    $ curl -s -H "X-Keybroker-Token: $TOKEN" 127.0.0.1:8787/_/credentials
    {"credentials": [{"environment": "testnet", "exchange": "binance", "name": "binance-main"}]}

A bot knows a credential's name (its token was granted it) but not which
exchange it belongs to; ``connect_ccxt(credential, token=…)`` and
``gateway_config(credential, token=…)`` ask here, so a bot passes the one
name it was given. The list is scoped to the token: a credential the token
was not granted is not named, nor is one that no longer exists. Nothing
secret and nothing that identifies the key is shown: no key id (not even
masked), no base URL, no notes; only name, exchange and environment.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from keybroker.gateway.auth import BOT_SCOPE_KEY
from keybroker.gateway.state import Gateway
from keybroker.vault import BotToken


def granted_credentials(gateway: Gateway, bot: BotToken) -> list[dict[str, str]]:
    """Name, exchange and environment of each existing credential ``bot`` was granted."""
    granted = set(bot.credentials)
    return [
        {"name": record.name, "exchange": record.exchange, "environment": record.environment}
        for record in gateway.access.vault.list_credentials()
        if record.name in granted
    ]


async def credentials(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    bot: BotToken = request.scope[BOT_SCOPE_KEY]
    body = json.dumps({"credentials": granted_credentials(gateway, bot)}, sort_keys=True)
    return Response(body, 200, {"cache-control": "no-store"}, media_type="application/json")
