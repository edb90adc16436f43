"""WebSockets through the gateway: added latency of a relayed frame and of an order, and fan-out.

    $ python bench/bench_websocket.py            # about 30 s, offline

Each server runs in its own process (no shared GIL): a minimal stream server
that stamps every frame with the wall clock (``time.time_ns``, comparable
across processes on one machine) and sends it to every bot connected at once,
the Binance emulator for orders, and the
gateway (real vault, fsync'd audit log, signing). The bots are ``websockets``
clients in this process. Printed, not asserted, with the targets beside:

1. A relayed market-data frame: delay from the stream server's send to the
   bot's receive, straight and through the gateway. Added = p50(through) -
   p50(direct). Target: p50 added <= 200 us.
2. A WebSocket API order round trip (order.place, LIMIT IOC below the market)
   at ~100 orders/s: the bot signing itself straight to the emulator, and the
   bot with a token through the gateway (classification, policy, limiter,
   durable intent row, signing, result row), alternating in rounds. Target:
   p50 added <= 1 ms (median of the rounds' differences). The emulator's and
   the limiter's order limits are lifted, as in bench_gateway.py: every order,
   both ways, is matched and answered 200 (a refused order is cheaper for the
   emulator and would flatter whichever side met the limit more often).
3. One stream to 45 bots at 100 frames/s: the stream server sending each
   frame to the 45 bots itself, and one stream through the gateway fanned out
   to them, alternating in rounds of 3 s. Frames delivered per second in all, the
   delay each bot sees (p50, p99), and the added p50 (median of the rounds'
   differences). The 45 bots share this one process, which bounds both.

    $ python bench/bench_websocket.py --parts relay,fanout   # skip the orders
    $ python bench/bench_websocket.py --parts orders --redis # the gateway on a redis-server

With ``--redis`` the gateway shares its counts and budgets through a local
redis-server (``bench_redis.py``'s gateway): an order's admission is then a
round trip to Redis, run beside its intent row's commit.

Every key and token here is fake.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets

from bench_gateway import (
    API_KEY,
    HIGH,
    SECRET,
    Server,
    _child,
    cpu_seconds,
    free_port,
    make_home,
    percentile,
    start_emulator,
    start_gateway,
)

_STREAM_SERVER = """
import asyncio, json, sys, time
import websockets
from websockets.asyncio.server import broadcast

settings = json.loads(sys.argv[1])
clients = set()

async def stream(connection):
    clients.add(connection)
    try:
        await connection.wait_closed()
    finally:
        clients.discard(connection)

async def ticker():
    # One frame for every connected bot at once, as an exchange pushes a stream: the
    # straight and the through measures then see the same frames at the same moments.
    while True:
        if clients:
            broadcast(clients, '{"t":%d,"e":"trade","s":"BTCUSDT"}' % time.time_ns())
        await asyncio.sleep(settings["interval_s"])

async def main():
    async with websockets.serve(stream, "127.0.0.1", settings["port"], compression=None):
        print("http://127.0.0.1:%d" % settings["port"], flush=True)
        task = asyncio.create_task(ticker())
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        task.cancel()

asyncio.run(main())
"""


def start_stream_server(interval_s: float) -> Server:
    return _child(_STREAM_SERVER, {"port": free_port(), "interval_s": interval_s})


def ws(url: str) -> str:
    return url.replace("http://", "ws://")


async def frame_delays(url: str, headers: dict[str, str], count: int) -> list[float]:
    """Microseconds from the server's stamp to this process receiving each frame."""
    delays: list[float] = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as bot:
        while len(delays) < count:
            frame = json.loads(await bot.recv())
            delays.append((time.time_ns() - frame["t"]) / 1000)
    return delays[count // 10 :]  # the first frames include connection set-up


def signed_ws_order(i: int) -> str:
    params = {
        "apiKey": API_KEY,
        "newClientOrderId": f"bench{i}",
        "price": "50000",
        "quantity": "0.001",
        "side": "BUY",
        "symbol": "BTCUSDT",
        "timeInForce": "IOC",
        "timestamp": str(int(time.time() * 1000)),
        "type": "LIMIT",
    }
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params)).encode()
    params["signature"] = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    return json.dumps({"id": i, "method": "order.place", "params": params})


