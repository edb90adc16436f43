"""AES-256-GCM sealing: known answers, round trips, and one opaque failure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybroker.crypto.aead import _seal_with_nonce, new_key, seal, unseal
from keybroker.errors import RecordTampered

# NIST GCM test case 16 (AES-256, 96-bit IV, with AAD), from the GCM specification
# (McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16).
NIST_KEY = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
NIST_IV = bytes.fromhex("cafebabefacedbaddecaf888")
NIST_PT = bytes.fromhex(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
NIST_AAD = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
NIST_CT = bytes.fromhex(
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
)
NIST_TAG = bytes.fromhex("76fc6ece0f4e1768cddf8853bb2d551b")


def test_known_answer() -> None:
    sealed = _seal_with_nonce(NIST_KEY, NIST_PT, NIST_AAD, NIST_IV)
    assert sealed == NIST_IV + NIST_CT + NIST_TAG
    assert unseal(NIST_KEY, sealed, NIST_AAD) == NIST_PT


@given(plaintext=st.binary(), aad=st.binary())
def test_unseal_inverts_seal(plaintext: bytes, aad: bytes) -> None:
    key = new_key()
    assert unseal(key, seal(key, plaintext, aad), aad) == plaintext


@given(position=st.integers(min_value=0, max_value=12 + 5 + 16 - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_fails(position: int, bit: int) -> None:
    key = new_key()
    sealed = bytearray(seal(key, b"hello", b"aad"))
    sealed[position] ^= 1 << bit
    with pytest.raises(RecordTampered):
        unseal(key, bytes(sealed), b"aad")


def test_wrong_aad_wrong_key_and_short_input_give_the_same_error() -> None:
    key = new_key()
    sealed = seal(key, b"hello", b"record-1")
    messages = set()
    for attempt in (
        lambda: unseal(key, sealed, b"record-2"),
        lambda: unseal(new_key(), sealed, b"record-1"),
        lambda: unseal(key, sealed[:10], b"record-1"),
    ):
        with pytest.raises(RecordTampered) as info:
            attempt()
        messages.add(str(info.value))
    assert messages == {"record failed authentication"}


def test_nonces_are_fresh() -> None:
    key = new_key()
    assert seal(key, b"x", b"") != seal(key, b"x", b"")
