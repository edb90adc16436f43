"""The HMAC signing vectors of tests/vectors/exchanges as one list: request, key, signature.

    >>> for case in hmac_cases(): assert case.signature(case.sign(credential)) == case.expected

Used where the same published answers must come out of another way of
holding the key: a ``RemoteKey`` padded as OpenBao stores it
(tests/unit/crypto/test_keys.py), and OpenBao's transit engine itself
(tests/integration/openbao/test_openbao_transit.py). Binance's and Kraken's are
their published examples; Bitfinex (HMAC-SHA384) and Coinbase Exchange
(base64-decoded key) are ccxt oracles, kept to cover the other hashes and
key decodings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from keybroker.exchanges import get_profile
from keybroker.model import Credential
from keybroker.secret import Secret

VECTORS = Path(__file__).parent / "vectors" / "exchanges"


@dataclass(frozen=True)
class HmacCase:
    id: str
    exchange: str
    api_key: str
    secret: str
    passphrase: str | None
    request: dict[str, Any]
    now_ms: int | None
    nonce: int | None
    expected: str
    signature: Callable[[httpx.Request], str]

    def credential(self, secret: Secret | None = None) -> Credential:
        return Credential(
            f"vector-{self.exchange}",
            self.exchange,
            self.api_key,
            secret if secret is not None else Secret(self.secret),
            passphrase=None if self.passphrase is None else Secret(self.passphrase),
        )

    def sign(self, credential: Credential) -> httpx.Request:
        spec = self.request
        request = httpx.Request(
            spec["method"],
            spec["url"],
            headers=spec.get("headers", {}),
            content=spec.get("body", "").encode("utf-8"),
        )
        return get_profile(self.exchange).sign(
            request, credential, now_ms=self.now_ms, nonce=self.nonce
        )

    def key_bytes(self) -> bytes:
        """What the exchange keys its HMAC with (the secret, or its base64 decoding)."""
        return get_profile(self.exchange).hmac_key(Secret(self.secret))


def _load(name: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((VECTORS / name).read_text("utf-8"))["vectors"]
    return vectors


def _binance_signature(signed: httpx.Request) -> str:
    raw = signed.read() or signed.url.query
    return raw.rpartition(b"signature=")[2].decode()


def hmac_cases() -> list[HmacCase]:
    cases = []
    for v in _load("binance.json"):
        if v["kind"] == "published" and v["credential"].get("key_type", "hmac") == "hmac":
            cases.append(
                HmacCase(
                    v["id"], "binance", v["credential"]["api_key"], v["credential"]["secret"],
                    None, v["request"], v["now_ms"], None, v["expected"]["signature"],
                    _binance_signature,
                )
            )  # fmt: skip
    for v in _load("kraken.json"):
        cases.append(
            HmacCase(
                v["id"], "kraken", v["credential"]["api_key"], v["credential"]["secret"], None,
                v["request"], None, v["nonce"], v["expected"]["API-Sign"],
                lambda signed: signed.headers["API-Sign"],
            )
        )  # fmt: skip
    for v in _load("bitfinex.json"):
        cases.append(
            HmacCase(
                v["id"], "bitfinex", v["api_key"], v["secret"], None, v["request"], None,
                v["nonce"], v["expected"]["bfx-signature"],
                lambda signed: signed.headers["bfx-signature"],
            )
        )  # fmt: skip
    for v in _load("coinbase-exchange.json"):
        cases.append(
            HmacCase(
                v["id"], "coinbase-exchange", v["credential"]["api_key"],
                v["credential"]["secret"], v["credential"]["passphrase"], v["request"],
                v["now_ms"], None, v["expected"]["CB-ACCESS-SIGN"],
                lambda signed: signed.headers["CB-ACCESS-SIGN"],
            )
        )  # fmt: skip
    return cases
