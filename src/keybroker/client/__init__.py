"""In-process adapters: a bot that holds its own exchange key talks to the exchange directly.

    >>> from keybroker import BinanceAdapter, binance_testnet_config
    >>> with BinanceAdapter(binance_testnet_config()) as binance:
    ...     order = binance.place_order("BTCUSDT", "buy", "limit", "0.001", "50000")

For bots that do not run the gateway. The adapters sign through the same
exchange profiles the gateway uses (``keybroker.exchanges``), so they hold no
signing code; the key lives in this process, which is exactly what the gateway
avoids, so prefer the gateway where you can. Importing this package is cheap:
httpx and the signers load when the first adapter is built.
"""

from keybroker.client.base import Adapter
from keybroker.client.binance import BinanceAdapter
from keybroker.client.calls import DEFAULT_TIMEOUT, RetryPolicy
from keybroker.client.ccxt_bridge import connect_ccxt
from keybroker.client.config import (
    ExchangeConfig,
    ExchangeId,
    binance_testnet_config,
    gateway_config,
    okx_testnet_config,
    vault_config,
)
from keybroker.client.okx import OKXAdapter
from keybroker.client.results import Balance, BookLevel, Kline, Order, OrderBook, Ticker
from keybroker.errors import ExchangeError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Adapter",
    "Balance",
    "BinanceAdapter",
    "BookLevel",
    "ExchangeConfig",
    "ExchangeError",
    "ExchangeId",
    "Kline",
    "OKXAdapter",
    "Order",
    "OrderBook",
    "RetryPolicy",
    "Ticker",
    "binance_testnet_config",
    "connect_ccxt",
    "gateway_config",
    "okx_testnet_config",
    "vault_config",
]
