"""Key handles: a RemoteKey signs through its signer, never reveals, and padding changes no HMAC."""

from __future__ import annotations

import base64
import hmac
import pickle

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from hypothesis import given
from hypothesis import strategies as st

from keybroker.crypto import signing
from keybroker.crypto.keys import (
    HMAC_BLOCK_BYTES,
    RemoteKey,
    check_public_pem,
    ed25519_public_pem,
    hmac_import_key,
    is_remote,
    wrap_for_import,
)
from keybroker.errors import InvalidInput, SigningError
from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret
from signing_vectors import HmacCase, hmac_cases

CASES = hmac_cases()


class PaddedStore:
    """A RemoteSigner holding keys as OpenBao's transit engine does: imported, padded to 32 bytes.

    Also holds asymmetric private keys, to check what ``sign`` hands back.
    """

    def __init__(self) -> None:
        self.hmac_keys: dict[str, bytes] = {}
        self.private: dict[str, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey] = {}
        self.calls: list[tuple[str, str]] = []

    def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes:
        self.calls.append((key_name, algorithm))
        return hmac.digest(self.hmac_keys[key_name], message, algorithm)

    def sign(self, key_name: str, key_type: str, message: bytes) -> bytes:
        self.calls.append((key_name, key_type))
        key = self.private[key_name]
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_published_vectors_come_out_of_a_padded_remote_key(case: HmacCase) -> None:
    store = PaddedStore()
    store.hmac_keys["k"] = hmac_import_key(case.key_bytes())
    key = RemoteKey("openbao", "k", "hmac").bind(store)
    signed = case.sign(case.credential(key))
    assert case.signature(signed) == case.expected
    algorithm = get_profile(case.exchange).credentials.hmac_algorithm
    assert store.calls == [("k", algorithm)]  # signed remotely, with the exchange's hash


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_short_keys_padded_to_32_bytes_give_the_same_hmac(case: HmacCase) -> None:
    # No published secret is shorter than 32 bytes, so each vector's own key is
    # cut to every shorter length and its message signed with and without the padding.
    algorithm = get_profile(case.exchange).credentials.hmac_algorithm
    message = case.request["url"].encode() + case.request.get("body", "").encode()
    key = case.key_bytes()
    for length in range(1, 32):
        short = key[:length]
        padded = hmac_import_key(short)
        assert len(padded) == 32
        assert hmac.digest(padded, message, algorithm) == hmac.digest(short, message, algorithm)


@given(
    key=st.binary(min_size=1, max_size=128),
    message=st.binary(max_size=256),
    algorithm=st.sampled_from(sorted(HMAC_BLOCK_BYTES)),
)
def test_zero_padding_up_to_the_block_size_never_changes_an_hmac(
    key: bytes, message: bytes, algorithm: str
) -> None:
    padded = key.ljust(HMAC_BLOCK_BYTES[algorithm], b"\0")
    assert hmac.digest(padded, message, algorithm) == hmac.digest(key, message, algorithm)
    assert hmac.digest(hmac_import_key(key), message, algorithm) == hmac.digest(
        key, message, algorithm
    )


@pytest.mark.parametrize("algorithm", sorted(HMAC_BLOCK_BYTES))
def test_the_claim_stops_at_the_block_size(algorithm: str) -> None:
    # Beyond the block size HMAC hashes the key first, so zeros appended there
    # DO change the result: which is why only keys shorter than 32 bytes are padded.
    key = b"k" * HMAC_BLOCK_BYTES[algorithm]
    longer = key + b"\0"
    assert hmac.digest(longer, b"m", algorithm) != hmac.digest(key, b"m", algorithm)
    assert hmac_import_key(longer) == longer  # long keys go in unchanged


def test_import_key_bounds() -> None:
    with pytest.raises(InvalidInput):
        hmac_import_key(b"")
    with pytest.raises(InvalidInput):
        hmac_import_key(b"x" * 513)
    assert hmac_import_key(b"x" * 512) == b"x" * 512


