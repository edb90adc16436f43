"""The signing primitives the exchange signers call; nothing here knows an exchange.

    >>> hmac_sha256_hex(b"secret", b"symbol=BTCUSDT&timestamp=1")
    '...64 hex characters...'

HMAC functions take the key as the exchange means it (raw bytes of the secret
string, or its base64 decoding: the caller decides). Asymmetric functions
take the private key as PEM bytes; a PEM that does not parse, or is of the
wrong type, raises ``SigningError`` with no detail about the key.

Every function that uses a key also takes the credential's ``Secret`` itself
(``hmac_sha256_hex(credential.secret, payload)``), with ``decode`` saying how
the exchange turns its secret into the key (base64, a PEM fix-up). A local
``Secret`` is revealed and decoded here, in this process; a
``crypto.keys.RemoteKey`` is asked to sign where it lives (OpenBao), and
``decode`` is not applied, because the key was stored there decoded. So an
exchange signer never knows where its key is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keybroker.crypto.keys import RemoteKey
from keybroker.errors import SigningError
from keybroker.secret import Secret

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


KeyInput = bytes | Secret
"""Key bytes, or a credential's secret (local or remote) for the primitive to use."""
Decode = Callable[[Secret], bytes]
"""How an exchange turns its secret into key bytes; applied to local secrets only."""


# HMAC (RFC 2104) is H((K ^ opad) + H((K ^ ipad) + message)). The two padded
# key blocks are the same for every message of one key, so their hash states
# are made once per key and copied for each signature: two hash-state copies
# instead of a new HMAC context (OpenSSL's one-shot path re-derives both pads
# every call, about as costly as hashing a short order). The cache is keyed by
# the key bytes the signer already holds, like _load_private_key's, bounded,
# and emptied by forget_cached_keys(); the states are as secret as the key.
_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@lru_cache(maxsize=256)
def _pads(key: bytes, algorithm: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    try:
        new = _HASHES[algorithm]
    except KeyError:
        raise SigningError(f"unknown HMAC hash {algorithm!r}") from None
    inner, outer = new(), new()
    block = inner.block_size
    if len(key) > block:
        key = new(key).digest()
    key = key.ljust(block, b"\0")
    inner.update(key.translate(_IPAD))
    outer.update(key.translate(_OPAD))
    return inner, outer


def forget_cached_keys() -> None:
    """Drop every cached HMAC key state and parsed private key (e.g. when the vault locks)."""
    _pads.cache_clear()
    _load_private_key.cache_clear()


def hmac_digest(
    key: KeyInput, message: bytes, algorithm: str, decode: Decode | None = None
) -> bytes:
    """Raw HMAC with ``algorithm`` in {"sha256", "sha384", "sha512"}; equal to ``hmac.digest``."""
    # The local secret is the hot path: one class check, then the cached key state.
    if type(key) is Secret:
        raw = key.reveal() if decode is None else decode(key)
    elif isinstance(key, RemoteKey):
        return key.hmac(algorithm, message)
    elif isinstance(key, Secret):
        raw = key.reveal() if decode is None else decode(key)
    else:
        raw = key
    inner, outer = _pads(raw, algorithm)
    inner = inner.copy()
    inner.update(message)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()


def _b64(digest: bytes) -> str:
    return binascii.b2a_base64(digest, newline=False).decode("ascii")


def hmac_sha256_hex(key: KeyInput, message: bytes, decode: Decode | None = None) -> str:
    return hmac_digest(key, message, "sha256", decode).hex()


def hmac_sha256_b64(key: KeyInput, message: bytes, decode: Decode | None = None) -> str:
    return _b64(hmac_digest(key, message, "sha256", decode))


def hmac_sha384_hex(key: KeyInput, message: bytes, decode: Decode | None = None) -> str:
    return hmac_digest(key, message, "sha384", decode).hex()


def hmac_sha512_hex(key: KeyInput, message: bytes, decode: Decode | None = None) -> str:
    return hmac_digest(key, message, "sha512", decode).hex()


def hmac_sha512_b64(key: KeyInput, message: bytes, decode: Decode | None = None) -> str:
    return _b64(hmac_digest(key, message, "sha512", decode))


def _pem_of(key: KeyInput, decode: Decode | None) -> bytes:
    if isinstance(key, Secret):
        return key.reveal() if decode is None else decode(key)
    return key


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha512_hex(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


@lru_cache(maxsize=256)
def _load_private_key(pem: bytes) -> PrivateKey:
    # Parsing a PEM costs far more than signing with it; the cache is keyed by
    # the PEM bytes that the caller already holds, so it adds no new copy of
    # the secret beyond the parsed key object itself.
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningError("private key is not a PEM this key type can use") from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise SigningError("private key type is not supported (RSA, Ed25519 or EC P-256)")
    return key


def load_private_key(pem: bytes, key_type: str) -> PrivateKey:
    """Parse a PEM private key and check it is of ``key_type`` (rsa, ed25519, es256)."""
    key = _load_private_key(bytes(pem))
    expected: type = {
        "rsa": rsa.RSAPrivateKey,
        "ed25519": ed25519.Ed25519PrivateKey,
        "es256": ec.EllipticCurvePrivateKey,
    }.get(key_type, type(None))
    if not isinstance(key, expected):
        raise SigningError(f"private key is not a {key_type} key")
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
        raise SigningError("es256 keys must be on curve P-256")
    return key


def rsa_sha256_b64(pem: KeyInput, message: bytes) -> str:
    """RSASSA-PKCS1-v1_5 with SHA-256, base64 (local keys only: no store holds RSA keys here)."""
    key = load_private_key(_pem_of(pem, None), "rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def ed25519_sign(pem: KeyInput, message: bytes, decode: Decode | None = None) -> bytes:
    if isinstance(pem, RemoteKey):
        return pem.sign(message)
    key = load_private_key(_pem_of(pem, decode), "ed25519")
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.sign(message)


def ed25519_b64(pem: KeyInput, message: bytes, decode: Decode | None = None) -> str:
    return base64.b64encode(ed25519_sign(pem, message, decode)).decode("ascii")


def es256_raw(pem: KeyInput, message: bytes, decode: Decode | None = None) -> bytes:
    """ECDSA P-256 / SHA-256 as JWS wants it: raw r‖s, 64 bytes, not DER."""
    if isinstance(pem, RemoteKey):
        return pem.sign(message)
    key = load_private_key(_pem_of(pem, decode), "es256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_key_pem(pem: bytes, key_type: str) -> str:
    """The public half of a private key, as PEM (what users register at the exchange)."""
    key = load_private_key(pem, key_type)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
