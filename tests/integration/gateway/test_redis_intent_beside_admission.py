"""With Redis, an order's intent row is committed while Redis admits it (``admit_beside_intent``).

The fsync of the intent row and the admission's round trip each take most
of a millisecond here, so the gateway runs them side by side. The row is
then written before Redis has said whether the order may go: these check
that when it may not (another gateway's orders fill the shared count, the
store stops answering) the order still never leaves, and the refusal row
names the intent it closes. Real gateways (in threads), a real
redis-server and the emulator.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from gateway_testkit import (
    LIMIT_BUY,
    StartEmulator,
    StartGateway,
    wait_until,
)
from redis_hosts import host, order_rows

from keybroker.clock import SystemClock
from keybroker.gateway.activity import Activity
from keybroker.secret import Secret
from redis_server import RedisServer, StartRedis


def test_an_order_another_gateways_orders_leave_no_room_for_is_refused_after_its_intent_row(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    shared = {"redis_url": Secret(redis_clean.url), "gateways": 2}
    a = gateway(*host(tmp_path, "a", exchange.url), **shared)
    b = gateway(*host(tmp_path, "b", exchange.url), **shared)
    for _ in range(4):  # the four a minute, all through b: a has counted none of them
        assert b.client().post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200

    refused = a.client().post("/bn/api/v3/order", data=LIMIT_BUY)

    assert refused.status_code == 403
    assert refused.json()["rule"] == "max_orders_per_minute"
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 4  # it never left
    # As things stood on a, the order was allowed: its intent row was committed during
    # the admission, and the refusal that Redis's count brought names it.
    intent, denied = (r for r in order_rows(a.audit_path))
    assert intent.row.kind == "intent" and intent.row.decision == "allow"
    assert denied.row.kind == "denied" and denied.row.rule == "max_orders_per_minute"
    assert denied.row.intent_id == intent.id
    assert denied.row.client_order_id == intent.row.client_order_id is not None
    # Restarted without Redis, a's gateway counts what its log says was sent: nothing.
    restarted = Activity(SystemClock())
    assert restarted.rebuild(a.audit_path) == 1  # the intent row, read and left out
    assert restarted.orders_last_minute("bn") == 0
    assert restarted.daily_notional("bn") == 0


def test_the_intent_row_is_durable_while_redis_is_silent_and_the_order_then_fails_closed(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, start_redis: StartRedis
) -> None:
    exchange = emulator("binance")
    store = start_redis()
    gw = gateway(*host(tmp_path, "a", exchange.url), redis_url=Secret(store.url), gateways=1)
    client = gw.client()
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    assert store.process is not None
    store.process.send_signal(signal.SIGSTOP)  # Redis takes the order's script, never answers
    try:
        silent = client.post("/bn/api/v3/order", data=LIMIT_BUY)
        # Known down now: the next order is refused before any intent row is made.
        still_down = client.post("/bn/api/v3/order", data=LIMIT_BUY)
    finally:
        store.process.send_signal(signal.SIGCONT)

    for answer in (silent, still_down):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "coordination_unavailable"
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 1  # nothing else left
    rows = [r for r in order_rows(gw.audit_path)][2:]  # after the first order's two rows
    assert [r.row.kind for r in rows] == ["intent", "denied", "denied"]
    assert rows[1].row.intent_id == rows[0].id  # committed though Redis never answered
    assert rows[2].row.intent_id is None  # no intent for an order refused at once
    # Redis answers again: orders go, without a restart.
    assert wait_until(
        lambda: client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200, timeout=15
    )


def test_an_order_the_policy_refuses_as_things_stand_gets_no_intent_row(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    exchange = emulator("binance")
    gw = gateway(*host(tmp_path, "a", exchange.url), redis_url=Secret(redis_clean.url), gateways=1)
    refused = gw.client().post("/bn/api/v3/order", data={**LIMIT_BUY, "quantity": "1"})
    assert refused.status_code == 403 and refused.json()["rule"] == "max_notional"
    assert [r.row.kind for r in order_rows(gw.audit_path)] == ["denied"]
    with redis_clean.client() as client:  # its count went back (the admission counted it)
        assert wait_until(lambda: client.zcard("keybroker:orders:credential:bn") == 0)


def test_an_order_whose_intent_row_cannot_be_written_never_leaves_and_its_admission_goes_back(
    tmp_path: Path, emulator: StartEmulator, gateway: StartGateway, redis_clean: RedisServer
) -> None:
    # The admission is already in Redis when the commit fails (a full disk, here a trigger
    # that refuses every row): the order must not leave, and its count and budget must
    # come back once Redis's answer does, though nothing awaits that answer any more.
    exchange = emulator("binance")
    gw = gateway(*host(tmp_path, "a", exchange.url), redis_url=Secret(redis_clean.url), gateways=1)
    client = gw.client()
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
    with redis_clean.client() as store:
        assert store.zcard("keybroker:orders:credential:bn") == 1
    conn = sqlite3.connect(gw.audit_path)
    conn.execute(
        "CREATE TRIGGER disk_full BEFORE INSERT ON audit "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    conn.commit()
    try:
        failed = client.post("/bn/api/v3/order", data=LIMIT_BUY)
    finally:
        conn.execute("DROP TRIGGER disk_full")
        conn.commit()
        conn.close()

    assert failed.status_code == 503, failed.text
    assert failed.json()["error"] == "audit_unavailable"
    assert len(exchange.requests_to("/api/v3/order", "POST")) == 1  # it never left
    with redis_clean.client() as store:  # counted by the admission, given back after
        assert wait_until(lambda: store.zcard("keybroker:orders:credential:bn") == 1)
        assert store.zcard("keybroker:orders:bot:bot1") == 1
    assert client.post("/bn/api/v3/order", data=LIMIT_BUY).status_code == 200
