"""Credential records: validation, row ↔ record, and what each ciphertext is bound to.

    >>> columns = columns_for(record)
    >>> sealed = seal_material(data_key, material, associated_data(vault_id, record_id, columns))
    >>> unseal_credential(data_key, record, sealed, associated_data(vault_id, record_id, columns))

Two things are sealed with AES-256-GCM (``keybroker.crypto.aead``):

* the data key, under the key-encryption key derived from the passphrase; its
  associated data is the vault id and the KDF parameters and salt, so an
  edited header fails to unlock instead of quietly weakening the KDF;
* each record's key material, under the data key; its associated data is the
  vault id, the record id and *every other column of the row*. Changing the
  name, exchange, environment, scopes, key type, base URL, version, dates or
  notes in the SQLite file, or pasting a ciphertext into another row or vault,
  makes that record fail as ``RecordTampered`` on its next use.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlsplit

from keybroker.crypto.aead import seal, unseal
from keybroker.crypto.kdf import Argon2idParams
from keybroker.crypto.keys import RemoteKey
from keybroker.errors import InvalidInput, RecordTampered
from keybroker.model import (
    ENVIRONMENTS,
    EXCHANGES,
    KEY_TYPES,
    SCOPES,
    Credential,
    Environment,
    KeyType,
    check_choice,
    mask,
)
from keybroker.secret import Secret

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_LOOPBACK_NAMES = frozenset({"localhost"})

# The clear columns of a credentials row, in AAD order. `sealed` is the only
# column not listed: it is what the associated data authenticates.
COLUMNS = (
    "name",
    "exchange",
    "environment",
    "scopes",
    "key_type",
    "key_id",
    "created_at",
    "rotated_at",
    "key_history",
    "base_url",
    "notes",
    "version",
)

ColumnValue = str | int | None


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """What the user types in for one exchange key; checked on construction.

    For ``key_type`` rsa, ed25519 and es256, ``secret`` holds the private key
    in PEM form. For a key held by OpenBao, ``secret`` is a
    ``crypto.keys.RemoteKey``: only its store and name are sealed, never key
    material. Errors name the field, never its value.
    """

    api_key: str
    secret: Secret
    passphrase: Secret | None = None
    key_type: KeyType = "hmac"

    def __post_init__(self) -> None:
        check_choice("key type", self.key_type, KEY_TYPES)
        if not isinstance(self.api_key, str):
            raise TypeError("KeyMaterial.api_key must be a str")
        _check_token("api key", self.api_key)
        if not isinstance(self.secret, Secret):
            raise TypeError("KeyMaterial.secret must be a keybroker.Secret")
        if isinstance(self.secret, RemoteKey):
            if self.secret.key_type != self.key_type:
                raise InvalidInput(f"the remote key is a {self.secret.key_type} key")
            self._check_passphrase()
            return
        # A PEM private key is several lines; only an HMAC secret is one token.
        secret_text = _secret_text("secret", self.secret)
        if self.key_type == "hmac":
            _check_token("secret", secret_text)
        elif not secret_text.strip():
            raise InvalidInput("secret is empty")
        self._check_passphrase()

    def _check_passphrase(self) -> None:
        if self.passphrase is not None:
            if not isinstance(self.passphrase, Secret):
                raise TypeError("KeyMaterial.passphrase must be a keybroker.Secret or None")
            _check_token("passphrase", _secret_text("passphrase", self.passphrase))

    def __repr__(self) -> str:
        return (
            f"KeyMaterial(api_key={mask(self.api_key)!r}, secret=Secret('***'), "
            f"passphrase={'Secret(***)' if self.passphrase else None}, "
            f"key_type={self.key_type!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A credential's metadata: everything but the key material, readable while locked.

    ``key_id`` is the masked api key; ``key_history`` holds the masked ids of
    retired keys with the time each was retired, oldest first.
    """

    name: str
    exchange: str
    environment: str
    scopes: tuple[str, ...]
    key_type: str
    key_id: str
    created_at: datetime
    rotated_at: datetime | None
    key_history: tuple[tuple[str, datetime], ...] = ()
    base_url: str | None = None
    notes: str = ""
    version: int = 1


