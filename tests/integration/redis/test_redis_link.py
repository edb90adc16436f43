"""redis_link.Link on a real redis-server: pipelined answers, TLS and AUTH, outages, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from async_run import ClosingLoop, run_closed
from keybroker.ratelimit.redis import STORE_FAILURES
from keybroker.ratelimit.redis_link import Link, pack
from redis_server import PASSWORD, RedisServer, StartRedis, make_tls_files

T = TypeVar("T")

ECHO = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"


def run(make: Callable[[], Awaitable[T]]) -> T:
    return run_closed(make)  # the loop stops once its connections are closed


def link_to(url: str, **options: float) -> tuple[Redis, Link]:
    client = Redis.from_url(url, **options)  # type: ignore[arg-type]
    link = Link.of(client)
    assert link is not None
    return client, link


def test_pack_encodes_as_redis_py_does() -> None:
    assert pack(["SET", "k", b"\x00v", 7, 0.5]) == (
        b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$1\r\n7\r\n$3\r\n0.5\r\n"
    )
    with pytest.raises(TypeError):
        pack(["SET", "k", True])


def test_concurrent_calls_on_one_connection_each_get_their_own_answer(
    redis_clean: RedisServer,
) -> None:
    async def scenario() -> tuple[list[object], int]:
        client, link = link_to(redis_clean.url)
        await link.call("CLIENT", "SETNAME", "keybroker-link")
        script = link.script(ECHO)
        # Loaded first: a caller whose NOSCRIPT answer is read before the next caller
        # writes (``start`` reads at once) loads the script and goes ahead of the others.
        await script(keys=["warm"], args=["up"])
        answers = await asyncio.gather(
            *(script(keys=[f"k{i % 7}"], args=[f"v{i}"]) for i in range(300))
        )
        named = [c for c in await client.client_list() if c.get("name") == "keybroker-link"]
        await link.close()
        await client.aclose()
        return answers, len(named)

    answers, connections = run(scenario)
    assert connections == 1  # 300 calls at once, one connection
    for i, answer in enumerate(answers):
        assert isinstance(answer, list)
        assert answer[:2] == [f"k{i % 7}".encode(), f"v{i}".encode()]
    # every INCR of a key answered once, in order: 1..n per key
    for key in range(7):
        counts = [a[2] for i, a in enumerate(answers) if i % 7 == key]  # type: ignore[index]
        assert counts == list(range(1, len(counts) + 1))


def test_a_script_the_server_lost_is_loaded_again(redis_clean: RedisServer) -> None:
    async def scenario() -> list[object]:
        client, link = link_to(redis_clean.url)
        script = link.script(ECHO)
        first = await script(keys=["a"], args=["1"])
        await client.script_flush()
        second = await script(keys=["a"], args=["2"])
        with pytest.raises(ResponseError):  # a script error is the server's answer, not an outage
            await link.script("return redis.call('NOSUCHCOMMAND')")()
        third = await script(keys=["a"], args=["3"])
        await link.close()
        await client.aclose()
        return [first, second, third]

    assert run(scenario) == [[b"a", b"1", 1], [b"a", b"2", 2], [b"a", b"3", 3]]


def test_password_and_tls_come_from_the_client(start_redis: StartRedis, tmp_path: object) -> None:
    tls = make_tls_files(tmp_path / "tls")  # type: ignore[operator]
    server = start_redis(password=PASSWORD, tls=tls)
    db2 = server.url.replace("/0?", "/2?")

    async def scenario() -> tuple[object, object]:
        client, link = link_to(db2)
        await link.call("SET", "where", "db2")
        async with Redis.from_url(server.url) as db0, Redis.from_url(db2) as other:
            seen = (await db0.get("where"), await other.get("where"))
        await link.close()
        await client.aclose()
        return seen

    assert run(scenario) == (None, b"db2")  # TLS, AUTH and SELECT 2 all held

    async def wrong_password() -> None:
        client, link = link_to(server.url.replace(PASSWORD, "wrong-password-not-real"))
        with pytest.raises(AuthenticationError) as refused:
            await link.call("PING")
        assert isinstance(refused.value, STORE_FAILURES)
        assert "wrong-password" not in str(refused.value)
        await link.close()
        await client.aclose()

    run(wrong_password)


def test_a_store_gone_fails_at_once_and_a_store_back_is_used_again(
    start_redis: StartRedis,
) -> None:
    server = start_redis()

    async def scenario() -> list[str]:
        client, link = link_to(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        seen = [str(await link.call("PING"))]
        server.kill()
        for _ in range(2):
            began = time.monotonic()
            with pytest.raises(RedisConnectionError):
                await link.call("PING")
            seen.append(f"refused in {time.monotonic() - began < 2}")
        server.restart()  # same port, empty: the same Link reconnects on its next call
        seen.append(str(await link.call("PING")))
        await link.close()
        await client.aclose()
        return seen

    assert run(scenario) == ["b'PONG'", "refused in True", "refused in True", "b'PONG'"]


def test_a_connection_the_server_closed_is_replaced_without_an_error(
    redis_clean: RedisServer,
) -> None:
    async def scenario() -> object:
        client, link = link_to(redis_clean.url)
        await link.call("CLIENT", "SETNAME", "keybroker-link")
        await client.client_kill_filter(_type="normal", skipme=True)  # closes the link's socket
        answer = await link.call("PING")  # one retry on a fresh connection
        await link.close()
        await client.aclose()
        return answer

    assert run(scenario) == b"PONG"


def test_a_store_that_does_not_answer_times_out_and_the_link_recovers(
    start_redis: StartRedis,
) -> None:
    server = start_redis()
    assert server.process is not None

    async def scenario() -> list[object]:
        client, link = link_to(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
        seen: list[object] = [await link.call("PING")]
        server.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            began = time.monotonic()
            calls = [link.call("INCR", "n") for _ in range(3)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            seen.append([type(r).__name__ for r in results])
            seen.append(time.monotonic() - began < 5)
        finally:
            server.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        seen.append(await link.call("PING"))
        await link.close()
        await client.aclose()
        return seen

    first, errors, quick, back = run(scenario)
    assert first == b"PONG" and back == b"PONG"
    assert errors == [RedisTimeoutError.__name__] * 3 and quick


def test_close_over_tls_closes_the_socket_when_the_server_never_answers_the_close(
    tmp_path: Path,
) -> None:
    # A clean TLS close waits for the server's close_notify; a store that never sends it
    # must not leave the TCP socket open for a loop stopping after close() (a leak).
    tls = make_tls_files(tmp_path / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def store() -> None:
        with contextlib.suppress(OSError):  # the link's abort resets the connection
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(1024)
                tls_conn.sendall(b"+PONG\r\n")
                while tls_conn.recv(1024):  # until the link's close_notify, never answered
                    pass
                release.wait(10)

    thread = threading.Thread(target=store, daemon=True)
    thread.start()

    async def scenario() -> tuple[object, list[str]]:
        ssl_context = ssl.create_default_context(cafile=str(tls.ca))
        link = Link("127.0.0.1", listener.getsockname()[1], ssl=ssl_context, timeout_s=5)
        answer = await link.call("PING")
        await link.close()
        loop = asyncio.get_running_loop()
        assert isinstance(loop, ClosingLoop)
        return answer, [repr(sock) for _, sock in loop.still_open()]

    try:
        answer, left_open = run(scenario)
    finally:
        release.set()
        thread.join(timeout=10)
        listener.close()
    assert answer == b"PONG"
    assert left_open == []


def test_a_tls_client_whose_ca_file_is_missing_keeps_redis_py(tmp_path: object) -> None:
    # No link then: redis-py reports the missing file when it connects, as a store failure.
    url = f"rediss://127.0.0.1:1/0?ssl_ca_certs={tmp_path}/missing-ca.pem"
    client = Redis.from_url(url)
    assert Link.of(client) is None
    assert Link.of(Redis.from_url("redis://127.0.0.1:1/0")) is not None
