"""The Lua buckets in a real redis-server answer exactly as bucket.py does, spend after spend.

RedisLimiter's decisions are only as good as this port: each property runs
the same random sequence of waits, spends, usage corrections and reads
through the Python bucket and through the Lua one (the library the
limiter's scripts are built from, driven one call at a time), and compares
every answer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybroker.ratelimit.bucket import DecayingCounter, FixedWindowBucket, WindowBucket
from keybroker.ratelimit.redis_scripts import PRELUDE
from redis_server import RedisServer

DRIVER = (
    PRELUDE
    + r"""
local b = load(KEYS[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local op, amount, now = ARGV[1], tonumber(ARGV[6]), tonumber(ARGV[7])
local out = ''
if op == 'wait' then
  local w = wait_of(b, amount, now)
  if w == nil then out = 'none' else out = num(w) end
elseif op == 'take' then take(b, amount, now)
elseif op == 'correct' then correct(b, amount, now)
else out = num(used_of(b, now)) end
save(KEYS[1], b)
return out
"""
)

SHAPES = {"w": WindowBucket, "f": FixedWindowBucket, "d": DecayingCounter}

operations = st.lists(
    st.tuples(
        st.sampled_from(["wait", "take", "correct", "used"]),
        st.sampled_from([0.5, 1.0, 2.0, 5.0, 20.0, 40.0, 101.0]),
        st.integers(min_value=0, max_value=4_000),  # ms since the previous step
    ),
    min_size=1,
    max_size=60,
)


@pytest.fixture
def lua(redis_clean: RedisServer) -> Iterator[tuple[redis.Redis, object]]:
    client = redis_clean.client()
    yield client, client.register_script(DRIVER)
    client.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.sampled_from(sorted(SHAPES)),
    capacity=st.sampled_from([10.0, 100.0, 1200.0]),
    window_ms=st.sampled_from([1_000, 2_000, 10_000, 60_000]),
    margin_ms=st.sampled_from([0, 50, 1_000]),
    start_ms=st.integers(min_value=1_700_000_000_000, max_value=1_800_000_000_000),
    steps=operations,
)
def test_lua_bucket_matches_python_bucket(
    lua: tuple[redis.Redis, object],
    shape: str,
    capacity: float,
    window_ms: int,
    margin_ms: int,
    start_ms: int,
    steps: list[tuple[str, float, int]],
) -> None:
    client, script = lua
    key = f"parity:{shape}:{capacity}:{window_ms}:{margin_ms}:{start_ms}"
    client.delete(key)
    bucket = SHAPES[shape](capacity, window_ms, margin_ms=margin_ms)
    now = start_ms
    for op, amount, step in steps:
        now += step
        if op == "correct":
            amount *= 3  # usage readings run above single spends
        args = [op, shape, repr(capacity), window_ms, margin_ms, repr(amount), now]
        answer = script(keys=[key], args=args)  # type: ignore[operator]
        text = answer.decode() if isinstance(answer, bytes) else str(answer)
        if op == "wait":
            expected = bucket.wait_ms(amount, now)
            assert text == ("none" if expected is None else format(float(expected), ".17g"))
        elif op == "take":
            bucket.take(amount, now)
        elif op == "correct":
            bucket.correct(amount, now)
        else:
            assert float(text) == pytest.approx(bucket.used(now), abs=1e-6)


@pytest.mark.parametrize(
    ("text", "used"),
    [
        ("w 100 60000 0 5.5 {slot} 2 {next} 3.5", 5.5),  # 1,200 ms slots
        ("f 100 60000 0 {minute_before} {minute} 7", 7.0),
        ("d 10 10000 0 4.25 {now}", 4.25),
        ("d 10 10000 0 3 n", 3.0),
    ],
    ids=["window", "fixed", "decaying", "decaying-never-drained"],
)
def test_a_bucket_an_earlier_version_wrote_as_text_is_still_read(
    lua: tuple[redis.Redis, object], text: str, used: float
) -> None:
    client, script = lua
    now = 1_800_000_000_000
    stored = text.format(
        slot=now // 1200 - 1,
        next=now // 1200,
        minute=now // 60_000,
        minute_before=now // 60_000 - 1,
        now=now,
    )
    shape, capacity, window, margin = stored.split()[:4]
    client.set("old", stored)
    args = ["used", shape, capacity, window, margin, 0, now]
    assert float(script(keys=["old"], args=args)) == used  # type: ignore[operator]
    # Written back in the current form, it still says the same.
    assert not client.get("old").startswith(shape.encode())  # type: ignore[union-attr]
    assert float(script(keys=["old"], args=args)) == used  # type: ignore[operator]
