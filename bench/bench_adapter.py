"""Order round trip: BinanceAdapter.place_order next to ccxt's create_order, in one run.

    $ python bench/bench_adapter.py            # about 10 seconds, offline

Both clients place the same resting limit order against one Binance emulator,
which runs in a child process (so that its event loop does not share this
process's GIL with the client being measured). Rounds alternate between the
two clients so that drift in the machine's speed hits both alike. Printed:
median and p99 of the round trip of each, and the adapter's extra time over
ccxt's (target: the adapter adds no more than ccxt does, i.e. its median is not
above ccxt's). The emulator's own time is in both numbers and cancels out in
the difference. ccxt's client-side throttle (``enableRateLimit``) is turned off,
since it sleeps on purpose and the adapter has none. Every key here is fake.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import ccxt

from keybroker import BinanceAdapter, ExchangeConfig

API_KEY = "bench-binance-key-not-real"
SECRET = "bench-binance-secret-not-real"
ROUNDS = 10
PER_ROUND = 100
WARMUP = 50

_SERVER = f"""
import sys
from decimal import Decimal
from keybroker.emulator import ApiKey, EmulatorConfig, create_app, serve_in_thread
from keybroker.secret import Secret

balances = {{"USDT": Decimal(10**8), "BTC": Decimal(10)}}
key = ApiKey({API_KEY!r}, Secret({SECRET!r}), balances=balances)
config = EmulatorConfig(weight_limit=10**9, spot_orders_per_10s=10**9, spot_orders_per_day=10**9)
app = create_app("binance", [key], config)
url, stop = serve_in_thread(app)  # quiet: no access log to fill our pipe
print(url, flush=True)
sys.stdin.read()  # until the parent closes it
stop()
"""


def start_emulator() -> tuple[str, subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise SystemExit("the emulator did not start")
    return url, process


def ccxt_binance(base_url: str) -> Any:
    # ccxt's own throttle would sleep between calls; off, so both clients are measured
    # doing the same thing (the adapter throttles only when the exchange says 429).
    exchange = ccxt.binance({"apiKey": API_KEY, "secret": SECRET, "enableRateLimit": False})
    for name, url in list(exchange.urls["api"].items()):
        for host in (
            "https://api.binance.com",
            "https://fapi.binance.com",
            "https://dapi.binance.com",
        ):
            if isinstance(url, str) and url.startswith(host):
                exchange.urls["api"][name] = base_url + url[len(host) :]
    exchange.load_markets()
    return exchange


def timed(action: Callable[[], object], count: int, into: list[float]) -> None:
    for _ in range(count):
        start = time.perf_counter()
        action()
        into.append(time.perf_counter() - start)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def main() -> None:
    url, process = start_emulator()
    try:
        adapter = BinanceAdapter(ExchangeConfig("binance", API_KEY, SECRET, rest_base_url=url))
        exchange = ccxt_binance(url)

        def with_adapter() -> object:
            return adapter.place_order("BTCUSDT", "buy", "limit", Decimal("0.001"), "50000")

        def with_ccxt() -> object:
            return exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 50000)

        ignored: list[float] = []
        timed(with_adapter, WARMUP, ignored)
        timed(with_ccxt, WARMUP, ignored)
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUNDS):
            timed(with_adapter, PER_ROUND, ours)
            timed(with_ccxt, PER_ROUND, theirs)
        adapter.close()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()

    print(
        f"place_order round trip against the Binance emulator "
        f"({len(ours)} orders each; Python {platform.python_version()}, ccxt {ccxt.__version__})"
    )
    print(f"{'client':<34}{'median':>12}{'p99':>12}")
    for name, samples in (
        ("keybroker BinanceAdapter", ours),
        ("ccxt binance.create_order", theirs),
    ):
        print(f"{name:<34}{statistics.median(samples) * 1e3:>10.3f}ms{p99(samples) * 1e3:>10.3f}ms")
    extra = (statistics.median(ours) - statistics.median(theirs)) * 1e3
    verdict = "met" if extra <= 0 else "NOT met"
    print(f"adapter minus ccxt (median): {extra:+.3f} ms -> target (<= 0) {verdict}")


if __name__ == "__main__":
    main()
