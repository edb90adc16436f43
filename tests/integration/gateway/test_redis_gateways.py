"""Several `keybroker serve --redis` processes in front of one emulator share one account's state.

Each gateway is a real process with its own home (its own copy of the vault,
as on separate hosts) and its own audit log; they share a real redis-server
on a free loopback port. Nothing here is mocked but the exchange, which is
the project's emulator (or, for Kraken's nonces, a server that checks them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from gateway_testkit import (
    EMULATOR_KEYS,
    LIMIT_BUY,
    PASSPHRASE,
    TRADER,
    Drained,
    Emulator,
    StartEmulator,
    assert_no_secret,
    make_vault,
    new_token,
    serve_process,
    wait_until,
)

from keybroker.audit import read_rows, verify_chain
from keybroker.emulator import EmulatorConfig, create_app, serve_in_thread
from keybroker.emulator.faults import FaultSpec
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault
from redis_server import PASSWORD, RedisServer, StartRedis

KRAKEN_SECRET = "dGVzdC1rcmFrZW4tc2VjcmV0LW5vdC1yZWFsLUNBTkFSWQ=="  # base64 of an obvious fake
KRAKEN_POLICY = Policy(scopes=("read", "trade"), symbols=("XBTUSD",))


class Served:
    """One `keybroker serve --redis` process: its URL, stopped with SIGTERM at the end."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.redis_url = args[args.index("--redis") + 1] if "--redis" in args else ""
        self.process = serve_process(home, "--port", "0", *args)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.process.stdout.readline()  # the socket line
        self.output = Drained(self.process)  # these run long and log every alert
        self.stderr = ""
        if not self.url.startswith("http"):
            self.stop()
            raise AssertionError(f"serve did not start: {self.stderr}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.stderr = self.output.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.stderr = self.output.wait(10)
        return self.stderr


class Cluster:
    """Gateways on copies of one vault (a home each), all on one Redis."""

    def __init__(self, homes: list[Path], gateways: list[Served], tokens: dict[str, str]) -> None:
        self.homes = homes
        self.gateways = gateways
        self.tokens = tokens

    def post_order(self, index: int, token: str) -> httpx.Response:
        return httpx.post(
            f"{self.gateways[index].url}/bn/api/v3/order",
            data=LIMIT_BUY,
            headers={"X-Keybroker-Token": token},
            timeout=10,
        )

    def get_ticker(self, index: int, token: str) -> httpx.Response:
        """A cheap read (weight 2): the tests before the budget test leave that budget whole."""
        return httpx.get(
            f"{self.gateways[index].url}/bn/api/v3/ticker/price",
            params={"symbol": "BTCUSDT"},
            headers={"X-Keybroker-Token": token},
            timeout=10,
        )

    def get_status(self, index: int, token: str) -> httpx.Response:
        """The gateway's own status: the token is checked, nothing is sent upstream."""
        return httpx.get(
            f"{self.gateways[index].url}/_/status", headers={"X-Keybroker-Token": token}, timeout=10
        )

    def get_account(self, index: int, token: str) -> httpx.Response:
        return httpx.get(
            f"{self.gateways[index].url}/bn/api/v3/account",
            headers={"X-Keybroker-Token": token},
            timeout=10,
        )


def copy_home(source: Path, target: Path) -> Path:
    target.mkdir(mode=0o700, parents=True)
    shutil.copyfile(source / "vault.db", target / "vault.db")
    (target / "vault.db").chmod(0o600)
    return target


def start_cluster(
    directory: Path,
    credentials: dict[str, tuple[str, str]],
    redis: RedisServer,
    *,
    bots: int = 1,
    size: int = 3,
) -> Cluster:
    """``size`` gateways on copies of one vault (a home each, as on separate hosts), one Redis."""
    first = directory / "host0"
    vault = make_vault(first, credentials, policies={name: TRADER for name in credentials})
    tokens = {
        f"bot{i:02d}": new_token(vault, f"bot{i:02d}", list(credentials)) for i in range(bots)
    }
    vault.close()
    homes = [first] + [copy_home(first, directory / f"host{i}") for i in range(1, size)]
    copy_home(first, directory / "spare")  # a host with the vault and no gateway
    gateways: list[Served] = []
    try:
        for home in homes:
            gateways.append(Served(home, "--redis", redis.url, "--gateways", str(size)))
    except BaseException:
        for served in gateways:
            served.stop()
        raise
    return Cluster(homes, gateways, tokens)


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, Cluster]]:
    """A Binance emulator and three gateways on one password-protected Redis, 46 bots.

    Shared by the tests below to start the processes once; each test resets
    the emulator, and leaves no halt behind. bot45 is the one revoked.
    """
    directory = tmp_path_factory.mktemp("three")
    url, stop = serve_in_thread(create_app("binance", [EMULATOR_KEYS["binance"]]))
    redis = RedisServer.start(directory / "redis", password=PASSWORD)
    try:
        world = start_cluster(directory, {"bn": ("binance", url)}, redis, bots=46)
        try:
            yield Emulator("binance", url), world
        finally:
            for served in world.gateways:
                served.stop()
    finally:
        redis.stop()
        stop()


