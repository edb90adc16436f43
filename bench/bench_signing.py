"""How long signing one order takes: keybroker's signers beside ccxt's and beside a bare HMAC.

    $ python bench/bench_signing.py

For a Binance spot order (HMAC) and an OKX order, times in the same run:
``keybroker.exchanges.get_profile(...).sign(...)`` on an httpx.Request,
ccxt's ``sign()`` for the same request (its clock frozen, throwaway keys),
and a bare HMAC over the exact string our signer signs (the floor: no
signer can be cheaper than its MAC). Prints the median µs per call and the
ratios against the targets: at least 3x faster than ccxt, within 4x of the
floor. Times are CPU time of this process, and rounds interleave the three,
so other work on a busy machine neither counts nor favours one of them.
Exits 1 if a target is missed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import ccxt
import httpx

from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret

NOW_MS = 1_700_000_000_000
ROUNDS = 31
TARGET_VS_CCXT = 3.0
TARGET_VS_FLOOR = 4.0

# Throwaway secrets: Binance's documented example key, and an obviously fake OKX key.
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
OKX_KEY = "00000000-0000-0000-0000-000000000000"
OKX_SECRET = "FAKE0000000000000000000000000000"
OKX_PASSPHRASE = "not-a-real-passphrase"


@dataclass
class Case:
    name: str
    ours: Callable[[], object]
    ccxt: Callable[[], object]
    floor: Callable[[], object]


def binance_case() -> Case:
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01",
        "price": "35000.5",
        "newClientOrderId": "bench-0001",
        "recvWindow": "5000",
    }
    exchange = ccxt.binance({"apiKey": BINANCE_KEY, "secret": BINANCE_SECRET})
    exchange.nonce = lambda: NOW_MS
    exchange.options["recvWindow"] = None  # send the request's own recvWindow only

    body = "&".join(f"{key}={value}" for key, value in params.items()).encode("ascii")
    request = httpx.Request(
        "POST",
        "https://api.binance.com/api/v3/order",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    credential = Credential("bench", "binance", BINANCE_KEY, Secret(BINANCE_SECRET))
    profile = get_profile("binance")
    signed = profile.sign(request, credential, now_ms=NOW_MS)
    payload = signed.read().rsplit(b"&signature=", 1)[0]
    key = BINANCE_SECRET.encode("ascii")

    # The same order: ccxt puts timestamp first, we append it, the rest is equal.
    theirs = exchange.sign("order", ["private"], "POST", dict(params))
    ccxt_payload = f"timestamp={NOW_MS}&{body.decode()}"
    ccxt_signature = hmac.new(key, ccxt_payload.encode(), hashlib.sha256).hexdigest()
    assert theirs["body"] == f"{ccxt_payload}&signature={ccxt_signature}", "ccxt changed"
    assert payload == body + b"&timestamp=%d" % NOW_MS

    return Case(
        name="binance order (HMAC)",
        ours=lambda: profile.sign(request, credential, now_ms=NOW_MS),
        ccxt=lambda: exchange.sign("order", ["private"], "POST", dict(params)),
        floor=lambda: hmac.new(key, payload, hashlib.sha256).hexdigest(),
    )


def okx_case() -> Case:
    params = {
        "instId": "BTC-USDT",
        "tdMode": "cash",
        "side": "buy",
        "ordType": "limit",
        "sz": "0.01",
        "px": "35000.5",
        "clOrdId": "bench0001",
        "tag": "bench",
    }
    exchange = ccxt.okx({"apiKey": OKX_KEY, "secret": OKX_SECRET, "password": OKX_PASSPHRASE})
    exchange.nonce = lambda: NOW_MS
    exchange.milliseconds = lambda: NOW_MS

    theirs = exchange.sign("trade/order", ["private"], "POST", dict(params))
    request = httpx.Request(
        "POST",
        theirs["url"],
        content=theirs["body"].encode("utf-8"),
        headers={"Content-Type": "application/json"},
    )
    credential = Credential(
        "bench",
        "okx",
        OKX_KEY,
        Secret(OKX_SECRET),
        passphrase=Secret(OKX_PASSPHRASE),
        environment="production",
    )
    profile = get_profile("okx")
    signed = profile.sign(request, credential, now_ms=NOW_MS)
    assert signed.headers["OK-ACCESS-SIGN"] == theirs["headers"]["OK-ACCESS-SIGN"], (
        "our OKX signature differs from ccxt's for the same request"
    )
    prehash = (
        signed.headers["OK-ACCESS-TIMESTAMP"] + "POST" + request.url.raw_path.decode()
    ).encode("ascii") + request.read()
    key = OKX_SECRET.encode("ascii")

    return Case(
        name="okx order (HMAC)",
        ours=lambda: profile.sign(request, credential, now_ms=NOW_MS),
        ccxt=lambda: exchange.sign("trade/order", ["private"], "POST", dict(params)),
        floor=lambda: base64.b64encode(hmac.new(key, prehash, hashlib.sha256).digest()),
    )


def calibrate(function: Callable[[], object]) -> int:
    """Calls per timing sample so that one sample lasts about 20 ms of CPU time."""
    number = 1
    while True:
        start = time.process_time()
        for _ in range(number):
            function()
        if time.process_time() - start > 0.02:
            return number
        number *= 2


def sample(function: Callable[[], object], number: int) -> float:
    # CPU time of this process: other work on a busy machine does not count.
    start = time.process_time()
    for _ in range(number):
        function()
    return (time.process_time() - start) / number * 1e6


def run(case: Case) -> bool:
    functions = {"ours": case.ours, "ccxt": case.ccxt, "floor": case.floor}
    numbers = {name: calibrate(function) for name, function in functions.items()}
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(ROUNDS):
        for name, function in functions.items():
            samples[name].append(sample(function, numbers[name]))
    median = {name: statistics.median(values) for name, values in samples.items()}
    vs_ccxt = median["ccxt"] / median["ours"]
    vs_floor = median["ours"] / median["floor"]
    ok = vs_ccxt >= TARGET_VS_CCXT and vs_floor <= TARGET_VS_FLOOR
    print(f"{case.name}")
    print(f"  keybroker sign   {median['ours']:8.2f} µs")
    print(f"  ccxt sign()      {median['ccxt']:8.2f} µs")
    print(f"  bare HMAC        {median['floor']:8.2f} µs")
    print(
        f"  ccxt / keybroker {vs_ccxt:8.2f}x  (target >= {TARGET_VS_CCXT:g}x)"
        f"  {'ok' if vs_ccxt >= TARGET_VS_CCXT else 'MISSED'}"
    )
    print(
        f"  keybroker / HMAC {vs_floor:8.2f}x  (target <= {TARGET_VS_FLOOR:g}x)"
        f"  {'ok' if vs_floor <= TARGET_VS_FLOOR else 'MISSED'}"
    )
    return ok


def main() -> int:
    print(
        f"median CPU time of {ROUNDS} interleaved rounds; "
        f"ccxt {ccxt.__version__}, httpx {httpx.__version__}"
    )
    all_ok = True
    for build in (binance_case, okx_case):
        try:
            case = build()
        except NotImplementedError as exc:
            print(f"{build.__name__}: signer not implemented yet ({exc})")
            all_ok = False
            continue
        all_ok = run(case) and all_ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
