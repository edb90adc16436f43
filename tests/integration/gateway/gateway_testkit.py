"""The gateway in front of the real emulator, on loopback: obviously fake keys and a few helpers.

Nothing here stands in for keybroker's own code: the vault is a real SQLite
file in tmp_path, the gateway is ``create_app`` on uvicorn in a thread, the
exchange is the emulator on uvicorn in another thread, and the audit log is
read back from its file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx

from keybroker.audit import StoredRow, read_rows
from keybroker.crypto.kdf import Argon2idParams
from keybroker.emulator import ApiKey
from keybroker.gateway import Running
from keybroker.policy import Policy
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

PASSPHRASE = "test vault passphrase, not real"
FAST_KDF = Argon2idParams(memory_kib=64 * 1024, iterations=1, lanes=1)

BINANCE_API_KEY = "test-binance-key-not-real"
BINANCE_SECRET = "test-binance-secret-not-real-CANARY"
OKX_API_KEY = "test-okx-key-not-real"
OKX_SECRET = "test-okx-secret-not-real-CANARY"
OKX_PASSPHRASE = "test-okx-passphrase-not-real-CANARY"
BYBIT_API_KEY = "test-bybit-key-not-real"
BYBIT_SECRET = "test-bybit-secret-not-real-CANARY"

EMULATOR_KEYS = {
    "binance": ApiKey(BINANCE_API_KEY, Secret(BINANCE_SECRET)),
    "okx": ApiKey(OKX_API_KEY, Secret(OKX_SECRET), Secret(OKX_PASSPHRASE)),
    "bybit": ApiKey(BYBIT_API_KEY, Secret(BYBIT_SECRET)),
}
SECRETS = (BINANCE_SECRET, OKX_SECRET, OKX_PASSPHRASE, BYBIT_SECRET)

TRADER = Policy(
    scopes=("read", "trade"),
    symbols=("BTCUSDT", "BTC-USDT"),
    max_notional=Decimal(5000),
)

# A resting limit buy far below the emulator's market (~60,000): never fills.
LIMIT_BUY = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "50000",
}


@dataclass
class Emulator:
    """A running emulator: its base URL and its journal."""

    exchange: str
    url: str

    def journal(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/__emulator__/journal", timeout=10)
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries

    def requests_to(self, path: str, method: str | None = None) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.journal()
            if entry["path"] == path and (method is None or entry["method"] == method)
        ]

    def orders(self) -> list[dict[str, Any]]:
        return [order for entry in self.journal() for order in entry["orders"]]


@dataclass
class Gateway:
    """A running gateway with its vault, audit log and one bot's token."""

    running: Running
    vault: Vault
    home: Path
    token: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.db"

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client for the gateway, sending ``token`` (the bot's by default)."""
        headers = dict(options.pop("headers", {}))
        if token is None:
            token = self.token
        if token:
            headers.setdefault("X-Keybroker-Token", token)
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30, **options)
        self.clients.append(client)
        return client

    def audit(self) -> list[StoredRow]:
        """Every row, once each intent row has its result (written just after the answer)
        or the refusal that closed it (with Redis, an intent row can precede its refusal)."""

        def settled() -> bool:
            rows = [stored.row for stored in read_rows(self.audit_path)]
            closed = sum(r.kind == "result" or r.intent_id is not None for r in rows)
            return closed >= sum(r.kind == "intent" for r in rows)

        wait_until(settled, timeout=5.0)
        return read_rows(self.audit_path)

    def rows(self, kind: str) -> list[StoredRow]:
        return [row for row in self.audit() if row.row.kind == kind]


TEMPLATE: Path | None = None
"""An empty vault to copy (set by the conftest for the session)."""

StartEmulator = Callable[..., Emulator]  # the ``emulator`` fixture
StartGateway = Callable[..., Gateway]  # the ``gateway`` fixture


@dataclass
class World:
    """The ``world`` fixture: a Binance emulator and a gateway with credential ``bn``."""

    exchange: Emulator
    gateway: Gateway