@pytest.fixture
def fresh(three: tuple[Emulator, Cluster]) -> tuple[Emulator, Cluster]:
    exchange, world = three
    httpx.post(f"{exchange.url}/__emulator__/reset", timeout=10).raise_for_status()
    return exchange, world


def unlocked(home: Path) -> Vault:
    vault = Vault.open(home / "vault.db")
    vault.unlock(Secret(PASSPHRASE))
    return vault


@pytest.mark.slow
def test_a_halt_on_one_host_stops_orders_on_every_gateway_and_resume_lifts_it(
    fresh: tuple[Emulator, Cluster],
) -> None:
    exchange, world = fresh
    token = world.tokens["bot00"]
    for index in range(3):
        assert world.post_order(index, token).status_code == 200

    vault = Vault.open(
        world.homes[0] / "vault.db"
    )  # `keybroker halt` on host 0 needs no passphrase
    vault.halt("bn", reason="runaway bot")
    vault.close()
    halted_at = time.monotonic()

    def stopped_everywhere() -> bool:
        answers = [world.post_order(index, token) for index in (1, 2)]
        return all(a.status_code == 403 and a.json()["rule"] == "kill_switch" for a in answers)

    assert wait_until(stopped_everywhere, timeout=3)
    assert time.monotonic() - halted_at < 1.0 + 0.5  # within a second (plus this test's own calls)
    orders_before = len(exchange.requests_to("/api/v3/order", "POST"))
    for index in range(3):
        refused = world.post_order(index, token)
        assert refused.status_code == 403 and refused.json()["rule"] == "kill_switch"
        assert world.get_ticker(index, token).status_code == 200  # reads still pass
    assert len(exchange.requests_to("/api/v3/order", "POST")) == orders_before

    vault = unlocked(world.homes[0])
    vault.resume("bn")
    vault.close()
    assert wait_until(lambda: world.post_order(2, token).status_code == 200, timeout=3)
    assert world.post_order(1, token).status_code == 200


