"""Steps 2-4 of an order alone: ``pipeline.judge`` in process, microseconds per order.

    $ python bench/bench_judge.py                     # hot loop and 100 orders/s, all exchanges
    $ python bench/bench_judge.py --exchange binance --profile   # where Binance's time goes
    $ PYTHONPATH=/tmp/base/src python bench/bench_judge.py       # another checkout's code

``judge`` is what the gateway does to an order before the audit log and the
exchange see it: the credential and its policy from the vault, the outgoing
request, classification, the order's intents (a client order id added where
the bot sent none), the rate-limit charges, the policy and the order count.
It runs on the event loop for every order, REST or WebSocket, so its time is
CPU every order pays (issue 5: <= 1 ms added at p50, >= 1,000 orders/s on 2
cores; the gateway's whole CPU per order was ~1.7 ms, judge ~0.35-0.6 ms).

Here a real gateway (``create_app``'s lifespan: a real vault, audit log and
limiter) judges the same limit order, without a client order id, of each
exchange that has order tools, from a real bot token. Binance's credential
and policy come from the vault as in the gateway; the other exchanges' are
handed in as ``judge``'s ``read`` (their keys need shapes a bench need not
make; nothing is signed or sent). Rounds alternate between exchanges.
"Hot" is a tight loop; "paced" sleeps 10 ms between orders (100 orders/s),
where caches are colder, as in a gateway at that rate.

Printed, not asserted; the machine is shared, so compare runs of two
checkouts made back to back (PYTHONPATH) rather than absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path

import keybroker
from keybroker.crypto.kdf import Argon2idParams
from keybroker.gateway import GatewayConfig, create_app, pipeline
from keybroker.gateway.pipeline import Incoming, Job
from keybroker.gateway.state import Gateway
from keybroker.model import Credential
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import BotToken, KeyMaterial, Vault

PASSPHRASE = "bench vault passphrase, not real"
UPSTREAM = "http://127.0.0.1:9"  # never contacted: judge sends nothing
JSON = [("content-type", "application/json")]
FORM = [("content-type", "application/x-www-form-urlencoded")]
POLICY = Policy(
    scopes=("read", "trade"),
    symbols=("BTCUSDT", "BTC-USDT", "XBTUSD", "BTC-USD", "tBTCUSD", "BTC_USDT"),
    allow_production=True,
)

# exchange -> (method, path, content headers, body): one limit order without a client id.
ORDERS: dict[str, tuple[str, bytes, list[tuple[str, str]], bytes]] = {
    "binance": (
        "POST",
        b"/api/v3/order",
        FORM,
        b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.001&price=50000",
    ),
    "okx": (
        "POST",
        b"/api/v5/trade/order",
        JSON,
        b'{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit",'
        b'"sz":"0.001","px":"50000"}',
    ),
    "bybit": (
        "POST",
        b"/v5/order/create",
        JSON,
        b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
        b'"qty":"0.010","price":"25000.50"}',
    ),
    "kraken": (
        "POST",
        b"/0/private/AddOrder",
        FORM,
        b"pair=XBTUSD&type=buy&ordertype=limit&price=25000.5&volume=0.0100",
    ),
    "coinbase": (
        "POST",
        b"/api/v3/brokerage/orders",
        JSON,
        b'{"product_id":"BTC-USD","side":"BUY","order_configuration":'
        b'{"limit_limit_gtc":{"base_size":"0.010","limit_price":"25000.50"}}}',
    ),
    "coinbase-exchange": (
        "POST",
        b"/orders",
        JSON,
        b'{"product_id":"BTC-USD","side":"buy","type":"limit","size":"0.010","price":"25000.50"}',
    ),
    "bitfinex": (
        "POST",
        b"/v2/auth/w/order/submit",
        JSON,
        b'{"type":"EXCHANGE LIMIT","symbol":"tBTCUSD","amount":"0.010","price":"25000.5"}',
    ),
    "poloniex": (
        "POST",
        b"/orders",
        JSON,
        b'{"symbol":"BTC_USDT","side":"BUY","type":"LIMIT","quantity":"0.010","price":"25000.50"}',
    ),
}


def make_vault(path: Path) -> str:
    """A vault with Binance's credential, a trading policy and one bot token; the token."""
    vault = Vault.create(
        path, Secret(PASSPHRASE), kdf=Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1)
    )
    vault.add(
        "binance",
        "binance",
        KeyMaterial("bench-binance-key-not-real", Secret("bench-binance-secret-not-real")),
        environment="production",
        base_url=UPSTREAM,
        scopes=("read", "trade"),
    )
    vault.set_policy("binance", POLICY.to_json())
    token = vault.create_token("bench", ["binance"], expires_at=None, max_orders_per_minute=None)
    vault.close()
    return token[0].reveal_text()


