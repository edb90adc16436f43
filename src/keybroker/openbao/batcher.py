"""Signing through transit: concurrent requests for one key go to OpenBao as one batch.

    >>> batcher = Batcher(session, mount="transit")
    >>> signer = ThreadSigner(batcher, asyncio.get_running_loop(), timeout_s=5)
    >>> await asyncio.to_thread(profile.sign, request, credential.replace(secret=key.bind(signer)))

Batching costs no latency: the first request for a path is sent at once
(after the current turn of the event loop, so requests that arrived in the
same turn join it); requests arriving while that call is in flight wait for
it and then go together as one ``batch_input`` call. A burst of N orders thus
costs about two round trips, not N.

``ThreadSigner`` is the ``crypto.keys.RemoteSigner`` the exchange signers
see: they are synchronous, so the gateway runs them in a worker thread and
this hands each HMAC or signature to the batcher on the event loop and waits
for it there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from keybroker.errors import KeybrokerError, KeyStoreError, KeyStoreUnavailable, SigningError
from keybroker.openbao.session import Session
from keybroker.openbao.transit import batch_body, batch_results, hmac_path, sign_path

MAX_BATCH = 256


@dataclass
class _Queue:
    key_type: str
    waiting: list[tuple[bytes, asyncio.Future[bytes]]] = field(default_factory=list)
    flying: bool = False


class Batcher:
    """Collects HMACs and signatures per transit path; one call per path in flight at a time."""

    def __init__(self, session: Session, mount: str, *, max_batch: int = MAX_BATCH) -> None:
        self.session = session
        self.mount = mount
        self.max_batch = max_batch
        self._queues: dict[str, _Queue] = {}
        self.calls = 0
        """Transit calls made (a batch counts once): the benchmark and tests read it."""
        self.signatures = 0
        """HMACs and signatures asked for."""

    async def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        return await self._submit(hmac_path(self.mount, key_name, algorithm), "hmac", message)

    async def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        return await self._submit(sign_path(self.mount, key_name), key_type, message)

    async def _submit(self, path: str, key_type: str, message: bytes) -> bytes:
        queue = self._queues.get(path)
        if queue is None:
            queue = self._queues[path] = _Queue(key_type)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        queue.waiting.append((message, future))
        if not queue.flying:
            queue.flying = True
            asyncio.get_running_loop().create_task(self._drain(path, queue))
        return await future

    async def _drain(self, path: str, queue: _Queue) -> None:
        try:
            while queue.waiting:
                batch = queue.waiting[: self.max_batch]
                del queue.waiting[: self.max_batch]
                await self._send(path, queue.key_type, batch)
        finally:
            queue.flying = False

    async def _send(
        self, path: str, key_type: str, batch: list[tuple[bytes, asyncio.Future[bytes]]]
    ) -> None:
        messages = [message for message, _ in batch]
        field_name = "hmac" if key_type == "hmac" else "signature"
        self.calls += 1
        self.signatures += len(batch)
        results: Sequence[bytes | KeybrokerError]
        try:
            data = await self.session.write(path, batch_body(messages, key_type))
            results = batch_results(
                data.get("data"), len(messages), field_name, urlsafe=key_type == "es256"
            )
        except KeybrokerError as error:
            results = [error] * len(batch)
        except Exception:  # a bug must not leave a request waiting forever
            results = [KeyStoreError("signing through OpenBao failed")] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (timeout): nothing to hand over
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class ThreadSigner:
    """A ``RemoteSigner`` for worker threads, answered by a ``Batcher`` on the event loop."""

    def __init__(
        self, batcher: Batcher, loop: asyncio.AbstractEventLoop, *, timeout_s: float
    ) -> None:
        self._batcher = batcher
        self._loop = loop
        self._timeout_s = timeout_s
        self._loop_thread = threading.get_ident()

    def __repr__(self) -> str:
        return f"ThreadSigner(mount={self._batcher.mount!r}, timeout_s={self._timeout_s})"

    def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        return self._wait(self._batcher.hmac(key_name, algorithm, message))

    def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        return self._wait(self._batcher.sign(key_name, key_type, message))

    def _wait(self, work: Coroutine[Any, Any, bytes]) -> bytes:
        if threading.get_ident() == self._loop_thread:
            # Waiting here would block the very loop that must answer: a bug.
            work.close()
            raise SigningError("remote keys sign from a worker thread, not the event loop")
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise KeyStoreUnavailable(
                f"OpenBao did not sign within {self._timeout_s:g} s"
            ) from None
