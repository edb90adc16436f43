"""The bypass corpus: no spelling of a withdrawal, transfer or key-management call leaves.

For every profile in ``keybroker.exchanges.PROFILES`` and every catalogue
entry of kind withdraw, transfer or key_management, the request is sent to a
real gateway in many disguises (case, percent-encoded slashes and dots,
doubled slashes, dot segments, a trailing slash, method-override headers,
repeated query parameters, the same fields in query and body, an oversized
body, a body that is not UTF-8). The upstream is real and records every
byte it gets: the emulator's journal for Binance and OKX, a recording HTTP
server on 127.0.0.1 for the others. Each attempt must be refused, never
reach the upstream, and leave exactly one ``denied`` row in the audit log.

Paths are sent with ``http.client`` because httpx (like most clients)
resolves dot segments before sending; the point is to send the raw bytes.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from gateway_testkit import (
    StartEmulator,
    StartGateway,
    make_vault,
    new_token,
)
from recording_server import RecordingServer, recording_server

from keybroker.audit import read_rows, verify_chain
from keybroker.exchanges import PROFILES
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

DANGEROUS = ("withdraw", "transfer", "key_management")
RULE_FOR_KIND = {
    "withdraw": "never_withdraw",
    "key_management": "never_key_management",
    "transfer": "transfers",
}
# Trading granted, transfers not: the rule that refuses a transfer is "transfers" itself.
TRADING = Policy(scopes=("read", "trade"), symbols=("BTCUSDT", "BTC-USDT", "XBTUSD"))
OVERSIZED = 1024 * 1024 + 1  # one byte over the gateway's default max_body_bytes
FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Attempt:
    """One disguise of one catalogue entry, exactly as the bytes go out."""

    variant: str
    kind: str
    method: str
    target: str  # path and query after /{credential}
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def _filled(pattern: str) -> str:
    return re.sub(r"\{[^/]+?\}", "kb0test1", pattern)


def _split_first(path: str) -> tuple[str, str]:
    """'/a/b/c' -> ('/a', '/b/c'); a one-segment path gives ('', path)."""
    second = path.find("/", 1)
    return ("", path) if second == -1 else (path[:second], path[second:])


def _other_method(method: str) -> str:
    return "GET" if method != "GET" else "POST"


def attempts_for(method: str, pattern: str, kind: str) -> list[Attempt]:
    """Every disguise of one endpoint (all of them: the corpus is small enough to send whole)."""
    path = _filled(pattern)
    head, tail = _split_first(path)
    fields = b"coin=BTC&amount=1&address=kb-test-address-not-real"
    form = (("content-type", FORM),)
    plain = {
        "canonical": path,
        "upper case": path.upper(),
        "mixed case": "".join(c.upper() if i % 2 else c for i, c in enumerate(path)),
        "%2F for a slash": (head + "%2F" + tail[1:]) if head else "/%2F" + path[1:],
        "%252F double-encoded": (head + "%252F" + tail[1:]) if head else path,
        "%2e segment": head + "/%2e" + tail,
        "%2e%2e after a decoy": head + "/decoy/%2e%2e" + tail,
        "percent-encoded letter": "/%" + format(ord(path[1]), "02x") + path[2:],
        "doubled slashes": path.replace("/", "//"),
        "dot segment": head + "/." + tail,
        "x/../": "/x/.." + path,
        "decoy/../ inside": head + "/decoy/.." + tail,
        "backslash": head + "\\" + tail[1:] if head else path,
        "trailing slash": path + "/",
        "trailing dot segment": path + "/.",
    }
    attempts = [Attempt(name, kind, method, target, form, fields) for name, target in plain.items()]
    other = _other_method(method)
    attempts += [
        Attempt(
            "sent as another verb, override names the real one",
            kind,
            other,
            path,
            (("x-http-method-override", method), *form),
            fields,
        ),
        Attempt(
            "real verb, override names a harmless one",
            kind,
            method,
            path,
            (("x-http-method-override", other), ("x-method-override", other), *form),
            fields,
        ),
        Attempt("x-http-method header", kind, other, path, (("x-http-method", method), *form)),
        Attempt(
            "repeated query parameters",
            kind,
            method,
            path + "?amount=1&amount=1000000&address=a&address=b&coin=BTC&coin=ETH",
        ),
        Attempt(
            "query and body disagree",
            kind,
            method,
            path + "?coin=BTC&amount=1",
            form,
            b"coin=ETH&amount=1000000",
        ),
        Attempt(
            "json body under a form content type",
            kind,
            method,
            path + "?amount=1",
            form,
            json.dumps({"coin": "BTC", "amount": "1000"}).encode(),
        ),
        Attempt(
            "path spelled in the query",
            kind,
            method,
            "/decoy?path=" + path + "&" + fields.decode(),
            form,
            fields,
        ),
        Attempt("oversized body", kind, method, path, form, b"a=" + b"1" * (OVERSIZED - 2)),
        Attempt(
            "non-UTF-8 form body",
            kind,
            method,
            path,
            form,
            b"coin=BTC&amount=\xff\xfe1&address=\xc3(",
        ),
        Attempt(
            "non-UTF-8 json body",
            kind,
            method,
            path,
            (("content-type", "application/json"),),
            b'{"coin": "\xff\xfe", "amount": "1"}',
        ),
    ]
    return attempts


def corpus(exchange: str) -> list[Attempt]:
    """The attempts for every withdraw, transfer and key-management entry of one profile."""
    profile = PROFILES[exchange]
    found: list[Attempt] = []
    for (method, pattern), endpoint in profile.catalogue.endpoints.items():
        if endpoint.kind in DANGEROUS:
            found += attempts_for(method, pattern, endpoint.kind)
    return found


def expected(attempt: Attempt) -> tuple[int, str]:
    """(status, rule): an oversized body is refused unread; everything else by its kind's rule."""
    if attempt.variant == "oversized body":
        return 413, "body_too_large"
    if attempt.variant == "path spelled in the query":
        return 403, "unknown_endpoint"  # /decoy is no endpoint; the query is no path
    return 403, RULE_FOR_KIND[attempt.kind]