def make_vault(
    home: Path,
    credentials: Mapping[str, tuple[str, str]],
    *,
    policies: Mapping[str, Policy] | None = None,
) -> Vault:
    """An unlocked vault at ``home`` with credentials {name: (exchange, base_url)}.

    When the conftest has set ``TEMPLATE`` (an empty vault made once per
    session) the file is a copy of it, and the conftest remembers the key
    derivation, so only the first unlock pays for Argon2id.
    """
    template = TEMPLATE
    if template is not None:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copyfile(template, home / "vault.db")
        (home / "vault.db").chmod(0o600)
        vault = Vault.open(home / "vault.db")
        vault.unlock(Secret(PASSPHRASE))
    else:
        vault = Vault.create(home / "vault.db", Secret(PASSPHRASE), kdf=FAST_KDF)
    for name, (exchange, base_url) in credentials.items():
        if exchange == "binance":
            material = KeyMaterial(BINANCE_API_KEY, Secret(BINANCE_SECRET))
        elif exchange == "bybit":
            material = KeyMaterial(BYBIT_API_KEY, Secret(BYBIT_SECRET))
        else:
            material = KeyMaterial(OKX_API_KEY, Secret(OKX_SECRET), Secret(OKX_PASSPHRASE))
        vault.add(name, exchange, material, base_url=base_url, scopes=("read", "trade"))
    for name, policy in (policies or {}).items():
        vault.set_policy(name, policy.to_json())
    return vault


def new_token(
    vault: Vault,
    bot: str,
    credentials: Sequence[str],
    *,
    expires_at: datetime | None = None,
    max_orders_per_minute: int | None = None,
) -> str:
    secret, _ = vault.create_token(
        bot, credentials, expires_at=expires_at, max_orders_per_minute=max_orders_per_minute
    )
    return secret.reveal_text()


def assert_no_secret(*texts: str | bytes) -> None:
    """No fake exchange secret or passphrase in any of ``texts``."""
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in data, "a secret leaked"


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# -- `keybroker serve` in a real process ---------------------------------------------------

_LAUNCH = (
    "import sys\n"
    "from keybroker.cli import app, main, serve_commands\n"
    "if not any(c.name == 'serve' for c in app.registered_commands):\n"
    "    serve_commands.register(app)\n"
    "sys.argv[0] = 'keybroker'\n"
    "main()\n"
)


def serve_process(
    home: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``keybroker --home HOME serve ARGS`` in a new process (passphrase from the environment).

    The lead wires ``serve_commands.register`` into keybroker.cli; until then
    (and harmlessly after) the launcher registers it on the app it runs.
    """
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEYBROKER_")},
        "KEYBROKER_PASSPHRASE": PASSPHRASE,
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, "--home", str(home), "serve", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        start_new_session=True,
    )


class Drained:
    """Reads a child's stdout and stderr to their end in the background.

    A gateway logs a line per alert to stderr; a test that never reads the
    pipe leaves it to fill (64 KiB), and the gateway then blocks on its next
    log line with every request in flight (a 45-bot run once hung that way).
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._texts: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._threads = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("stdout", process.stdout), ("stderr", process.stderr))
            if stream is not None
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        with stream:
            for line in iter(stream.readline, ""):
                self._texts[name].append(line)

    def stderr(self) -> str:
        """What the child printed to stderr so far (all of it, once ``wait`` returned)."""
        return "".join(self._texts["stderr"])

    def wait(self, timeout: float) -> str:
        """Wait for the child to end and its pipes to close; what it printed to stderr."""
        self._process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout)
        return self.stderr()


class Serve:
    """A running ``keybroker serve`` process, stopped with SIGTERM or killed with SIGKILL."""

    def __init__(self, home: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.process = serve_process(home, "--port", "0", *args, env=env)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.process.stdout.readline()  # the socket line
        if not self.url.startswith("http"):
            _, err = self.process.communicate(timeout=15)
            raise AssertionError(f"serve did not start: {err}")
        self.output = Drained(self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        self.output.wait(15)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.output.wait(15)
        assert self.process.returncode == -signal.SIGKILL
