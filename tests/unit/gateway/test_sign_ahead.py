"""gateway.remote_keys.SignAhead: the first signature starts early, is used once, or is dropped.

The build here is a real coroutine function that stands for step 7 (the
gateway's ``pipeline.sign``); what is checked is how often it runs, which
result goes out, and that a dropped early signature leaves no stray task or
unread error behind. Against a real OpenBao, tests/integration/gateway/
test_openbao_gateway.py runs orders through it end to end.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import httpx
import pytest

from keybroker.errors import KeyStoreUnavailable
from keybroker.gateway import remote_keys
from keybroker.gateway.remote_keys import SignAhead


class Signer:
    """Counts the signatures made; each is a request carrying its number."""

    def __init__(self, *, delay_s: float = 0.0, fail: bool = False) -> None:
        self.made = 0
        self.delay_s = delay_s
        self.fail = fail

    async def __call__(self) -> httpx.Request:
        self.made += 1
        number = self.made
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise KeyStoreUnavailable("OpenBao at http://127.0.0.1:1 could not be reached")
        return httpx.Request("GET", f"https://example.invalid/{number}")


def run(main: Any) -> list[dict[str, Any]]:
    """Run ``main()``; the loop's unhandled errors (e.g. a task exception never read)."""
    unhandled: list[dict[str, Any]] = []

    async def wrapper() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: unhandled.append(context)
        )
        await asyncio.wait_for(main(), 10)
        await asyncio.sleep(0.05)  # let anything cancelled or dropped finish

    asyncio.run(wrapper())

    gc.collect()
    return unhandled


def test_the_first_attempt_gets_the_early_signature_and_later_ones_sign_anew() -> None:
    signer = Signer(delay_s=0.05)

    async def main() -> None:
        ahead = SignAhead(signer)
        await asyncio.sleep(0.01)  # the intent row being written: the signature is under way
        assert signer.made == 1
        first = await ahead()
        assert str(first.url).endswith("/1") and signer.made == 1
        second = await ahead()  # a retried read: a fresh signature, a fresh timestamp
        assert str(second.url).endswith("/2") and signer.made == 2

    assert run(main) == []


def test_a_signature_older_than_fresh_s_is_made_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote_keys, "FRESH_S", 0.02)
    signer = Signer()

    async def main() -> None:
        ahead = SignAhead(signer)
        await asyncio.sleep(0.1)  # a slow disk held the intent row
        sent = await ahead()
        assert str(sent.url).endswith("/2") and signer.made == 2

    assert run(main) == []


def test_discard_drops_a_pending_signature() -> None:
    signer = Signer(delay_s=5)

    async def main() -> None:
        ahead = SignAhead(signer)
        await asyncio.sleep(0.01)
        ahead.discard()  # the intent row failed: nothing may be sent
        await asyncio.sleep(0.01)
        signing = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "") == "Signer.__call__"
        ]
        assert signing == []  # cancelled and gone, not left running

    assert run(main) == []


def test_a_failed_early_signature_is_raised_once_or_dropped_silently() -> None:
    async def used() -> None:
        ahead = SignAhead(Signer(fail=True))
        with pytest.raises(KeyStoreUnavailable):
            await ahead()

    async def dropped() -> None:
        ahead = SignAhead(Signer(fail=True))
        await asyncio.sleep(0.01)  # it failed meanwhile
        ahead.discard()

    assert run(used) == []
    assert run(dropped) == []  # no "exception was never retrieved" from the loop
