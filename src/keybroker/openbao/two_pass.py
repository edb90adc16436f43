"""Signing with a remote key on the event loop: run the signer twice, ask OpenBao in between.

    >>> def run(signer): return profile.sign(request, credential.replace(secret=key.bind(signer)),
    ...                                     now_ms=now, nonce=nonce)
    >>> signed = await sign_in_two_passes(run, batcher)     # None: sign another way

The exchange signers are synchronous: they call ``credential.secret.hmac()``
or ``.sign()`` and need the answer at once, and they must not learn where
the key lives. Blocking the event loop on OpenBao is out of the question,
and running the signer in a worker thread costs a thread hop each way, which
on a busy 2-core machine was milliseconds per order (issue #10, point 5).

So the signer runs twice, on the loop, each run a few microseconds:

1. with a ``Recorder``: every HMAC or signature it asks for is written down
   and answered with zeros of the right length; what it builds is thrown
   away;
2. the recorded messages go to OpenBao in one ``Batcher.ask`` (awaited, so
   the loop serves other requests meanwhile, and concurrent requests share
   transit calls);
3. with a ``Replayer``: each ask must be exactly the recorded one, in order,
   and gets OpenBao's answer. What this run builds is the signed request.

This holds because a signer is a function of the request, the credential,
``now_ms`` and ``nonce``, which the caller pins for both runs. A signer that
draws randomness of its own, or asks anything else the second time, is
caught by the replay (its ask differs, or is missing, or one is left over):
``sign_in_two_passes`` then returns None and the caller signs the slow way.
A signature of a message nobody sends is harmless, so nothing is lost but
time. Nothing falls back to a local key: there is none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from keybroker.crypto.keys import RemoteSigner
from keybroker.errors import SigningError
from keybroker.openbao.batcher import Ask, Batcher

T = TypeVar("T")

# What a placeholder answer looks like: the length of the real one, all zeros.
_HMAC_BYTES = {"sha256": 32, "sha384": 48, "sha512": 64}
_SIGNATURE_BYTES = 64  # Ed25519, and ES256 as r‖s


class Recorder:
    """A ``RemoteSigner`` that signs nothing: it notes each ask and answers zeros."""

    def __init__(self) -> None:
        self.asks: list[Ask] = []

    def __repr__(self) -> str:
        return f"Recorder({len(self.asks)} asks)"

    def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        self.asks.append(Ask(key_name, "hmac", algorithm, bytes(message)))
        return bytes(_HMAC_BYTES.get(algorithm, 64))

    def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        self.asks.append(Ask(key_name, key_type, None, bytes(message)))
        return bytes(_SIGNATURE_BYTES)


class Replayer:
    """A ``RemoteSigner`` that answers the recorded asks, in order, and nothing else."""

    def __init__(self, asks: Sequence[Ask], answers: Sequence[bytes]) -> None:
        if len(asks) != len(answers):
            raise SigningError("every recorded ask needs one answer")
        self._asks = asks
        self._answers = answers
        self._next = 0
        self.diverged = False
        """Set when the signer asked something it had not asked the first time."""

    def __repr__(self) -> str:
        return f"Replayer({self._next}/{len(self._asks)} answered)"

    @property
    def finished(self) -> bool:
        """Whether every recorded ask was asked again."""
        return self._next == len(self._asks)

    def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        return self._answer(Ask(key_name, "hmac", algorithm, bytes(message)))

    def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        return self._answer(Ask(key_name, key_type, None, bytes(message)))

    def _answer(self, ask: Ask) -> bytes:
        if self._next >= len(self._asks) or self._asks[self._next] != ask:
            self.diverged = True
            raise SigningError("the signer asked for another signature on its second run")
        answer = self._answers[self._next]
        self._next += 1
        return answer


async def sign_in_two_passes(run: Callable[[RemoteSigner], T], batcher: Batcher) -> T | None:
    """``run(signer)``'s result with OpenBao's answers; None if the signer did not replay.

    Raises what ``run`` raises (SigningError for a key it cannot use) and
    KeyStoreError/KeyStoreUnavailable when OpenBao cannot answer.
    """
    recorder = Recorder()
    unsigned = run(recorder)
    if not recorder.asks:
        return unsigned  # nothing to sign (a public or key-only endpoint): already final
    answers = await batcher.ask(recorder.asks)
    replayer = Replayer(recorder.asks, answers)
    try:
        signed = run(replayer)
    except SigningError:
        if replayer.diverged:
            return None
        raise
    if replayer.diverged or not replayer.finished:
        return None
    return signed
