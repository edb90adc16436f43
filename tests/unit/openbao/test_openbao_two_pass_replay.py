"""openbao.two_pass's Recorder and Replayer: what a signer's two runs may and may not do.

These are pure bookkeeping (no I/O); the whole two-pass signing runs against a
real OpenBao in tests/integration/openbao/test_openbao_two_pass.py.
"""

from __future__ import annotations

import base64

import pytest

from keybroker.crypto import signing
from keybroker.crypto.keys import RemoteKey
from keybroker.errors import SigningError
from keybroker.openbao.batcher import Ask
from keybroker.openbao.two_pass import Recorder, Replayer


def test_the_recorder_answers_zeros_of_the_real_length_and_notes_each_ask() -> None:
    recorder = Recorder()
    key = RemoteKey("openbao", "k", "hmac").bind(recorder)
    assert signing.hmac_sha256_hex(key, b"a") == "00" * 32
    assert signing.hmac_sha512_b64(key, b"b") == base64.b64encode(bytes(64)).decode()
    ed = RemoteKey("openbao", "e", "ed25519").bind(recorder)
    assert signing.ed25519_sign(ed, b"c") == bytes(64)
    assert recorder.asks == [
        Ask("k", "hmac", "sha256", b"a"),
        Ask("k", "hmac", "sha512", b"b"),
        Ask("e", "ed25519", None, b"c"),
    ]


def test_the_replayer_gives_the_answers_for_the_same_asks_in_order() -> None:
    asks = [Ask("k", "hmac", "sha256", b"a"), Ask("k", "hmac", "sha256", b"b")]
    replayer = Replayer(asks, [b"\x01" * 32, b"\x02" * 32])
    key = RemoteKey("openbao", "k", "hmac").bind(replayer)
    assert key.hmac("sha256", b"a") == b"\x01" * 32
    assert not replayer.finished
    assert key.hmac("sha256", b"b") == b"\x02" * 32
    assert replayer.finished and not replayer.diverged


@pytest.mark.parametrize(
    "second",
    [
        ("k", "sha256", b"other message"),
        ("k", "sha512", b"a"),  # another hash
        ("other-key", "sha256", b"a"),
    ],
)
def test_the_replayer_refuses_any_other_ask(second: tuple[str, str, bytes]) -> None:
    replayer = Replayer([Ask("k", "hmac", "sha256", b"a")], [b"\x01" * 32])
    name, algorithm, message = second
    with pytest.raises(SigningError):
        RemoteKey("openbao", name, "hmac").bind(replayer).hmac(algorithm, message)
    assert replayer.diverged


def test_the_replayer_refuses_an_ask_beyond_the_recorded_ones() -> None:
    replayer = Replayer([Ask("k", "hmac", "sha256", b"a")], [b"\x01" * 32])
    key = RemoteKey("openbao", "k", "hmac").bind(replayer)
    key.hmac("sha256", b"a")
    with pytest.raises(SigningError):
        key.hmac("sha256", b"a")
    assert replayer.diverged


def test_an_ask_never_shows_its_message() -> None:
    ask = Ask("k", "hmac", "sha256", b"symbol=BTCUSDT&price=1")
    assert "BTCUSDT" not in repr(ask) and "BTCUSDT" not in str(ask)