def unsigned_ws_order(i: int) -> str:
    params = {
        "price": "50000",
        "quantity": "0.001",
        "side": "BUY",
        "symbol": "BTCUSDT",
        "timeInForce": "IOC",
        "type": "LIMIT",
    }
    return json.dumps({"id": i, "method": "order.place", "params": params})


async def order_round_trips(
    url: str, headers: dict[str, str], make: Any, count: int, rate: float
) -> list[float]:
    """Microseconds per order.place round trip, paced at ``rate`` per second."""
    times: list[float] = []
    async with websockets.connect(url, additional_headers=headers) as bot:
        for i in range(count):
            started = time.perf_counter()
            await bot.send(make(i))
            while (answer := json.loads(await bot.recv())).get("id") != i:
                pass
            elapsed = time.perf_counter() - started
            if answer.get("status") != 200:  # compare like with like: every order matched
                raise RuntimeError(f"order answered {answer.get('status')}: {answer}")
            times.append(elapsed * 1e6)
            await asyncio.sleep(max(0.0, 1 / rate - elapsed))
    return times[count // 10 :]


async def fan_out(url: str, headers: dict[str, str], bots: int, seconds: float) -> list[float]:
    """Microseconds from the stamp to each of ``bots`` bots receiving each frame."""
    delays: list[float] = []

    async def one() -> None:
        async with websockets.connect(url, additional_headers=headers, max_size=None) as bot:
            deadline = time.monotonic() + seconds
            async with asyncio.timeout(seconds + 5):  # one timer, not a task per frame
                while time.monotonic() < deadline:
                    frame = json.loads(await bot.recv())
                    delays.append((time.time_ns() - frame["t"]) / 1000)

    await asyncio.gather(*(one() for _ in range(bots)))
    return delays[len(delays) // 10 :]  # the first frames include connection set-up


def row(name: str, values: list[float], target: str = "") -> str:
    return (
        f"  {name:<34} p50 {percentile(values, 50):9.0f} us   "
        f"p99 {percentile(values, 99):9.0f} us   {target}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2800, help="relayed frames in all")
    parser.add_argument("--rounds", type=int, default=7, help="alternating relay rounds")
    parser.add_argument("--orders", type=int, default=500, help="orders each way, in all")
    parser.add_argument("--order-rounds", type=int, default=5, help="alternating order rounds")
    parser.add_argument("--fanout-rounds", type=int, default=2, help="alternating, 3 s each")
    parser.add_argument(
        "--parts", default="relay,orders,fanout", help="which measures, comma-separated"
    )
    parser.add_argument("--redis", action="store_true", help="the gateway on a redis-server")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        streams = start_stream_server(interval_s=0.002)
        fast = start_stream_server(interval_s=0.01)
        unlimited = {"spot_orders_per_10s": HIGH, "spot_orders_per_day": HIGH, "weight_limit": HIGH}
        emulator = start_emulator(**unlimited)
        credentials = {"st": streams.url, "fan": fast.url, "bn": emulator.url}
        token = make_home(home, credentials, 1)[0]
        no_limits = {name: HIGH for name in ("REQUEST_WEIGHT", "RAW_REQUESTS", "ORDERS_10S")}
        no_limits["ORDERS_1D"] = HIGH
        store = None
        if args.redis:
            from bench_redis import start_gateway as start_shared_gateway
            from bench_redis import start_redis

            store, redis_url = start_redis(Path(folder))
            gateway = start_shared_gateway(home / "vault.db", home / "audit.db", redis_url)
        else:
            gateway = start_gateway(home / "vault.db", home / "audit.db", no_limits)
        auth = {"X-Keybroker-Token": token}
        try:
            stream = "/ws/btcusdt@trade"
            if "relay" in parts:
                relay(args, streams.url, gateway.url, auth, stream)
            if "orders" in parts:
                orders(args, emulator.url, gateway.url, auth, gateway.process.pid)
            if "fanout" in parts:
                fanout(args, fast.url, gateway.url, auth, stream)
        finally:
            for server in (gateway, emulator, streams, fast):
                server.stop()
            if store is not None:
                store.terminate()
                store.wait()


def relay(
    args: argparse.Namespace, streams: str, gateway: str, auth: dict[str, str], stream: str
) -> None:
    # Rounds alternate straight and through, so drift in the machine's load falls on
    # both alike; the added p50 is the median of the rounds' differences.
    direct: list[float] = []
    through: list[float] = []
    differences: list[float] = []
    per_round = max(100, args.frames // args.rounds)
    for _ in range(args.rounds):
        one = asyncio.run(frame_delays(ws(streams) + stream, {}, per_round))
        two = asyncio.run(frame_delays(ws(gateway) + "/st" + stream, auth, per_round))
        differences.append(percentile(two, 50) - percentile(one, 50))
        direct += one
        through += two
    added = statistics.median(differences)
    print(f"1. a relayed market-data frame ({args.rounds} alternating rounds)")
    print(row("straight from the stream server", direct))
    print(row("through the gateway", through))
    rounds = ", ".join(f"{d:.0f}" for d in differences)
    print(f"  added p50 {added:.0f} us, median of the rounds ({rounds})")
    print("  (target <= 200 us)")


def orders(
    args: argparse.Namespace, emulator: str, gateway: str, auth: dict[str, str], pid: int
) -> None:
    # Rounds alternate straight and through, as for the relay; each round is a new
    # connection both ways (its first tenth left out).
    api = "/ws-api/v3"
    direct_orders: list[float] = []
    through_orders: list[float] = []
    differences: list[float] = []
    per_round = max(50, args.orders // args.order_rounds)
    cpu = 0.0  # the gateway's, over the rounds through it (its connection set-up included)
    for _ in range(args.order_rounds):
        one = asyncio.run(
            order_round_trips(ws(emulator) + api, {}, signed_ws_order, per_round, 100)
        )
        spent = cpu_seconds(pid)
        two = asyncio.run(
            order_round_trips(ws(gateway) + "/bn" + api, auth, unsigned_ws_order, per_round, 100)
        )
        cpu += cpu_seconds(pid) - spent
        differences.append(percentile(two, 50) - percentile(one, 50))
        direct_orders += one
        through_orders += two
    print(f"2. an order over the WebSocket API, ~100 orders/s ({args.order_rounds} rounds)")
    print(row("straight to the emulator (bot signs)", direct_orders))
    print(row("through the gateway (token only)", through_orders))
    added_p99 = percentile(through_orders, 99) - percentile(direct_orders, 99)
    rounds = ", ".join(f"{d:.0f}" for d in differences)
    print(f"  added p50 {statistics.median(differences):.0f} us, median of the rounds ({rounds})")
    print(f"  (target p50 <= 1000 us); added p99 {added_p99:.0f} us")
    per_order = cpu / (per_round * args.order_rounds) * 1e6
    print(f"  the gateway's CPU per order: {per_order:.0f} us")


def fanout(
    args: argparse.Namespace, streams: str, gateway: str, auth: dict[str, str], stream: str
) -> None:
    seconds = 3.0
    direct: list[float] = []
    through: list[float] = []
    differences: list[float] = []
    for _ in range(args.fanout_rounds):
        one = asyncio.run(fan_out(ws(streams) + stream, {}, 45, seconds))
        two = asyncio.run(fan_out(ws(gateway) + "/fan" + stream, auth, 45, seconds))
        differences.append(percentile(two, 50) - percentile(one, 50))
        direct += one
        through += two
    total = args.fanout_rounds * seconds * 0.9  # the first tenth of each round is left out
    print(f"3. one stream to 45 bots, ~100 frames/s ({args.fanout_rounds} alternating rounds)")
    print(f"  frames delivered: straight {len(direct) / total:,.0f}/s, ", end="")
    print(f"through the gateway {len(through) / total:,.0f}/s in all (at most 4,500/s)")
    print(row("straight: the stream server to each", direct))
    print(row("through: one stream, fanned out", through))
    rounds = ", ".join(f"{d:.0f}" for d in differences)
    print(f"  added p50 {statistics.median(differences):.0f} us, median of the rounds ({rounds})")


if __name__ == "__main__":
    sys.exit(main())
