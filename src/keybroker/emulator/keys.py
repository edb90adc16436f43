"""The API keys an emulator accepts: loaded from a JSON file, or made up at start.

    >>> keys = load_keys(Path("keys.json"))          # [{"api_key": ..., "secret": ...}, ...]
    >>> key = generate_key("okx")                     # random, obviously a test key

The keys file is a JSON list of objects with these fields (unknown fields are
an error that names the field):

- ``api_key`` (required): the public key id the client sends.
- ``secret`` (required): for ``key_type`` ``hmac``, the shared HMAC secret. For
  ``ed25519`` and ``rsa`` keys it is the key's **public** key in PEM form, since
  that is all an exchange ever holds; the client signs with the private key.
- ``passphrase``: OKX only, and required there.
- ``key_type``: ``hmac`` (default), ``ed25519`` or ``rsa`` (the last two Binance only).
- ``can_withdraw`` (default false): reported by the permission endpoint; a
  withdrawal request from a key without it is refused (and still journaled).
- ``can_trade`` (default true): reported by the permission endpoint; orders from a
  key without it are refused as the exchange refuses a read-only key.
- ``ip_restricted`` (default true): the key is bound to loopback addresses
  (``127.0.0.1``, ``::1``); requests from elsewhere are refused.
- ``balances``: starting spot balances, e.g. ``{"BTC": "2", "USDT": "50000"}``
  (default 1 BTC, 10 ETH, 100000 USDT); the USDⓈ-M wallet starts with the same USDT.

The defaults describe a safe key (cannot withdraw, IP-bound), so a gateway's
start-up permission check passes against a generated key.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from keybroker.errors import InvalidInput
from keybroker.secret import Secret

EmulatorKeyType = Literal["hmac", "ed25519", "rsa"]
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_FIELDS = {
    "api_key",
    "secret",
    "passphrase",
    "key_type",
    "can_withdraw",
    "can_trade",
    "ip_restricted",
    "balances",
}


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key the emulated exchange knows; its repr never shows the secret or passphrase."""

    api_key: str
    secret: Secret = field(repr=False, compare=False)
    passphrase: Secret | None = field(default=None, repr=False, compare=False)
    key_type: EmulatorKeyType = "hmac"
    can_withdraw: bool = False
    ip_restricted: bool = True
    can_trade: bool = True
    balances: Mapping[str, Decimal] | None = None

    def __post_init__(self) -> None:
        # Amounts given from Python as str or int must behave as the file loader's Decimals.
        if self.balances is not None:
            converted = {str(k): Decimal(str(v)) for k, v in self.balances.items()}
            object.__setattr__(self, "balances", converted)

    def allows_address(self, host: str | None) -> bool:
        """An IP-restricted key is bound to loopback; an unrestricted one allows any address."""
        return not self.ip_restricted or (host or "") in LOOPBACK


def load_keys(path: Path, exchange: str) -> list[ApiKey]:
    """Read and check a keys file; InvalidInput names the entry and field that is wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read keys file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"keys file {path} is not JSON (line {exc.lineno})") from exc
    if not isinstance(document, list) or not document:
        raise InvalidInput(f"keys file {path} must hold a non-empty JSON list of keys")
    keys = [_parse_key(entry, number, exchange) for number, entry in enumerate(document, 1)]
    names = [key.api_key for key in keys]
    if len(set(names)) != len(names):
        raise InvalidInput(f"keys file {path} lists an api_key twice")
    return keys


def _parse_key(entry: object, number: int, exchange: str) -> ApiKey:
    where = f"keys file entry {number}"
    if not isinstance(entry, dict):
        raise InvalidInput(f"{where} is not a JSON object")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise InvalidInput(f"{where} has unknown field {unknown[0]!r}")
    for name in ("api_key", "secret"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise InvalidInput(f"{where} needs a non-empty string {name!r}")
    key_type = entry.get("key_type", "hmac")
    if key_type not in ("hmac", "ed25519", "rsa"):
        raise InvalidInput(f"{where}: key_type must be hmac, ed25519 or rsa")
    if exchange == "okx" and key_type != "hmac":
        raise InvalidInput(f"{where}: OKX keys are hmac keys")
    passphrase = entry.get("passphrase")
    if exchange == "okx" and not isinstance(passphrase, str):
        raise InvalidInput(f"{where}: OKX keys need a 'passphrase'")
    flags = {}
    for name, default in (("can_withdraw", False), ("ip_restricted", True), ("can_trade", True)):
        value = entry.get(name, default)
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}: {name!r} must be true or false")
        flags[name] = value
    return ApiKey(
        api_key=entry["api_key"],
        secret=Secret(entry["secret"]),
        passphrase=Secret(passphrase) if isinstance(passphrase, str) else None,
        key_type=key_type,
        can_withdraw=flags["can_withdraw"],
        ip_restricted=flags["ip_restricted"],
        can_trade=flags["can_trade"],
        balances=_parse_balances(entry.get("balances"), where),
    )


def _parse_balances(value: object, where: str) -> dict[str, Decimal] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: 'balances' must map assets to amounts")
    balances = {}
    for asset, amount in value.items():
        try:
            balances[str(asset)] = Decimal(str(amount))
        except InvalidOperation as exc:
            raise InvalidInput(f"{where}: balance of {asset!r} is not a number") from exc
        if not balances[str(asset)].is_finite() or balances[str(asset)] < 0:
            raise InvalidInput(f"{where}: balance of {asset!r} must be a non-negative number")
    return balances


def generate_key(exchange: str) -> ApiKey:
    """A random HMAC key (and OKX passphrase), prefixed so nobody mistakes it for a real one."""
    alphabet = string.ascii_letters + string.digits
    api_key = "emulator-" + "".join(secrets.choice(alphabet) for _ in range(40))
    secret = "emulator-secret-" + "".join(secrets.choice(alphabet) for _ in range(48))
    passphrase = "emulator-" + secrets.token_hex(6) if exchange == "okx" else None
    return ApiKey(
        api_key=api_key,
        secret=Secret(secret),
        passphrase=Secret(passphrase) if passphrase else None,
    )


def describe_key(key: ApiKey) -> dict[str, str]:
    """The generated key as the emulator prints it at start, so a test bot can use it."""
    shown = {"api_key": key.api_key, "secret": key.secret.reveal().decode("utf-8")}
    if key.passphrase is not None:
        shown["passphrase"] = key.passphrase.reveal().decode("utf-8")
    return shown
