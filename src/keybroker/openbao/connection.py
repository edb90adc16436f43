"""How a gateway reaches OpenBao: ``<home>/openbao.json``, written by ``keybroker openbao setup``.

    >>> connection = load(home)            # None when this home has no OpenBao
    >>> connection.addr, connection.role   # "https://bao.internal:8200", "keybroker-gw1"

The file holds the address, the transit mount, the gateway's AppRole (name
and role id) and, until a gateway has used it, the *wrapping token* of a
single-use secret id: a response-wrapped secret id can be unwrapped once,
within its TTL, and an unwrap by anyone else makes the gateway's own unwrap
fail loudly. The gateway removes the spent wrapping token from the file as
soon as it has unwrapped it. The file is written 0600 beside the vault.
Unknown fields are an error that names the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from keybroker.errors import InvalidInput
from keybroker.openbao.client import check_addr
from keybroker.openbao.transit import check_mount

FILE_NAME = "openbao.json"
_FIELDS = {"addr", "mount", "role", "role_id", "wrapped_secret_id", "ca_cert"}


@dataclass(frozen=True, slots=True)
class Connection:
    """One gateway's way to OpenBao; ``repr`` never shows the role id or the wrapping token."""

    addr: str
    mount: str
    role: str
    role_id: str
    wrapped_secret_id: str | None = None
    ca_cert: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "addr", check_addr(self.addr))
        check_mount(self.mount)
        for name in ("role", "role_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                raise InvalidInput(f"{FILE_NAME}: {name!r} must be one word")

    def __repr__(self) -> str:
        return (
            f"Connection(addr={self.addr!r}, mount={self.mount!r}, role={self.role!r}, "
            f"secret_id={'wrapped' if self.wrapped_secret_id else 'spent'})"
        )

    __str__ = __repr__

    @property
    def ca_path(self) -> Path | None:
        return None if self.ca_cert is None else Path(self.ca_cert)


def path_in(home: Path) -> Path:
    return home / FILE_NAME


def load(home: Path) -> Connection | None:
    """The connection of ``home``, None when there is none; InvalidInput for a bad file."""
    path = path_in(home)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path} is not JSON (line {exc.lineno})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{path} must hold one JSON object")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise InvalidInput(f"{path} has unknown field {unknown[0]!r}")
    try:
        return Connection(**document)
    except TypeError:
        raise InvalidInput(f"{path} needs addr, mount, role and role_id") from None


def save(home: Path, connection: Connection) -> Path:
    """Write the file atomically, 0600 from its first byte."""
    path = path_in(home)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(asdict(connection), handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def spend_secret_id(home: Path, connection: Connection) -> Connection:
    """The connection without its wrapping token, written back: it has been used."""
    spent = replace(connection, wrapped_secret_id=None)
    if path_in(home).exists():
        save(home, spent)
    return spent
