"""Key handles: a key that signs without the caller ever holding it.

    >>> key = RemoteKey("openbao", "keybroker-bn-1a2b3c4d", "hmac")   # what the vault returns
    >>> bound = key.bind(signer)                                      # what the gateway signs with
    >>> signing.hmac_sha256_hex(bound, b"symbol=BTCUSDT&timestamp=1")

An exchange signer calls the primitives of ``crypto.signing`` with
``credential.secret``. When the secret is a plain ``Secret`` the primitive
uses its bytes in this process; when it is a ``RemoteKey`` the primitive asks
the key's ``RemoteSigner`` (OpenBao's transit engine, ``keybroker.openbao``)
for the HMAC or signature. No exchange module knows which it got.

A ``RemoteKey`` is a ``Secret`` with nothing inside: ``reveal()`` refuses, so a
code path that wants the bytes fails loudly instead of signing with an empty
key. What the vault stores for it is the store's name and the key's name
there, never key material.

This module also holds the two pieces of cryptography that putting an
exchange's secret into OpenBao needs (``hmac_import_key``, ``wrap_for_import``)
and the public-key conversions for keys generated there.
"""

from __future__ import annotations

import base64
import os
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from keybroker.errors import InvalidInput, SigningError
from keybroker.secret import Secret

# The algorithms a remote HMAC is asked for, in the spelling of hmac.digest().
HMAC_ALGORITHMS = ("sha256", "sha384", "sha512")
# OpenBao's transit engine takes HMAC keys of 32 to 512 bytes.
MIN_HMAC_KEY_BYTES = 32
MAX_HMAC_KEY_BYTES = 512
# HMAC's block size per hash: a key up to this long is zero-padded to it by
# HMAC itself (RFC 2104 §2), so padding it ourselves to 32 bytes changes nothing.
HMAC_BLOCK_BYTES = {"sha256": 64, "sha384": 128, "sha512": 128}


class RemoteSigner(Protocol):
    """Signs with keys it holds by name; blocks until the answer is there.

    Both methods raise ``KeyStoreUnavailable`` when the store cannot be
    reached and ``KeyStoreError`` when it refuses; neither ever falls back to
    anything local.
    """

    def hmac(self, key_name: str, algorithm: str, message: bytes) -> bytes: ...

    def sign(self, key_name: str, key_type: str, message: bytes) -> bytes: ...


class RemoteKey(Secret):
    """A key held by a signing service, known here by its name only.

    ``key_type`` is ``hmac``, ``ed25519`` or ``es256``. ``sign`` returns what
    the local primitives return: raw Ed25519 signatures, and ES256 as raw
    ``r‖s`` (64 bytes), never DER.
    """

    __slots__ = ("key_name", "key_type", "signer", "store")

    def __init__(
        self, store: str, key_name: str, key_type: str, signer: RemoteSigner | None = None
    ) -> None:
        super().__init__(b"")
        if not store or not key_name:
            raise InvalidInput("a remote key needs a store and a key name")
        if key_type not in ("hmac", "ed25519", "es256"):
            raise InvalidInput(f"remote keys are hmac, ed25519 or es256 keys, not {key_type}")
        self.store = store
        self.key_name = key_name
        self.key_type = key_type
        self.signer = signer

    def bind(self, signer: RemoteSigner) -> RemoteKey:
        """The same key, signing through ``signer``."""
        return RemoteKey(self.store, self.key_name, self.key_type, signer)

    def hmac(self, algorithm: str, message: bytes) -> bytes:
        """The raw HMAC of ``message`` with this key; SigningError for a key of another type."""
        if self.key_type != "hmac":
            raise SigningError(f"a {self.key_type} key cannot compute an HMAC")
        return self._signer().hmac(self.key_name, algorithm, message)

    def sign(self, message: bytes) -> bytes:
        """The raw signature of ``message`` (Ed25519, or ES256 as r‖s)."""
        if self.key_type == "hmac":
            raise SigningError("an hmac key cannot make a signature")
        return self._signer().sign(self.key_name, self.key_type, message)

    def _signer(self) -> RemoteSigner:
        if self.signer is None:
            raise SigningError(
                f"this key lives in {self.store}; only a gateway connected to it can sign"
            )
        return self.signer

    # Every way to the bytes refuses: there are none here, and an empty key
    # must never be mistaken for one.
    def reveal(self) -> bytes:
        raise SigningError(f"this key lives in {self.store} and cannot be revealed")

    def reveal_text(self) -> str:
        raise SigningError(f"this key lives in {self.store} and cannot be revealed")

    def wipe(self) -> None:
        return None

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteKey):
            return NotImplemented
        return (self.store, self.key_name, self.key_type) == (
            other.store,
            other.key_name,
            other.key_type,
        )

    __hash__ = None

    def __repr__(self) -> str:
        return f"RemoteKey({self.store!r}, {self.key_name!r}, {self.key_type!r})"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)