def keybroker(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m keybroker --home HOME ARGS`` with the passphrase in the environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYBROKER_")}
    environment["KEYBROKER_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-m", "keybroker", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_halt_and_resume_with_redis_from_a_host_without_a_gateway(
    fresh: tuple[Emulator, Cluster],
) -> None:
    exchange, world = fresh
    token = world.tokens["bot00"]
    spare = world.homes[0].parent / "spare"
    redis_url = world.gateways[0].redis_url
    halted = keybroker(spare, "halt", "bn", "--reason", "from the laptop", "--redis", redis_url)
    assert halted.returncode == 0, halted.stderr
    assert "Published to redis://***@127.0.0.1:" in halted.stdout
    assert PASSWORD not in halted.stdout + halted.stderr
    for index in range(3):
        refused = world.post_order(index, token)  # each order reads the shared halts afresh
        assert refused.status_code == 403 and refused.json()["rule"] == "kill_switch"

    resumed = keybroker(spare, "resume", "bn", "--redis", redis_url)
    assert resumed.returncode == 0, resumed.stderr
    for index in range(3):
        assert world.post_order(index, token).status_code == 200
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 3


@pytest.mark.slow
def test_a_token_revoked_on_one_host_is_refused_by_every_gateway_within_a_second(
    fresh: tuple[Emulator, Cluster],
) -> None:
    _, world = fresh
    revoked, kept = world.tokens["bot45"], world.tokens["bot00"]
    for index in range(3):
        assert world.get_status(index, revoked).status_code == 200

    vault = unlocked(world.homes[2])  # the other hosts' vault copies still list it as active
    vault.revoke_token("bot45")
    vault.close()
    began = time.monotonic()
    assert wait_until(
        lambda: all(world.get_status(i, revoked).status_code == 401 for i in range(3)), timeout=3
    )
    assert time.monotonic() - began < 1.5
    for index in range(3):
        assert world.get_status(index, kept).status_code == 200


def _full_speed(urls: list[str], tokens: list[str], until: float, enough: int) -> dict[str, int]:
    """Every bot reads its account as fast as answers come, until ``until`` (time.time()), or
    one second after ``enough`` answers were 200 (the budget is spent; more only tests refusal)."""
    seen = {"200": 0, "gateway 429": 0, "other": 0}
    stop = [until]

    async def bot(url: str, token: str) -> None:
        async with httpx.AsyncClient(base_url=url, headers={"X-Keybroker-Token": token}) as client:
            while time.time() < stop[0]:
                # The gateways answer within their 10 s queue deadline; late in a full CI run
                # on 2 cores one answer once took longer than 15 s, so the client waits 30 s.
                answer = await client.get("/bn/api/v3/account", timeout=30)
                if answer.status_code == 200:
                    seen["200"] += 1
                    if seen["200"] == enough:
                        stop[0] = min(stop[0], time.time() + 1.0)
                elif answer.status_code == 429 and "x-keybroker-error" in answer.headers:
                    seen["gateway 429"] += 1
                    await asyncio.sleep(0.05)
                else:
                    seen["other"] += 1

    async def main() -> None:
        await asyncio.gather(*(bot(urls[i % len(urls)], token) for i, token in enumerate(tokens)))

    asyncio.run(main())
    return seen


def start_of_a_minute(latest_second: float) -> int:
    """Wait, if need be, until the budget's window is open and ``latest_second`` is not past."""
    second = time.time() % 60
    if second > latest_second or second < 1.5:  # the fixed window opens its margin (1 s) late
        time.sleep((61.5 - second) % 60)
    return int(time.time() // 60)


@pytest.mark.slow
def test_45_bots_over_3_gateways_share_the_weight_budget_without_a_429(
    fresh: tuple[Emulator, Cluster],
) -> None:
    exchange, world = fresh  # Binance's 1,200 weight per calendar minute
    bots = [world.tokens[f"bot{i:02d}"] for i in range(45)]
    # The run starts early in a calendar minute (Binance's window), with its budget open; the
    # tests before this one spent at most a few dozen of its 1,200. Only that minute is counted.
    minute = start_of_a_minute(latest_second=30)
    urls = [g.url for g in world.gateways]
    seen = _full_speed(urls, bots, until=minute * 60 + 57, enough=60)
    entries = exchange.journal()
    refused = [e for e in entries if e["status"] in (418, 429)]
    accepted = sum(
        20
        for e in entries
        if e["status"] == 200
        and e["path"] == "/api/v3/account"
        and e["time_ms"] // 60_000 == minute
    )
    assert refused == [], seen
    assert accepted >= 0.9 * 1200, (accepted, seen)
    assert accepted <= 1200
    assert seen["other"] == 0, seen
    # every gateway served its share of the bots, and alerted each bot's refusals once
    for served in world.gateways:
        alerted = served.output.stderr().count("alert keybroker RateLimited")
        assert alerted <= len(bots) // len(world.gateways), (alerted, seen)
        status = httpx.get(
            f"{served.url}/_/status", headers={"X-Keybroker-Token": world.tokens["bot00"]}
        ).json()
        assert status["coordination"]["backend"] == "redis"
        assert status["requests"]["forwarded"] > 0


@pytest.mark.slow
def test_identical_public_gets_on_two_gateways_reach_the_exchange_once(
    tmp_path: Path, emulator: StartEmulator, redis_clean: RedisServer
) -> None:
    # The exchange answers after 300 ms, so the two GETs are in flight together.
    exchange = emulator("binance", EmulatorConfig(faults=FaultSpec.parse("latency=300ms")))
    world = start_cluster(tmp_path, {"bn": ("binance", exchange.url)}, redis_clean, size=2)
    try:
        token = world.tokens["bot00"]
        answers: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda i=i: answers.append(world.get_ticker(i, token)))
            for i in (0, 1, 0, 1)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.status_code for a in answers] == [200] * 4
        assert len({a.content for a in answers}) == 1
        assert len(exchange.requests_to("/api/v3/ticker/price")) == 1
        # Within the public cache's second (serve's default 1000 ms) an identical GET on
        # either gateway is answered without the exchange; after it, it is fetched again.
        assert world.get_ticker(1, token).status_code == 200
        assert len(exchange.requests_to("/api/v3/ticker/price")) == 1
        time.sleep(1.2)
        assert world.get_ticker(1, token).status_code == 200
        assert len(exchange.requests_to("/api/v3/ticker/price")) == 2
    finally:
        for served in world.gateways:
            served.stop()


class NonceChecker:
    """A Kraken stand-in that refuses a nonce not above the last one it saw (EAPI:Invalid nonce)."""

    def __init__(self) -> None:
        self.nonces: list[int] = []
        self.refused = 0
        lock = threading.Lock()
        checker = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                nonce = int(form["nonce"][0])
                with lock:
                    fresh = not checker.nonces or nonce > max(checker.nonces)
                    checker.nonces.append(nonce)
                    checker.refused += not fresh
                body = b'{"error":[],"result":{}}' if fresh else b'{"error":["EAPI:Invalid nonce"]}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_nonces_are_strictly_increasing_across_gateways_and_a_redis_restart(
    tmp_path: Path, start_redis: StartRedis
) -> None:
    redis = start_redis(password=PASSWORD)
    checker = NonceChecker()
    home = tmp_path / "host0"
    vault = make_vault(home, {})
    vault.add(
        "kr",
        "kraken",
        KeyMaterial("test-kraken-key-not-real", Secret(KRAKEN_SECRET)),
        base_url=checker.url,
        scopes=("read", "trade"),
    )
    vault.set_policy("kr", KRAKEN_POLICY.to_json())
    token = new_token(vault, "bot1", ["kr"])
    vault.close()
    homes = [home, copy_home(home, tmp_path / "host1"), copy_home(home, tmp_path / "host2")]
    gateways = [Served(h, "--redis", redis.url, "--gateways", "3") for h in homes]
    try:
        headers = {"X-Keybroker-Token": token}

        def balances(rounds: int) -> None:
            for turn in range(rounds * 3):
                answer = httpx.post(
                    f"{gateways[turn % 3].url}/kr/0/private/Balance",
                    data={"nonce": "1"},
                    headers=headers,
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"error": [], "result": {}}

        balances(4)  # Kraken's CALLS budget is 15, draining over 45 s: stay within it
        redis.kill()
        refused = httpx.post(
            f"{gateways[0].url}/kr/0/private/Balance", data={"nonce": "1"}, headers=headers
        )
        assert refused.status_code == 503
        assert refused.json()["error"] == "coordination_unavailable"
        redis.restart()  # empty: every nonce counter is gone

        def answered() -> bool:
            try:
                url = f"{gateways[1].url}/kr/0/private/Balance"
                return httpx.post(url, data={"nonce": "1"}, headers=headers).status_code == 200
            except httpx.TimeoutException:  # a slow first answer on a loaded machine: again
                return False

        assert wait_until(answered, timeout=20)

        def available(gateway: Served) -> bool:
            status = httpx.get(f"{gateway.url}/_/status", headers=headers, timeout=10).json()
            return bool(status["coordination"]["available"])

        # Each gateway notices the store is back on its own probe; wait for all three.
        assert wait_until(lambda: all(available(g) for g in gateways), timeout=10)
        balances(4)  # the restarted store's budgets are empty again
    finally:
        stderr = "".join(g.stop() for g in gateways)
        checker.close()
    assert checker.refused == 0
    assert len(checker.nonces) >= 25
    assert checker.nonces == sorted(set(checker.nonces))
    assert_no_secret(stderr)
    assert PASSWORD not in stderr


