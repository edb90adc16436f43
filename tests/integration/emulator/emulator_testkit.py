"""Hand-built exchange clients for the emulator tests, signed with hashlib/hmac here.

Nothing in this file imports keybroker.exchanges or keybroker.crypto: the
requests are signed by the exchanges' documented rules, written out again,
so that the emulator is checked against the documentation and not against
our own signers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keybroker.emulator import ApiKey
from keybroker.secret import Secret

BINANCE_SECRET = "test-binance-secret-not-real"
OKX_SECRET = "test-okx-secret-not-real"
OKX_PASSPHRASE = "test-okx-passphrase"

BINANCE_KEY = ApiKey("test-binance-key", Secret(BINANCE_SECRET))
OKX_KEY = ApiKey("test-okx-key", Secret(OKX_SECRET), Secret(OKX_PASSPHRASE))


Serve = Callable[
    ..., httpx.Client
]  # the ``serve`` fixture: serve(exchange, keys=, config=, clock=)


def system_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Binance:
    """A Binance REST client as the docs describe it: HMAC hex or Ed25519 base64 signatures."""

    http: httpx.Client
    api_key: str = BINANCE_KEY.api_key
    secret: str = BINANCE_SECRET
    ed25519: Ed25519PrivateKey | None = None
    now_ms: Callable[[], int] = system_ms

    def sign(self, payload: str) -> str:
        if self.ed25519 is not None:
            raw = self.ed25519.sign(payload.encode())
            return quote(base64.b64encode(raw).decode(), safe="")
        return hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()

    def signed(
        self,
        method: str,
        path: str,
        params: Mapping[str, object] | None = None,
        *,
        timestamp: int | None = None,
        sign_with: str | None = None,
        api_key: str | None = None,
    ) -> httpx.Response:
        """Sign ``params`` + timestamp; query string for GET/DELETE, form body otherwise."""
        fields = {**(params or {}), "timestamp": self.now_ms() if timestamp is None else timestamp}
        payload = urlencode(fields, quote_via=quote)
        if sign_with is not None:
            signature = hmac.new(sign_with.encode(), payload.encode(), hashlib.sha256).hexdigest()
        else:
            signature = self.sign(payload)
        signed = f"{payload}&signature={signature}"
        headers = {"X-MBX-APIKEY": self.api_key if api_key is None else api_key}
        if method in ("GET", "DELETE"):
            return self.http.request(method, f"{path}?{signed}", headers=headers)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.http.request(method, path, content=signed, headers=headers)

    def public(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(path, params=params)


@dataclass
class Okx:
    """An OKX v5 client: base64 HMAC over timestamp + METHOD + path?query + body."""

    http: httpx.Client
    api_key: str = OKX_KEY.api_key
    secret: str = OKX_SECRET
    passphrase: str = OKX_PASSPHRASE
    demo: bool = True
    now_ms: Callable[[], int] = system_ms

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, object] | None = None,
        body: object = None,
        timestamp_ms: int | None = None,
        secret: str | None = None,
        passphrase: str | None = None,
    ) -> httpx.Response:
        moment = self.now_ms() if timestamp_ms is None else timestamp_ms
        timestamp = datetime.fromtimestamp(moment / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        timestamp += f"{moment % 1000:03d}Z"
        target = path + ("?" + urlencode(params) if params else "")
        text = "" if body is None else json.dumps(body, separators=(",", ":"))
        prehash = f"{timestamp}{method}{target}{text}".encode()
        key = (self.secret if secret is None else secret).encode()
        signature = base64.b64encode(hmac.new(key, prehash, hashlib.sha256).digest()).decode()
        headers = {
            "OK-ACCESS-KEY": self.api_key,
            "OK-ACCESS-SIGN": signature,
            "OK-ACCESS-TIMESTAMP": timestamp,
            "OK-ACCESS-PASSPHRASE": self.passphrase if passphrase is None else passphrase,
            "Content-Type": "application/json",
        }
        if self.demo:
            headers["x-simulated-trading"] = "1"
        return self.http.request(method, target, content=text.encode(), headers=headers)


def journal(http: httpx.Client) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = http.get("/__emulator__/journal").json()["entries"]
    return entries


def orders_in(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for entry in entries:
        found += entry["orders"]  # type: ignore[arg-type]
    return found
