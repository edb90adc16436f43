"""``/_/metrics`` scraped like Prometheus would: every series issue 8 asks for, with real values.

Requests by kind and decision, upstream status codes, the gateway-added
latency histogram, weight used per bucket, 429 and 418 counts (the
exchange's and the gateway's own), the limiter's queue length and the audit
write latency. A gateway and the emulator on loopback; nothing is mocked.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
from gateway_testkit import (
    LIMIT_BUY,
    TRADER,
    StartEmulator,
    StartGateway,
    World,
    make_vault,
    new_token,
    wait_until,
)

from keybroker.emulator import EmulatorConfig
from keybroker.ratelimit import MemoryLimiter

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Scrape:
    """One scrape: samples by name, each with its labels; HELP/TYPE lines checked for shape."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.types: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                self.types[name] = kind
                continue
            if line.startswith("#") or not line:
                continue
            match = _SAMPLE.match(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            name, labels, value = match.groups()
            parsed = dict(_LABEL.findall(labels or ""))
            self.samples.setdefault(name, []).append((parsed, float(value)))

    def value(self, metric: str, **labels: str) -> float:
        """The one sample of ``metric`` whose labels include ``labels``."""
        found = [v for have, v in self.samples.get(metric, []) if labels.items() <= have.items()]
        assert len(found) == 1, (metric, labels, self.samples.get(metric))
        return found[0]

    def total(self, metric: str, **labels: str) -> float:
        return sum(v for have, v in self.samples.get(metric, []) if labels.items() <= have.items())


def scrape(client: httpx.Client) -> Scrape:
    response = client.get("/_/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def test_decisions_statuses_latency_buckets_and_audit_writes(world: World) -> None:
    client = world.gateway.client()
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    assert (
        client.post("/bn/api/v3/order", data={**LIMIT_BUY, "symbol": "ETHUSDT"}).status_code == 403
    )
    assert client.get("/bn/api/v3/account").status_code == 200
    assert client.get("/bn/api/v3/noSuchPrivateEndpoint").status_code == 403  # unknown: refused
    # Rows something waited for (intents, denials, events). Result rows go out after their
    # answer with the next commit, so their wait is not the audit write latency.
    rows = len([row for row in world.gateway.audit() if row.row.kind != "result"])
    metrics = scrape(client)

    assert metrics.value("keybroker_decisions_total", kind="order_place", decision="allow") == 2
    assert metrics.value("keybroker_decisions_total", kind="order_place", decision="deny") == 1
    assert metrics.value("keybroker_decisions_total", kind="account_read", decision="allow") == 1
    assert metrics.value("keybroker_decisions_total", kind="unknown_private", decision="deny") == 1
    assert metrics.value("keybroker_upstream_requests_total", exchange="binance", status="200") == 3

    # The added-latency histogram: one observation per request, cumulative buckets.
    assert metrics.types["keybroker_gateway_added_seconds"] == "histogram"
    assert metrics.total("keybroker_gateway_added_seconds_count") == 5
    buckets = [
        (labels["le"], value)
        for labels, value in metrics.samples["keybroker_gateway_added_seconds_bucket"]
        if labels["kind"] == "order_place"
    ]
    assert buckets[-1] == ("+Inf", 3)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    added = metrics.value("keybroker_gateway_added_seconds_sum", kind="order_place")
    upstream = metrics.value("keybroker_upstream_seconds_sum", exchange="binance")
    assert 0 < added < 5 and upstream > 0

    # Weight per bucket: the two orders and the account read (weight 20) were spent.
    weight = "keybroker_ratelimit_weight_used"
    assert metrics.value(weight, name="REQUEST_WEIGHT") == 22
    assert metrics.value(weight, name="ORDERS_10S") == 2
    assert metrics.value("keybroker_ratelimit_weight_limit", name="REQUEST_WEIGHT") == 1200
    assert metrics.value("keybroker_ratelimit_queue_length") == 0

    # Audit writes: one observation per row a request (or the gateway's start) waited for.
    assert metrics.types["keybroker_audit_write_seconds"] == "histogram"
    assert metrics.value("keybroker_audit_write_seconds_count") == rows
    assert 0 < metrics.value("keybroker_audit_write_seconds_sum") < rows


def test_a_lone_order_commits_its_intent_inline_and_concurrent_ones_share_the_writer(
    world: World,
) -> None:
    client = world.gateway.client()

    def commits() -> tuple[float, float]:
        metrics = scrape(client)
        return tuple(  # type: ignore[return-value]
            metrics.value("keybroker_audit_commits_total", thread=thread)
            for thread in ("inline", "writer")
        )

    inline, writer = commits()
    for _ in range(3):  # one after another: each is alone in the gateway
        assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    assert commits()[0] == inline + 3

    inline, writer = commits()
    together = threading.Barrier(16)

    def order(bot: httpx.Client) -> None:
        together.wait()
        assert bot.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200

    threads = [threading.Thread(target=order, args=(world.gateway.client(),)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after_inline, after_writer = commits()
    # Sixteen at once: the loop is not held by one of them while others could run.
    assert after_inline - inline < 16
    assert after_writer > writer
    assert len(world.gateway.rows("intent")) == 3 + 16


def test_the_exchanges_429_and_418_and_the_gateways_own_429_are_counted(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    second = time.time() % 60  # the emulator's weight window is the wall-clock minute
    if second > 50:
        time.sleep(60.5 - second)
    exchange = emulator("binance", EmulatorConfig(weight_limit=45))
    vault = make_vault(
        tmp_path / "home", {"bn": ("binance", exchange.url)}, policies={"bn": TRADER}
    )
    client = gateway(vault, new_token(vault, "bot1", ["bn"])).client()
    statuses = [client.get("/bn/api/v3/account").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # the exchange's own 429
    assert client.get("/bn/api/v3/time").status_code == 429  # the gateway's: host paused
    metrics = scrape(client)
    assert metrics.value("keybroker_throttled_total", source="exchange", status="429") == 1
    assert metrics.value("keybroker_throttled_total", source="gateway", status="429") == 1
    assert metrics.value("keybroker_upstream_requests_total", status="429") == 1

    banned = emulator("binance", EmulatorConfig(weight_limit=20, ban_after=0))
    other = make_vault(tmp_path / "other", {"bn": ("binance", banned.url)}, policies={"bn": TRADER})
    client = gateway(other, new_token(other, "bot1", ["bn"])).client()
    for _ in range(3):
        httpx.get(f"{banned.url}/api/v3/account")  # straight to the exchange: banned
    assert client.get("/bn/api/v3/time").status_code == 418
    metrics = scrape(client)
    assert metrics.value("keybroker_throttled_total", source="exchange", status="418") == 1


def test_the_queue_length_counts_requests_waiting_for_budget(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway
) -> None:
    # One balance read per 2 s window for this OKX account: the second waits its turn.
    exchange = emulator("okx")
    vault = make_vault(tmp_path / "home", {"ok": ("okx", exchange.url)}, policies={"ok": TRADER})
    limiter = MemoryLimiter(limit_overrides={"okx:ENDPOINT": 1})
    running = gateway(vault, new_token(vault, "bot1", ["ok"]), limiter=limiter)
    client = running.client()
    headers = {"x-simulated-trading": "1"}
    assert client.get("/ok/api/v5/account/balance", headers=headers).status_code == 200
    answers: list[int] = []
    waiting = threading.Thread(
        target=lambda: answers.append(
            running.client().get("/ok/api/v5/account/balance", headers=headers).status_code
        )
    )
    waiting.start()
    assert wait_until(
        lambda: scrape(client).value("keybroker_ratelimit_queue_length") == 1, timeout=2
    )
    waiting.join(timeout=10)
    assert answers == [200]
    assert scrape(client).value("keybroker_ratelimit_queue_length") == 0
