"""One module per exchange, registered here by hand (no import magic).

    >>> from keybroker.exchanges import get_profile
    >>> get_profile("okx").needs_passphrase
    True

Adding an exchange: copy ``_template.py`` to ``<name>.py``, fill in its
sections, add its published vectors, and add it to ``PROFILES`` below.
"""

from __future__ import annotations

from collections.abc import Mapping

from keybroker.errors import UnknownExchange
from keybroker.exchanges import (
    binance,
    bitfinex,
    bittrex,
    bybit,
    coinbase,
    coinbase_exchange,
    kraken,
    okx,
    poloniex,
)
from keybroker.exchanges.base import (
    ClassifiedRequest,
    Endpoint,
    ExchangeProfile,
    KeyPattern,
    KeyPermissions,
    OrderIntent,
    RequestKind,
)

PROFILES: Mapping[str, ExchangeProfile] = {
    profile.name: profile
    for profile in (
        binance.PROFILE,
        okx.PROFILE,
        bybit.PROFILE,
        kraken.PROFILE,
        coinbase.PROFILE,
        coinbase_exchange.PROFILE,
        bitfinex.PROFILE,
        poloniex.PROFILE,
        bittrex.PROFILE,
    )
}


def get_profile(name: str) -> ExchangeProfile:
    """The profile for ``name``; UnknownExchange lists the known names otherwise."""
    try:
        return PROFILES[name.strip().lower()]
    except KeyError:
        raise UnknownExchange(
            f"unknown exchange {name!r}; known exchanges: {', '.join(PROFILES)}"
        ) from None


__all__ = [
    "PROFILES",
    "ClassifiedRequest",
    "Endpoint",
    "ExchangeProfile",
    "KeyPattern",
    "KeyPermissions",
    "OrderIntent",
    "RequestKind",
    "get_profile",
]