@pytest.mark.slow
def test_redis_killed_mid_run_fails_orders_closed_and_recovers_without_a_restart(
    tmp_path: Path, emulator: StartEmulator, start_redis: StartRedis
) -> None:
    exchange = emulator("binance")
    redis = start_redis()
    world = start_cluster(tmp_path, {"bn": ("binance", exchange.url)}, redis)
    try:
        token = world.tokens["bot00"]
        for index in range(3):
            assert world.post_order(index, token).status_code == 200

        redis.kill()
        orders_before = len(exchange.requests_to("/api/v3/order", "POST"))
        for index in range(3):
            refused = world.post_order(index, token)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "coordination_unavailable"
            assert "coordination store unavailable" in refused.json()["detail"]
            assert refused.headers["x-keybroker-error"] == "coordination_unavailable"
        assert len(exchange.requests_to("/api/v3/order", "POST")) == orders_before
        # reads go on, within a local third of the 1,200 weight: 20 account reads of 20 each
        minute = start_of_a_minute(latest_second=45)
        reads = [world.get_account(0, token) for _ in range(22)]
        assert int(time.time() // 60) == minute
        statuses = [read.status_code for read in reads]
        assert 15 <= statuses.count(200) <= 20 and statuses[-1] == 429, statuses
        assert reads[-1].headers["x-keybroker-error"] == "rate_limited"

        redis.restart()
        for index in range(3):
            assert wait_until(
                lambda i=index: world.post_order(i, token).status_code == 200,  # type: ignore[misc]
                timeout=10,
            )
    finally:
        errors = [served.stop() for served in world.gateways]
    for home, err in zip(world.homes, errors, strict=True):
        assert "CoordinationUnavailable" in err and "CoordinationRestored" in err
        assert "coordination store unavailable" in err
        assert_no_secret(err)
        rows = [row.row for row in read_rows(home / "audit.db")]
        assert any(row.rule == "coordination_unavailable" for row in rows)
        assert verify_chain(home / "audit.db").ok