def is_remote(secret: Secret) -> bool:
    """Whether ``secret`` is a handle to a key held elsewhere."""
    return isinstance(secret, RemoteKey)


def hmac_import_key(key: bytes) -> bytes:
    """``key`` as OpenBao's transit engine takes it: zero-padded to 32 bytes when shorter.

    HMAC pads every key shorter than the hash's block size with zeros to that
    size (RFC 2104 §2): 64 bytes for SHA-256, 128 for SHA-384 and SHA-512.
    Padding to 32 first therefore gives the very same HMAC for every exchange
    secret (tests/unit/crypto/test_keys.py proves it on the published vectors).
    Raises InvalidInput for an empty key or one longer than 512 bytes.
    """
    if not key:
        raise InvalidInput("secret is empty")
    if len(key) > MAX_HMAC_KEY_BYTES:
        raise InvalidInput(f"an HMAC secret of more than {MAX_HMAC_KEY_BYTES} bytes cannot go in")
    return key.ljust(MIN_HMAC_KEY_BYTES, b"\0")


def wrap_for_import(wrapping_key_pem: bytes, key: bytes) -> str:
    """The ``ciphertext`` of a transit BYOK import: base64(RSA-OAEP(aes) ‖ AES-KWP(aes, key)).

    A fresh AES-256 key wraps ``key`` (RFC 5649 key wrap with padding) and is
    itself encrypted to the engine's RSA wrapping key with OAEP/SHA-256, so
    the secret crosses the network readable only inside OpenBao.
    """
    try:
        public = serialization.load_pem_public_key(wrapping_key_pem)
    except (ValueError, TypeError):
        raise SigningError("the store's wrapping key is not an RSA public key") from None
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < 2048:
        raise SigningError("the store's wrapping key is not an RSA public key of 2048+ bits")
    ephemeral = bytearray(os.urandom(32))
    try:
        wrapped_key = public.encrypt(
            bytes(ephemeral),
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
        wrapped = aes_key_wrap_with_padding(bytes(ephemeral), key)
    finally:
        ephemeral[:] = bytes(len(ephemeral))
    return base64.b64encode(wrapped_key + wrapped).decode("ascii")


def ed25519_public_pem(raw: bytes) -> str:
    """A raw 32-byte Ed25519 public key as SubjectPublicKeyInfo PEM (what Binance takes)."""
    try:
        public = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise SigningError(
            "the store returned an Ed25519 public key that is not 32 bytes"
        ) from None
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def check_public_pem(pem: str, key_type: str) -> str:
    """``pem`` if it is a public ``key_type`` key (ed25519, es256 on P-256); SigningError else."""
    try:
        public = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise SigningError("the store returned a public key that is not PEM") from None
    if key_type == "ed25519" and isinstance(public, ed25519.Ed25519PublicKey):
        return pem
    if (
        key_type == "es256"
        and isinstance(public, ec.EllipticCurvePublicKey)
        and isinstance(public.curve, ec.SECP256R1)
    ):
        return pem
    raise SigningError(f"the store returned a public key that is not {key_type}")
