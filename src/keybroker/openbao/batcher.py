"""Signing through transit: concurrent requests for one key go to OpenBao as one batch.

    >>> batcher = Batcher(session, mount="transit")
    >>> [hmac] = await batcher.ask([Ask("keybroker-bn-1a2b", "hmac", "sha256", b"symbol=...")])

Batching costs no latency: when nothing is in flight for a transit path, a
request is sent at once, by its own caller, with no task and no wait.
Requests arriving while that call is in flight wait for it and then go
together as one ``batch_input`` call (at most ``max_batch`` at a time). A
burst of N orders thus costs about two round trips, not N.

``two_pass.sign_in_two_passes`` is how the gateway signs: it asks for
everything one request needs in one ``ask``. ``ThreadSigner`` is the older
way, kept for a signer whose second run does not ask the same thing as its
first: the ``crypto.keys.RemoteSigner`` for a synchronous exchange signer in
a worker thread, handing each HMAC or signature to the batcher on the event
loop and waiting for it there.
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

Result = bytes | KeybrokerError


@dataclass(frozen=True, slots=True)
class Ask:
    """One HMAC or signature an exchange signer asked for: which key, how, of what."""

    key_name: str
    key_type: str
    """``hmac``, ``ed25519`` or ``es256``."""
    algorithm: str | None
    """The HMAC's hash (``sha256``...); None for a signature."""
    message: bytes

    def __repr__(self) -> str:  # the message is an order: not for logs
        return f"Ask({self.key_name!r}, {self.key_type!r}, {self.algorithm!r}, <message>)"


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
        self._drains: set[asyncio.Task[None]] = set()
        self.calls = 0
        """Transit calls made (a batch counts once): the benchmark and tests read it."""
        self.signatures = 0
        """HMACs and signatures asked for."""

    async def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        return (await self.ask([Ask(key_name, "hmac", algorithm, message)]))[0]

    async def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        return (await self.ask([Ask(key_name, key_type, None, message)]))[0]

    async def ask(self, asks: Sequence[Ask]) -> list[bytes]:
        """Every answer, in order; KeyStoreError/Unavailable if any of them cannot be had."""
        groups: dict[str, tuple[str, list[int]]] = {}
        for index, ask in enumerate(asks):
            path = self._path(ask)
            groups.setdefault(path, (ask.key_type, []))[1].append(index)
        if len(groups) == 1:  # the usual case: one key, one message
            [(path, (key_type, _))] = groups.items()
            return await self._submit(path, key_type, [ask.message for ask in asks])
        answers: list[bytes] = [b""] * len(asks)
        parts = await asyncio.gather(
            *(
                self._submit(path, key_type, [asks[i].message for i in indexes])
                for path, (key_type, indexes) in groups.items()
            )
        )
        for (_, indexes), part in zip(groups.values(), parts, strict=True):
            for index, answer in zip(indexes, part, strict=True):
                answers[index] = answer
        return answers

    def _path(self, ask: Ask) -> str:
        if ask.key_type == "hmac":
            if ask.algorithm is None:
                raise SigningError("an HMAC needs a hash")
            return hmac_path(self.mount, ask.key_name, ask.algorithm)
        return sign_path(self.mount, ask.key_name)

    async def _submit(self, path: str, key_type: str, messages: list[bytes]) -> list[bytes]:
        queue = self._queues.get(path)
        if queue is None:
            queue = self._queues[path] = _Queue(key_type)
        if not queue.flying:
            # Nothing in flight for this key: send now, from this very coroutine.
            queue.flying = True
            try:
                results = await self._call(path, key_type, messages)
            finally:
                self._hand_on(path, queue)
            return [_unwrap(result) for result in results]
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = []
        for message in messages:
            future: asyncio.Future[bytes] = loop.create_future()
            queue.waiting.append((message, future))
            futures.append(future)
        if len(futures) == 1:
            return [await futures[0]]
        gathered = await asyncio.gather(*futures, return_exceptions=True)
        return [_unwrap(result) for result in gathered]

    def _hand_on(self, path: str, queue: _Queue) -> None:
        """After a call: what piled up meanwhile goes next, as a batch; else the path is free."""
        if not queue.waiting:
            queue.flying = False
            return
        task = asyncio.get_running_loop().create_task(self._drain(path, queue))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, path: str, queue: _Queue) -> None:
        try:
            while queue.waiting:
                batch = queue.waiting[: self.max_batch]
                del queue.waiting[: self.max_batch]
                await self._send(path, queue.key_type, batch)
        finally:
            queue.flying = False

    async def _call(self, path: str, key_type: str, messages: list[bytes]) -> list[Result]:
        """One transit call for ``messages``: each one's answer, or the error it got."""
        field_name = "hmac" if key_type == "hmac" else "signature"
        self.calls += 1
        self.signatures += len(messages)
        try:
            data = await self.session.write(path, batch_body(messages, key_type))
            return list(
                batch_results(
                    data.get("data"), len(messages), field_name, urlsafe=key_type == "es256"
                )
            )
        except KeybrokerError as error:
            return [error] * len(messages)
        except Exception:  # a bug must not leave a request waiting forever
            return [KeyStoreError("signing through OpenBao failed")] * len(messages)

    async def _send(
        self, path: str, key_type: str, batch: list[tuple[bytes, asyncio.Future[bytes]]]
    ) -> None:
        pending = [(message, future) for message, future in batch if not future.done()]
        if not pending:  # every caller gave up (timeout): nothing to sign for
            return
        results = await self._call(path, key_type, [message for message, _ in pending])
        for (_, future), result in zip(pending, results, strict=True):
            if future.done():  # its caller gave up meanwhile: nothing to hand over
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _unwrap(result: bytes | BaseException) -> bytes:
    if isinstance(result, BaseException):
        raise result
    return result


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