def check_name(name: str) -> None:
    """Credential names are 1–64 characters of A–Z a–z 0–9 . _ - (they appear in URLs)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            "credential name must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )


def check_base_url(url: str) -> None:
    """Accept https, or plain http only to a loopback address (a local emulator).

    Signed requests go to this URL, so plain http to anywhere else would put
    signatures and api keys on the network in clear. The URL is not echoed in
    the error: it might carry a user:password part.
    """
    problem = "base URL must be https://host[:port][/path], or http:// to a loopback address"
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise InvalidInput(problem)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise InvalidInput(problem) from None
    host = parts.hostname
    if not host or parts.username is not None or parts.query or parts.fragment:
        raise InvalidInput(problem)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(host):
        return
    raise InvalidInput(problem)


def normalize_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """Check each scope and return them once each, in model.SCOPES order."""
    if isinstance(scopes, str):
        scopes = (scopes,)
    if not scopes:
        raise InvalidInput(f"give at least one scope: {', '.join(SCOPES)}")
    for scope in scopes:
        check_choice("scope", scope, SCOPES)
    return tuple(scope for scope in SCOPES if scope in scopes)


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def columns_for(record: CredentialRecord) -> dict[str, ColumnValue]:
    """The stored form of a record's metadata, exactly as written to its row."""
    return {
        "name": record.name,
        "exchange": record.exchange,
        "environment": record.environment,
        "scopes": ",".join(record.scopes),
        "key_type": record.key_type,
        "key_id": record.key_id,
        "created_at": _time_text(record.created_at),
        "rotated_at": None if record.rotated_at is None else _time_text(record.rotated_at),
        "key_history": json.dumps(
            [[key_id, _time_text(retired)] for key_id, retired in record.key_history]
        ),
        "base_url": record.base_url,
        "notes": record.notes,
        "version": record.version,
    }


def record_from_columns(columns: Mapping[str, object]) -> CredentialRecord:
    """Parse a row's clear columns; RecordTampered if they are not what keybroker writes.

    This checks shape only; whether the values are authentic is known once
    the sealed material is opened with them as associated data.
    """
    name = columns.get("name")
    try:
        history = json.loads(_text(columns, "key_history"))
        rotated_at = columns.get("rotated_at")
        base_url = columns.get("base_url")
        version = columns.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("version")
        record = CredentialRecord(
            name=_text(columns, "name"),
            exchange=_text(columns, "exchange"),
            environment=_text(columns, "environment"),
            scopes=tuple(_text(columns, "scopes").split(",")),
            key_type=_text(columns, "key_type"),
            key_id=_text(columns, "key_id"),
            created_at=_parse_time(columns.get("created_at")),
            rotated_at=None if rotated_at is None else _parse_time(rotated_at),
            key_history=tuple((str(key_id), _parse_time(when)) for key_id, when in history),
            base_url=None if base_url is None else _text(columns, "base_url"),
            notes=_text(columns, "notes"),
            version=version,
        )
        check_name(record.name)
        check_choice("exchange", record.exchange, EXCHANGES)
        check_choice("environment", record.environment, ENVIRONMENTS)
        check_choice("key type", record.key_type, KEY_TYPES)
        if normalize_scopes(record.scopes) != record.scopes:
            raise ValueError("scopes")
    except (ValueError, TypeError, InvalidInput):
        raise _tampered(name) from None
    return record


def associated_data(vault_id: str, record_id: int, columns: Mapping[str, object]) -> bytes:
    """The bytes a record's ciphertext is bound to: vault, row id and every clear column.

    JSON with fixed keys is an unambiguous encoding: no two different rows
    produce the same bytes (a plain join on "|" would let "a|b" + "c" collide
    with "a" + "b|c").
    """
    bound = {"vault_id": vault_id, "record_id": record_id}
    bound.update({column: columns[column] for column in COLUMNS})
    return b"keybroker/record/v1\n" + _canonical(bound)


