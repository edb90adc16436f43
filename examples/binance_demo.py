"""K-lines and an order through BinanceAdapter: against the Binance testnet, or offline.

    $ python examples/binance_demo.py          # offline: a local emulator on a free port
    $ BINANCE_API_KEY=... BINANCE_API_SECRET=... python examples/binance_demo.py   # testnet

With both variables set (testnet keys from testnet.binance.vision), the demo
talks to the real Binance spot testnet. Without them it starts keybroker's
exchange emulator in this process, so it runs offline in a few seconds. The
keys are read from the environment only (seed 000 §1); nothing here prints them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal

from keybroker import BinanceAdapter, ExchangeConfig, ExchangeError, binance_testnet_config

SYMBOL = "BTCUSDT"


def _config() -> tuple[ExchangeConfig, Callable[[], None]]:
    if os.environ.get("BINANCE_API_KEY") and os.environ.get("BINANCE_API_SECRET"):
        print("Using the Binance spot testnet (keys from BINANCE_API_KEY / BINANCE_API_SECRET)")
        return binance_testnet_config(), lambda: None
    # Imported only here: the emulator is a test tool, not part of `import keybroker`.
    from keybroker.emulator import create_app, generate_key, serve_in_thread

    key = generate_key("binance")
    base_url, stop = serve_in_thread(create_app("binance", [key]))
    print(f"No BINANCE_API_KEY/SECRET: using the local emulator at {base_url}")
    config = ExchangeConfig("binance", key.api_key, key.secret, rest_base_url=base_url)
    return config, stop


def main() -> None:
    config, stop = _config()
    print(repr(config))  # the secret shows as Secret('***')
    try:
        with BinanceAdapter(config) as binance:
            print(f"{binance!r}: server time {binance.server_time()}")
            print(f"\nLast 5 hourly K-lines of {SYMBOL}:")
            for candle in binance.klines(SYMBOL, "1h", limit=5):
                print(
                    f"  {candle.open_time_ms}  open {candle.open:>12}  high {candle.high:>12}  "
                    f"low {candle.low:>12}  close {candle.close:>12}"
                    + ("" if candle.is_closed else "  (forming)")
                )
            ticker = binance.ticker(SYMBOL)
            print(f"\nTicker: last {ticker.last}, bid {ticker.bid}, ask {ticker.ask}")

            # A limit buy 10% under the market rests on the book; then cancel it.
            price = (ticker.last * Decimal("0.9")).quantize(Decimal("0.01"))
            order = binance.place_order(SYMBOL, "buy", "limit", Decimal("0.001"), price)
            print(f"\nPlaced {order.side} {order.quantity} @ {order.price}: {order.status}")
            print(f"  client order id {order.client_order_id}, exchange id {order.order_id}")
            print(f"  open orders: {[o.order_id for o in binance.open_orders(SYMBOL)]}")
            cancelled = binance.cancel_order(SYMBOL, client_order_id=order.client_order_id)
            print(f"Cancelled it: {cancelled.status}")
    except ExchangeError as error:
        # .code says what kind of failure it is; the message never holds a secret.
        print(f"\nExchangeError [{error.code}]: {error}")
        raise SystemExit(2) from None
    finally:
        stop()


if __name__ == "__main__":
    main()
