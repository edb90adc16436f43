"""Frozen value types that every layer shares, so that layers need not import each other.

    >>> cred = Credential("bot1", "binance", "public-key-id", Secret("s3cret-not-real"))
    >>> cred.secret
    Secret('***')

Exchange *names* live here because the vault (layer 1) must store and check
them without importing the exchange profiles (also layer 1). Everything else
about an exchange lives in ``keybroker.exchanges.<name>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

from keybroker.errors import InvalidInput
from keybroker.secret import Secret

ExchangeName = Literal[
    "binance",
    "okx",
    "bybit",
    "kraken",
    "coinbase",
    "coinbase-exchange",
    "bitfinex",
    "poloniex",
    "bittrex",
]
EXCHANGES: tuple[str, ...] = get_args(ExchangeName)

KeyType = Literal["hmac", "rsa", "ed25519", "es256"]
KEY_TYPES: tuple[str, ...] = get_args(KeyType)

Environment = Literal["testnet", "production"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)

Scope = Literal["read", "trade"]
SCOPES: tuple[str, ...] = get_args(Scope)


def mask(value: str) -> str:
    """Show enough of a public identifier to recognise it, never the whole of it."""
    if len(value) <= 8:
        return "…" * min(len(value), 3)
    return f"{value[:4]}…{value[-4:]}"


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise InvalidInput naming the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise InvalidInput(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")


@dataclass(frozen=True, slots=True)
class Credential:
    """Everything a signer needs for one exchange key.

    ``secret`` is the HMAC secret for ``key_type="hmac"``, and the private key
    in PEM form for ``rsa``, ``ed25519`` and ``es256``. ``api_key`` is the
    exchange's public key id (for Coinbase CDP keys, the key name). The repr
    masks the api key and never shows the secret or passphrase.
    """

    name: str
    exchange: str
    api_key: str
    secret: Secret = field(repr=False, compare=False, hash=False)
    passphrase: Secret | None = field(default=None, repr=False, compare=False, hash=False)
    key_type: KeyType = "hmac"
    environment: Environment = "testnet"
    base_url: str | None = None

    def __post_init__(self) -> None:
        check_choice("exchange", self.exchange, EXCHANGES)
        check_choice("key type", self.key_type, KEY_TYPES)
        check_choice("environment", self.environment, ENVIRONMENTS)
        if not isinstance(self.secret, Secret):
            raise TypeError("Credential.secret must be a keybroker.Secret")
        if self.passphrase is not None and not isinstance(self.passphrase, Secret):
            raise TypeError("Credential.passphrase must be a keybroker.Secret or None")

    def __repr__(self) -> str:
        return (
            f"Credential(name={self.name!r}, exchange={self.exchange!r}, "
            f"api_key={mask(self.api_key)!r}, key_type={self.key_type!r}, "
            f"environment={self.environment!r}, secret=Secret('***'), "
            f"passphrase={'Secret(***)' if self.passphrase else None})"
        )

    __str__ = __repr__

    def replace(self, **changes: object) -> Credential:
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
