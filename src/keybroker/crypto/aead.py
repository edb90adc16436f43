"""AES-256-GCM with associated data: how every vault record and the data key are sealed.

    >>> sealed = seal(key, b"plaintext", associated_data=b"vault-id|record-id|...")
    >>> unseal(key, sealed, associated_data=b"vault-id|record-id|...")
    b'plaintext'

The layout of a sealed value is ``nonce (12 bytes) || ciphertext || tag (16)``.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keybroker.errors import RecordTampered

KEY_BYTES = 32
NONCE_BYTES = 12


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Encrypt and authenticate ``plaintext``, binding it to ``associated_data``."""
    return _seal_with_nonce(key, plaintext, associated_data, os.urandom(NONCE_BYTES))


def _seal_with_nonce(key: bytes, plaintext: bytes, associated_data: bytes, nonce: bytes) -> bytes:
    # Separate from seal() so known-answer tests can fix the nonce; nothing else may.
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def unseal(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Decrypt one sealed value; raise RecordTampered if anything about it changed.

    The associated data binds a ciphertext to its vault, row and metadata, so a
    ciphertext pasted into another row, or a row whose name or scopes were
    edited, fails here instead of decrypting. The error says nothing about
    which check failed (wrong key, edited bytes, moved record): one answer for
    all, so it cannot be used as an oracle.
    """
    if len(sealed) < NONCE_BYTES + 16:
        raise RecordTampered("record failed authentication")
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, body, associated_data)
    except InvalidTag:
        raise RecordTampered("record failed authentication") from None
