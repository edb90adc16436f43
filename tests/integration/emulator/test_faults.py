"""Injected faults over real HTTP: 5xx shares, timeouts, latency, and answers lost after orders."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_testkit import Binance, Okx, Serve, journal, orders_in

from keybroker.emulator import EmulatorConfig, FaultSpec
from keybroker.emulator.faults import Fault, FaultPlan
from keybroker.errors import InvalidInput


def _faulty(spec: str) -> EmulatorConfig:
    return EmulatorConfig(faults=FaultSpec.parse(spec))


def test_a_seeded_share_of_requests_gets_the_exchanges_5xx(serve: Serve) -> None:
    http = serve("binance", config=_faulty("error5xx=0.3,seed=7"))
    statuses = [http.get("/api/v3/time").status_code for _ in range(40)]
    plan = FaultPlan(FaultSpec.parse("error5xx=0.3,seed=7"))
    expected = [
        503 if plan.draw(is_private=False, is_order=False) is Fault.ERROR_5XX else 200
        for _ in range(40)
    ]
    assert statuses == expected
    assert 5 <= statuses.count(503) <= 20
    failed = [e for e in journal(http) if e["fault"] == "error5xx"]
    assert len(failed) == statuses.count(503)
    assert all(not e["accepted"] and e["code"] == "-1001" for e in failed)


def test_okx_answers_its_own_503(serve: Serve) -> None:
    response = serve("okx", config=_faulty("error5xx=1")).get("/api/v5/public/time")
    assert response.status_code == 503
    assert response.json()["code"] == "50001"


def test_drop_after_process_places_the_order_and_loses_the_answer(serve: Serve) -> None:
    client = Binance(serve("binance", config=_faulty("drop_after_process=1,scope=orders")))
    assert client.http.get("/api/v3/time").status_code == 200  # out of scope: untouched
    with pytest.raises(httpx.RemoteProtocolError):
        client.signed(
            "POST",
            "/api/v3/order",
            {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "MARKET",
                "quantity": "0.001",
                "newClientOrderId": "lost-answer-1",
            },
        )
    entries = journal(client.http)
    assert [(e["fault"], e["accepted"]) for e in entries if e["kind"] == "order"] == [
        ("drop_after_process", True)
    ]
    assert [o["client_order_id"] for o in orders_in(entries)] == ["lost-answer-1"]
    found = client.signed(
        "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-answer-1"}
    )
    assert found.json()["status"] == "FILLED"  # the order exists: look it up, do not resend


def test_drop_after_process_on_okx(serve: Serve) -> None:
    client = Okx(serve("okx", config=_faulty("drop_after_process=1,scope=private")))
    with pytest.raises(httpx.RemoteProtocolError):
        client.request(
            "POST",
            "/api/v5/trade/order",
            body={
                "instId": "BTC-USDT",
                "tdMode": "cash",
                "side": "buy",
                "ordType": "limit",
                "sz": "0.01",
                "px": "50000",
                "clOrdId": "lost1",
            },
        )
    assert len(orders_in(journal(client.http))) == 1


def test_a_timeout_hangs_without_processing(serve: Serve) -> None:
    http = serve("binance", config=_faulty("timeout=1,hang=5s,scope=private"), timeout=0.5)
    client = Binance(http)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.signed(
            "POST",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
        )
    assert time.monotonic() - started < 3
    entries = journal(http)
    assert [(e["fault"], e["accepted"], e["orders"]) for e in entries] == [("timeout", False, [])]


def test_latency_delays_every_request(serve: Serve) -> None:
    http = serve("binance", config=_faulty("latency=200ms"))
    started = time.monotonic()
    assert http.get("/api/v3/time").status_code == 200
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("latency=50ms,jitter=5", "unknown key 'jitter'"),
        ("error5xx=1.5", "error5xx must be a share between 0 and 1"),
        ("error5xx=0.6,timeout=0.6", "must be <= 1"),
        ("latency=fast", "latency must be a duration"),
        ("seed=7,seed=8", "'seed' is given twice"),
        ("scope=some", "scope must be all, private or orders"),
        ("timeout", "is not key=value"),
    ],
)
def test_the_fault_syntax_is_strict(spec: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        FaultSpec.parse(spec)


def test_the_fault_syntax_reads_units_and_defaults() -> None:
    spec = FaultSpec.parse(
        " latency=1.5s, error5xx=0.1,timeout=0.01,drop_after_process=0.05,seed=7"
    )
    assert spec == FaultSpec(
        latency_ms=1500, error5xx=0.1, timeout=0.01, drop_after_process=0.05, seed=7
    )
    assert FaultSpec.parse("latency=50").latency_ms == 50
    assert FaultSpec.parse("").is_quiet
