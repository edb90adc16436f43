"""The emulator's own signature checks, written from the exchanges' documentation.

    >>> binance_signature_matches(key, payload=b"symbol=BTCUSDT&timestamp=1", signature="ab12")
    >>> okx_signature_matches(key, prehash=b"2026-01-15T07:00:00.123ZGET/api/v5/...", signature="")

Deliberately independent of ``keybroker.exchanges`` and ``keybroker.crypto``
(a layer test holds this): if our signers and this module shared code, a bug
in the signer would be mirrored here and every test would still pass.
Comparisons are constant-time. ``cryptography`` is used only to verify
Ed25519 and RSA signatures with public keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache
from urllib.parse import unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from keybroker.emulator.keys import ApiKey
from keybroker.errors import InvalidInput


def binance_payload(query: bytes, body: bytes) -> tuple[bytes, str | None]:
    """(what was signed, the decoded ``signature``): query + body, the signature taken out.

    Binance signs the query string concatenated, with no separator, to the
    form body, exactly as sent, minus the ``signature`` parameter itself.
    """
    signature: str | None = None
    parts = []
    for part in (query, body):
        kept = []
        for item in part.split(b"&") if part else []:
            if item.startswith(b"signature="):
                signature = unquote_plus(item[len(b"signature=") :].decode("ascii", "replace"))
            else:
                kept.append(item)
        parts.append(b"&".join(kept))
    return parts[0] + parts[1], signature


def binance_signature_matches(key: ApiKey, payload: bytes, signature: str) -> bool:
    """HMAC-SHA256 hex (either case), or Ed25519 / RSA-PKCS1v15-SHA256 base64 (percent-decoded)."""
    if key.key_type == "hmac":
        expected = hmac.new(key.secret.reveal(), payload, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature.lower())
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    public_key = _public_key(key.secret.reveal())
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey) and key.key_type == "ed25519":
            public_key.verify(raw, payload)
            return True
        if isinstance(public_key, rsa.RSAPublicKey) and key.key_type == "rsa":
            public_key.verify(raw, payload, padding.PKCS1v15(), hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    return False


def okx_signature_matches(key: ApiKey, prehash: bytes, signature: str) -> bool:
    """base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath + body))."""
    expected = base64.b64encode(hmac.new(key.secret.reveal(), prehash, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.encode("ascii", "replace"))


def check_public_key(key: ApiKey) -> None:
    """InvalidInput unless an ed25519/rsa key's ``secret`` is a PEM public key of that type."""
    if key.key_type == "hmac":
        return
    try:
        public_key = _public_key(key.secret.reveal())
    except ValueError as exc:
        raise InvalidInput(f"key {key.api_key}: secret must be a PEM public key") from exc
    wanted = ed25519.Ed25519PublicKey if key.key_type == "ed25519" else rsa.RSAPublicKey
    if not isinstance(public_key, wanted):
        raise InvalidInput(f"key {key.api_key}: the PEM is not an {key.key_type} public key")


@lru_cache(maxsize=64)
def _public_key(pem: bytes) -> object:
    return serialization.load_pem_public_key(pem)