def test_remote_key_never_reveals_and_says_where_it_lives() -> None:
    key = RemoteKey("openbao", "keybroker-bn-00000000", "hmac")
    assert is_remote(key) and not is_remote(Secret("local-not-real"))
    with pytest.raises(SigningError, match="lives in openbao"):
        key.reveal()
    with pytest.raises(SigningError):
        key.reveal_text()
    assert key  # truthy: "no secret" checks must not take it for an empty one
    assert (
        repr(key) == str(key) == f"{key}" == "RemoteKey('openbao', 'keybroker-bn-00000000', 'hmac')"
    )
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(SigningError, match="only a gateway connected"):
        key.hmac("sha256", b"m")  # not bound to a signer
    with pytest.raises(SigningError):
        RemoteKey("openbao", "k", "ed25519").hmac("sha256", b"m")
    with pytest.raises(SigningError):
        key.sign(b"m")
    with pytest.raises(InvalidInput):
        RemoteKey("openbao", "k", "rsa")


def test_a_local_secret_still_signs_locally_with_the_same_primitives() -> None:
    secret = Secret("local-secret-not-real")
    assert (
        signing.hmac_sha256_hex(secret, b"m")
        == hmac.digest(b"local-secret-not-real", b"m", "sha256").hex()
    )
    assert (
        signing.hmac_sha256_hex(b"raw-not-real", b"m")
        == hmac.digest(b"raw-not-real", b"m", "sha256").hex()
    )
    decoded = signing.hmac_sha512_b64(
        Secret(base64.b64encode(b"decoded-not-real")), b"m", lambda s: base64.b64decode(s.reveal())
    )
    assert base64.b64decode(decoded) == hmac.digest(b"decoded-not-real", b"m", "sha512")


def test_binance_ed25519_and_coinbase_es256_sign_through_a_remote_key() -> None:
    import httpx

    store = PaddedStore()
    ed_private = ed25519.Ed25519PrivateKey.generate()
    ec_private = ec.generate_private_key(ec.SECP256R1())
    store.private = {"ed": ed_private, "ec": ec_private}
    binance = Credential(
        "bn", "binance", "test-key-not-real", RemoteKey("openbao", "ed", "ed25519").bind(store),
        key_type="ed25519",
    )  # fmt: skip
    signed = get_profile("binance").sign(
        httpx.Request("GET", "https://api.binance.com/api/v3/account"), binance, now_ms=1
    )
    query = signed.url.query
    payload, _, signature = query.rpartition(b"&signature=")
    raw = base64.b64decode(
        signature.decode().replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    )
    ed_private.public_key().verify(raw, payload)

    coinbase = Credential(
        "cb", "coinbase", "organizations/x/apiKeys/test-not-real",
        RemoteKey("openbao", "ec", "es256").bind(store), key_type="es256",
    )  # fmt: skip
    signed = get_profile("coinbase").sign(
        httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/accounts"), coinbase
    )
    token = signed.headers["authorization"].removeprefix("Bearer ")
    head, claims, sig = token.split(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    ec_private.public_key().verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    assert [call[1] for call in store.calls] == ["ed25519", "es256"]


def test_wrap_for_import_opens_only_with_the_stores_private_key() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = hmac_import_key(b"short-secret-not-real")
    blob = base64.b64decode(wrap_for_import(pem, secret))
    wrapped_key, wrapped = blob[:256], blob[256:]
    ephemeral = private.decrypt(
        wrapped_key,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    assert aes_key_unwrap_with_padding(ephemeral, wrapped) == secret
    assert secret not in blob
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    with pytest.raises(SigningError):
        wrap_for_import(
            weak.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            secret,
        )


def test_public_key_conversions() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    pem = ed25519_public_pem(raw)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert check_public_pem(pem, "ed25519") == pem
    with pytest.raises(SigningError):
        check_public_pem(pem, "es256")
    with pytest.raises(SigningError):
        ed25519_public_pem(raw[:31])