# -- the upstreams and their key material ------------------------------------------------------


def _pem_ec_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def material_for(exchange: str) -> KeyMaterial:
    """Obviously fake key material each profile accepts (never used: nothing is signed)."""
    fake_b64 = "dGVzdC1zZWNyZXQtbm90LXJlYWwtYnlwYXNzLWNvcnB1cy1DQU5BUlk="
    if exchange == "coinbase":
        return KeyMaterial(
            "organizations/test/apiKeys/not-real", Secret(_pem_ec_key()), key_type="es256"
        )
    passphrase = Secret("test-passphrase-not-real") if PROFILES[exchange].needs_passphrase else None
    return KeyMaterial(f"test-{exchange}-key-not-real", Secret(fake_b64), passphrase)


@dataclass
class Upstream:
    """What the gateway would forward to, and how to ask it what it received."""

    url: str
    received: Callable[[], list[object]]


@pytest.fixture
def upstream(emulator: StartEmulator) -> Iterator[Callable[[str], Upstream]]:
    servers: list[RecordingServer] = []

    def start(exchange: str) -> Upstream:
        if exchange in ("binance", "okx"):
            running = emulator(exchange)
            return Upstream(running.url, lambda: list(running.journal()))
        server = RecordingServer().start()
        servers.append(server)
        return Upstream(server.url, lambda: list(server.received()))

    yield start
    for server in servers:
        server.stop()


def _gateway_for(
    tmp_path: Path, gateway: StartGateway, exchange: str, base_url: str
) -> tuple[str, str, Path]:
    """A vault with credential ``x`` at ``base_url``: (gateway URL, token, audit path)."""
    if exchange in ("binance", "okx"):
        vault = make_vault(tmp_path / "home", {"x": (exchange, base_url)}, policies={"x": TRADING})
    else:
        vault = make_vault(tmp_path / "home", {})
        material = material_for(exchange)
        vault.add("x", exchange, material, base_url=base_url, scopes=("read", "trade"))
        vault.set_policy("x", TRADING.to_json())
    token = new_token(vault, "bypass-bot", ["x"])
    running = gateway(vault, token)
    return running.url, token, running.audit_path


class Sender:
    """http.client connections, one per thread, sending raw request bytes as given."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def send(self, attempt: Attempt) -> tuple[int, dict[str, object]]:
        for _ in range(2):  # a connection the server closed after a refusal is reopened once
            connection = self._connection()
            try:
                connection.putrequest(
                    attempt.method, "/x" + attempt.target, skip_accept_encoding=True
                )
                connection.putheader("X-Keybroker-Token", self.token)
                for name, value in attempt.headers:
                    connection.putheader(name, value)
                connection.putheader("Content-Length", str(len(attempt.body)))
                connection.endheaders(attempt.body or None)
                response = connection.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
                    self._local.connection = None
                return response.status, json.loads(data)
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
        raise AssertionError(f"no answer for {attempt.variant} {attempt.method} {attempt.target}")

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()


def test_the_corpus_covers_every_dangerous_entry_of_every_profile() -> None:
    assert len(PROFILES) == 9
    for name, profile in PROFILES.items():
        entries = [e for e in profile.catalogue.endpoints.values() if e.kind in DANGEROUS]
        assert entries, f"{name} lists no withdraw/transfer/key-management endpoint"
        assert len(corpus(name)) == len(entries) * len(attempts_for("POST", "/a/b", "withdraw"))
        assert {a.kind for a in corpus(name)} <= set(DANGEROUS)


@pytest.mark.slow
@pytest.mark.parametrize("exchange", sorted(PROFILES))
def test_no_spelling_of_a_dangerous_call_leaves_the_machine(
    tmp_path: Path,
    gateway: StartGateway,
    upstream: Callable[[str], Upstream],
    exchange: str,
) -> None:
    target = upstream(exchange)
    url, token, audit_path = _gateway_for(tmp_path, gateway, exchange, target.url)
    attempts = corpus(exchange)
    sender = Sender(url, token)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(sender.send, attempts))
    sender.close()

    wrong = [
        (a.variant, a.method, a.target, status, body.get("rule"))
        for a, (status, body) in zip(attempts, answers, strict=True)
        if (status, body.get("rule", body.get("error"))) != expected(a)
    ]
    assert wrong == [], f"{len(wrong)} attempts were not refused as expected: {wrong[:10]}"
    assert target.received() == [], "the upstream received a request"

    rows = read_rows(audit_path)
    assert [r for r in rows if r.row.kind in ("intent", "result")] == []
    denied = [r.row for r in rows if r.row.kind == "denied"]
    assert sorted(r.rule or "" for r in denied) == sorted(expected(a)[1] for a in attempts)
    assert all(r.bot == "bypass-bot" and r.credential == "x" for r in denied)
    assert verify_chain(audit_path).ok
    assert token not in audit_path.read_bytes().decode("latin-1")


def test_recording_server_records_what_it_gets() -> None:
    """The negative above means something: the recorder does see a request sent to it."""
    with recording_server() as server:
        connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        connection.request("POST", "/0/private//Withdraw/./", body=b"nonce=1&amount=\xff")
        assert connection.getresponse().status == 200
        connection.close()
        (seen,) = server.received()
        assert seen.method == "POST" and seen.path == "/0/private//Withdraw/./"
        assert seen.body == b"nonce=1&amount=\xff"
