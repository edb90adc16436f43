"""keybroker: trading bots use exchange API keys without ever holding them.

    >>> from keybroker import Credential, Secret
    >>> Credential("bot1", "binance", "public-key-id", Secret("not-a-real-secret"))

The few names here are the public Python surface; everything else is reached
through its package (``keybroker.vault``, ``keybroker.exchanges``). The
adapters (``BinanceAdapter``, ``OKXAdapter``) are for bots that hold their
own key; importing them here stays cheap, since they load httpx and the
signers only when one is built. Bots behind the signing gateway (``keybroker
serve``) hold no key at all: ``gateway_config`` points an adapter at it, and
``connect_ccxt`` gives a ccxt exchange that goes through it (ccxt is imported
only then).
"""

from keybroker.client import (
    BinanceAdapter,
    ExchangeConfig,
    ExchangeId,
    OKXAdapter,
    binance_testnet_config,
    connect_ccxt,
    gateway_config,
    okx_testnet_config,
    vault_config,
)
from keybroker.errors import ExchangeError, KeybrokerError
from keybroker.model import Credential
from keybroker.secret import Secret

__version__ = "0.1.0"

# Sorted case-insensitively, as tests/test_public_api.py holds (ruff's RUF022 sorts otherwise).
__all__ = [  # noqa: RUF022
    "binance_testnet_config",
    "BinanceAdapter",
    "connect_ccxt",
    "Credential",
    "ExchangeConfig",
    "ExchangeError",
    "ExchangeId",
    "gateway_config",
    "KeybrokerError",
    "okx_testnet_config",
    "OKXAdapter",
    "Secret",
    "vault_config",
]