def seal_material(data_key: Secret, material: KeyMaterial, aad: bytes) -> bytes:
    """Encrypt the key material as one blob (JSON inside; secrets base64 so any bytes fit).

    A remote key is sealed as ``"secret": null`` and ``"remote": {store, key_name}``,
    so its record holds the key's name in the store and nothing that signs.
    """
    content: dict[str, object] = {
        "api_key": material.api_key,
        "passphrase": (
            None
            if material.passphrase is None
            else base64.b64encode(material.passphrase.reveal()).decode("ascii")
        ),
        "key_type": material.key_type,
    }
    if isinstance(material.secret, RemoteKey):
        content["secret"] = None
        content["remote"] = {"store": material.secret.store, "key_name": material.secret.key_name}
    else:
        content["secret"] = base64.b64encode(material.secret.reveal()).decode("ascii")
    return seal(data_key.reveal(), _canonical(content), aad)


def unseal_credential(
    data_key: Secret, record: CredentialRecord, sealed: bytes, aad: bytes
) -> Credential:
    """Open a record's blob and build the Credential a signer uses; RecordTampered otherwise."""
    plaintext = unseal(data_key.reveal(), sealed, aad)
    try:
        content = json.loads(plaintext)
        api_key, passphrase, key_type = (
            content["api_key"],
            content["passphrase"],
            content["key_type"],
        )
        # The clear key_type column is authenticated too; both must agree.
        if not isinstance(api_key, str) or key_type != record.key_type:
            raise ValueError("content")
        remote = content.get("remote")
        secret = (
            Secret(base64.b64decode(content["secret"], validate=True))
            if remote is None
            else RemoteKey(str(remote["store"]), str(remote["key_name"]), key_type)
        )
        return Credential(
            name=record.name,
            exchange=record.exchange,
            api_key=api_key,
            secret=secret,
            passphrase=(
                None if passphrase is None else Secret(base64.b64decode(passphrase, validate=True))
            ),
            key_type=cast(KeyType, key_type),
            environment=cast(Environment, record.environment),
            base_url=record.base_url,
        )
    except (ValueError, TypeError, KeyError, binascii.Error, InvalidInput):
        # Authentic ciphertext that is not our format: still one opaque answer.
        raise _tampered(record.name) from None


def header_associated_data(vault_id: str, params: Argon2idParams, salt: bytes) -> bytes:
    """What the wrapped data key is bound to: the vault and the KDF settings that made the KEK."""
    bound: dict[str, object] = {"vault_id": vault_id, "salt": salt.hex()}
    bound.update(params.as_dict())
    return b"keybroker/data-key/v1\n" + _canonical(bound)


def wrap_data_key(
    kek: bytes, data_key: Secret, vault_id: str, params: Argon2idParams, salt: bytes
) -> bytes:
    return seal(kek, data_key.reveal(), header_associated_data(vault_id, params, salt))


def unwrap_data_key(
    kek: bytes, wrapped: bytes, vault_id: str, params: Argon2idParams, salt: bytes
) -> Secret:
    """The data key, or RecordTampered (wrong passphrase and edited header look the same)."""
    return Secret(unseal(kek, wrapped, header_associated_data(vault_id, params, salt)))


def _tampered(name: object) -> RecordTampered:
    label = repr(name) if isinstance(name, str) and _NAME.fullmatch(name) else "(unreadable)"
    return RecordTampered(f"credential {label} failed authentication")


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _text(columns: Mapping[str, object], column: str) -> str:
    value = columns.get(column)
    if not isinstance(value, str):
        raise TypeError(column)
    return value


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError("time")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("time without zone")
    return moment.astimezone(UTC)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_token(field_name: str, value: str) -> None:
    if not value:
        raise InvalidInput(f"{field_name} is empty")
    if any(c.isspace() for c in value):
        raise InvalidInput(f"{field_name} contains whitespace")


def _secret_text(field_name: str, secret: Secret) -> str:
    try:
        return secret.reveal_text()
    except UnicodeDecodeError:
        raise InvalidInput(f"{field_name} is not UTF-8 text") from None
