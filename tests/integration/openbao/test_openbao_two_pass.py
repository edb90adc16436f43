"""The gateway's way of signing with a key in OpenBao, against a real dev server.

``RemoteKeys.sign`` runs the exchange signer twice on the event loop and asks
OpenBao in between (openbao/two_pass.py); ``Batcher`` sends a lone request at
once and batches what piles up meanwhile; ``Wire`` keeps the connection. All
of it is checked here against OpenBao itself: the signed requests must be
byte for byte what local signing gives, and bursts must share transit calls.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import random
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keybroker.crypto.keys import RemoteKey, hmac_import_key
from keybroker.errors import KeyStoreUnavailable
from keybroker.exchanges import get_profile
from keybroker.gateway.remote_keys import RemoteKeys
from keybroker.model import Credential
from keybroker.openbao import Connection, PolicyKey, new_key_name
from keybroker.openbao.batcher import Ask
from keybroker.openbao.setup import (
    ensure_transit,
    generate_key,
    import_hmac_key,
    write_gateway_access,
)
from keybroker.openbao.two_pass import Recorder
from openbao_server import BaoServer, start_server
from signing_vectors import HmacCase, hmac_cases

T = TypeVar("T")
CASES = hmac_cases()
BURST_SECRET = b"burst-secret-not-real-0123456789abcdef"
ORDER = httpx.Request(
    "POST",
    "https://api.binance.com/api/v3/order",
    content=b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.001&price=20000",
    headers={"Content-Type": "application/x-www-form-urlencoded"},
)


@dataclasses.dataclass
class Keys:
    bao: BaoServer
    names: dict[str, str]
    """case id (and "burst", "es256") -> transit key name."""
    es256_pem: str
    gateway_keys: list[PolicyKey]

    def connection(self, role: str) -> Connection:
        """A fresh single-use login for a gateway that may use every key here."""
        with self.bao.admin() as admin:
            access = write_gateway_access(admin, "transit", role, self.gateway_keys)
        return Connection(
            self.bao.addr, "transit", access.role, access.role_id, access.wrapped_secret_id
        )


def _algorithm(case: HmacCase) -> str:
    recorder = Recorder()
    case.sign(case.credential(RemoteKey("openbao", "probe", "hmac").bind(recorder)))
    algorithm = recorder.asks[0].algorithm
    assert algorithm is not None
    return algorithm


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    bao = start_server(tmp_path_factory.mktemp("bao"))
    names: dict[str, str] = {}
    policy: list[PolicyKey] = []
    with bao.admin() as admin:
        ensure_transit(admin, "transit")
        for case in CASES:
            names[case.id] = new_key_name(case.id)
            import_hmac_key(admin, "transit", names[case.id], case.key_bytes())
            policy.append(PolicyKey(names[case.id], "hmac", _algorithm(case)))
        names["burst"] = new_key_name("burst")
        import_hmac_key(admin, "transit", names["burst"], hmac_import_key(BURST_SECRET))
        policy.append(PolicyKey(names["burst"], "hmac", "sha256"))
        names["es256"] = new_key_name("cb")
        es256_pem = generate_key(admin, "transit", names["es256"], "es256")
        policy.append(PolicyKey(names["es256"], "es256"))
    yield Keys(bao, names, es256_pem, policy)
    bao.stop()


def run(work: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(work, 60)

    return asyncio.run(bounded())


async def started(keys: Keys, role: str, timeout_s: float = 5.0) -> RemoteKeys:
    alerts: list[tuple[str, dict[str, Any]]] = []
    remote = await RemoteKeys.start(
        keys.connection(role),
        None,
        alert=lambda name, **fields: alerts.append((name, fields)),
        timeout_s=timeout_s,
    )
    assert remote.state == "ready", remote.state
    remote.alerts = alerts  # type: ignore[attr-defined]
    return remote


def _burst_credential(keys: Keys) -> Credential:
    return Credential(
        "burst",
        "binance",
        "burst-api-key-not-real",
        RemoteKey("openbao", keys.names["burst"], "hmac"),
    )


def _same(a: httpx.Request, b: httpx.Request) -> None:
    assert (a.method, str(a.url)) == (b.method, str(b.url))
    assert a.headers.raw == b.headers.raw
    assert a.read() == b.read()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_two_passes_sign_exactly_as_the_local_key_does(keys: Keys, case: HmacCase) -> None:
    async def main() -> None:
        remote = await started(keys, f"gw-{case.id}"[:60])
        try:
            credential = case.credential(RemoteKey("openbao", keys.names[case.id], "hmac"))
            request = httpx.Request(
                case.request["method"],
                case.request["url"],
                headers=case.request.get("headers", {}),
                content=case.request.get("body", "").encode("utf-8"),
            )
            now = case.now_ms if case.now_ms is not None else 1_700_000_000_000
            profile = get_profile(case.exchange)
            signed = await remote.sign(profile, request, credential, now_ms=now, nonce=case.nonce)
            local = profile.sign(request, case.credential(), now_ms=now, nonce=case.nonce)
            _same(signed, local)
            if case.now_ms == now:  # the published vector itself, where the case pins the time
                assert case.signature(signed) == case.expected
            status = remote.status()
            assert status["threaded"] == 0  # both passes asked the same: no worker thread
            assert status["transit_calls"] == 1 and status["signatures"] == 1
        finally:
            await remote.aclose()

    run(main())


def test_a_lone_request_goes_at_once_and_a_burst_shares_one_call(keys: Keys) -> None:
    profile = get_profile("binance")
    credential = _burst_credential(keys)

    async def main() -> None:
        remote = await started(keys, "gw-burst")
        try:
            batcher = remote.batcher
            assert batcher is not None
            await remote.sign(profile, ORDER, credential, now_ms=1, nonce=None)
            assert (batcher.calls, batcher.signatures) == (1, 1)
            # 40 orders in the same instant: the first is sent by its own caller at
            # once; the 39 that pile up while it is in flight go as one batch.
            signed = await asyncio.gather(
                *(
                    remote.sign(profile, ORDER, credential, now_ms=10 + i, nonce=None)
                    for i in range(40)
                )
            )
            assert (batcher.calls, batcher.signatures) == (3, 41)
            for request in signed:
                payload, _, signature = request.read().rpartition(b"&signature=")
                expected = hmac.new(BURST_SECRET, payload, hashlib.sha256).hexdigest()
                assert signature.decode() == expected
            # Sequential orders keep one connection to OpenBao.
            for i in range(10):
                await remote.sign(profile, ORDER, credential, now_ms=100 + i, nonce=None)
            assert remote.status()["connections"] == 1
            # A batch of many answers comes back whole (OpenBao chunks large answers).
            answers = await batcher.ask(
                [Ask(keys.names["burst"], "hmac", "sha256", b"m%d" % i) for i in range(300)]
            )
            for i, answer in enumerate(answers):
                assert answer == hmac.new(BURST_SECRET, b"m%d" % i, hashlib.sha256).digest()
        finally:
            await remote.aclose()

    run(main())


def test_a_signer_that_asks_something_else_the_second_time_is_signed_in_a_thread(
    keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    binance = get_profile("binance")

    def drifting(
        request: httpx.Request, credential: Credential, now_ms: int, nonce: int | None
    ) -> httpx.Request:  # reads a clock of its own: the two passes sign different times
        return binance.sign_request(request, credential, now_ms + random.randrange(1, 10**9), nonce)

    profile = dataclasses.replace(binance, sign_request=drifting)
    credential = _burst_credential(keys)

    async def main() -> None:
        remote = await started(keys, "gw-drift")
        try:
            signed = await remote.sign(profile, ORDER, credential, now_ms=1, nonce=None)
            await remote.sign(profile, ORDER, credential, now_ms=2, nonce=None)
            assert remote.status()["threaded"] == 2
        finally:
            await remote.aclose()
        payload, _, signature = signed.read().rpartition(b"&signature=")
        assert signature.decode() == hmac.new(BURST_SECRET, payload, hashlib.sha256).hexdigest()

    run(main())
    said = [line.getMessage() for line in caplog.records if "second pass" in line.getMessage()]
    assert len(said) == 1 and "worker thread" in said[0]  # once per exchange, not per request


def test_coinbase_jwts_replay_with_the_pinned_nonce_and_verify(keys: Keys) -> None:
    public = serialization.load_pem_public_key(keys.es256_pem.encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    credential = Credential(
        "cb",
        "coinbase",
        "organizations/x/apiKeys/test-not-real",
        RemoteKey("openbao", keys.names["es256"], "es256"),
        key_type="es256",
    )
    request = httpx.Request("GET", "https://api.coinbase.com/api/v3/brokerage/accounts")

    async def main() -> list[httpx.Request]:
        remote = await started(keys, "gw-cb")
        try:
            profile = get_profile("coinbase")
            signed = [
                await remote.sign(
                    profile, request, credential, now_ms=1_700_000_000_000, nonce=None
                )
                for _ in range(2)
            ]
            assert remote.status()["threaded"] == 0
            return signed
        finally:
            await remote.aclose()

    tokens = [item.headers["authorization"].split(" ")[1] for item in run(main())]
    nonces = set()
    for token in tokens:
        head, claims, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        nonces.add(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    assert len(nonces) == 2  # each JWT still gets a fresh random nonce


def test_openbao_gone_mid_burst_fails_every_request_and_recovers(keys: Keys) -> None:
    profile = get_profile("binance")
    credential = _burst_credential(keys)

    async def main() -> None:
        remote = await started(keys, "gw-outage", timeout_s=1.0)
        try:
            await remote.sign(profile, ORDER, credential, now_ms=1, nonce=None)
            keys.bao.pause()
            try:
                outcomes = await asyncio.gather(
                    *(
                        remote.sign(profile, ORDER, credential, now_ms=2 + i, nonce=None)
                        for i in range(8)
                    ),
                    return_exceptions=True,
                )
            finally:
                keys.bao.resume()
            assert all(isinstance(outcome, KeyStoreUnavailable) for outcome in outcomes), outcomes
            for outcome in outcomes:
                assert "OpenBao" in str(outcome) and "burst-secret" not in str(outcome)
            alerts = [name for name, _ in remote.alerts]  # type: ignore[attr-defined]
            assert alerts == ["openbao_unavailable"]  # once per outage, not per request
            signed = await remote.sign(profile, ORDER, credential, now_ms=50, nonce=None)
            payload, _, signature = signed.read().rpartition(b"&signature=")
            assert signature.decode() == hmac.new(BURST_SECRET, payload, hashlib.sha256).hexdigest()
            assert [name for name, _ in remote.alerts][-1] == "openbao_recovered"  # type: ignore[attr-defined]
        finally:
            await remote.aclose()

    run(main())