@asynccontextmanager
async def running_gateway(root: Path) -> AsyncIterator[tuple[Gateway, BotToken]]:
    token = make_vault(root / "vault.db")
    vault = Vault.open(root / "vault.db")
    vault.unlock(Secret(PASSPHRASE))
    app = create_app(vault, GatewayConfig(audit_path=root / "audit.db"))
    async with app.router.lifespan_context(app) as state:
        assert state is not None
        gateway: Gateway = state["gateway"]
        yield gateway, gateway.access.check_token(token)
    vault.close()


def judge_one(
    gateway: Gateway, bot: BotToken, exchange: str
) -> Callable[[], Coroutine[object, object, object]]:
    method, path, headers, body = ORDERS[exchange]
    passphrase = Secret("bench-passphrase-not-real")
    read = None
    if exchange != "binance":
        credential = Credential(
            exchange,
            exchange,
            "bench-key-not-real",
            Secret("YmVuY2gtc2VjcmV0LW5vdC1yZWFs"),
            passphrase,
            environment="production",
            base_url=UPSTREAM,
        )
        read = (credential, POLICY)
    incoming = Incoming(method, exchange, path, b"", list(headers), body, bot)

    async def once() -> object:
        return await pipeline.judge(gateway, incoming, time.perf_counter(), read)

    return once


async def measure(
    gateway: Gateway, bot: BotToken, exchanges: list[str], orders: int, rounds: int, pace: float
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in exchanges}
    makers = {name: judge_one(gateway, bot, name) for name in exchanges}
    for name in exchanges:  # warm up; and an order that is refused is a broken bench
        job = await makers[name]()
        if not isinstance(job, Job) or not job.intents:
            raise SystemExit(
                f"{name}: the bench order was not allowed: {getattr(job, 'body', job)!r}"
            )
    for _ in range(rounds):
        for name in exchanges:
            once = makers[name]
            for _ in range(orders):
                if pace:
                    await asyncio.sleep(pace)
                start = time.perf_counter()
                await once()
                times[name].append((time.perf_counter() - start) * 1e6)
    return times


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_gateway(Path(tmp)) as (gateway, bot):
            if args.profile:
                once = judge_one(gateway, bot, args.exchange[0])
                await once()
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(args.orders):
                    await once()
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
                stats.print_stats(45)
                print(out.getvalue())
                return
            hot = await measure(gateway, bot, args.exchange, args.orders, args.rounds, 0.0)
            paced = await measure(gateway, bot, args.exchange, args.paced_orders, args.rounds, 0.01)
    print(
        f"{'exchange':<18} {'hot p50 (µs)':>13} {'hot mean':>9}"
        f" {'paced p50':>10} {'paced mean':>11}"
    )
    for name in args.exchange:
        print(
            f"{name:<18} {statistics.median(hot[name]):>13.1f} {statistics.fmean(hot[name]):>9.1f}"
            f" {statistics.median(paced[name]):>10.1f} {statistics.fmean(paced[name]):>11.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchange", action="append", choices=sorted(ORDERS))
    parser.add_argument("--orders", type=int, default=2000, help="hot orders per round")
    parser.add_argument("--paced-orders", type=int, default=100, help="paced orders per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the first exchange")
    args = parser.parse_args()
    args.exchange = args.exchange or list(ORDERS)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"judge bench - Python {sys.version.split()[0]}, keybroker from "
        f"{Path(keybroker.__file__).parent}, load average {load}"
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
