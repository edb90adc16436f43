"""HMAC from cached key pads equals the standard library's HMAC, for every key length and hash."""

from __future__ import annotations

import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.crypto import signing


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=300),  # shorter than, equal to and longer than every block size
    st.binary(max_size=500),
    st.sampled_from(["sha256", "sha384", "sha512"]),
)
def test_cached_pads_give_the_rfc_2104_hmac(key: bytes, message: bytes, algorithm: str) -> None:
    assert signing.hmac_digest(key, message, algorithm) == hmac.digest(key, message, algorithm)
    # A second message under the same (now cached) key: the cached states are not consumed.
    assert signing.hmac_digest(key, message + b"x", algorithm) == hmac.digest(
        key, message + b"x", algorithm
    )


def test_the_encodings_match_the_standard_library() -> None:
    key, message = b"not-a-real-secret", b"GET/api/v5/account/balance"
    digest = hmac.digest(key, message, "sha256")
    assert signing.hmac_sha256_hex(key, message) == digest.hex()
    assert signing.hmac_sha256_b64(key, message) == __import__("base64").b64encode(digest).decode()


def test_forgetting_drops_every_cached_key_state() -> None:
    signing.hmac_sha256_hex(b"not-a-real-secret", b"m")
    assert signing._pads.cache_info().currsize > 0
    signing.forget_cached_keys()
    assert signing._pads.cache_info().currsize == 0
    assert signing._load_private_key.cache_info().currsize == 0
