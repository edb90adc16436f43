"""What an emulated exchange receives and answers, independent of Starlette.

    >>> answer = venue.handle(Call("GET", "/api/v3/time", b"", b"", {}, "127.0.0.1", now_ms))
    >>> answer.status, answer.body
    (200, {'serverTime': ...})

Each exchange module (``binance``, ``okx``) is a ``Venue``: a synchronous
``handle(call) -> Answer`` that verifies, rate-limits, trades and formats, so
that it can be tested without a server. ``app.py`` is the async shell around it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from keybroker.emulator.engine import Engine


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request as received: the raw query and body bytes are what was signed."""

    method: str
    path: str
    query: bytes
    body: bytes
    headers: Mapping[str, str]  # names in lower case
    client: str  # the peer's IP address
    now_ms: int


@dataclass
class Answer:
    """The response, plus what the journal should say about the request."""

    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "public"
    accepted: bool = False
    code: str | None = None
    api_key: str | None = None
    params: dict[str, object] = field(default_factory=dict)
    orders: list[dict[str, object]] = field(default_factory=list)
    withdrawal: dict[str, object] | None = None

    def encode(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), default=_json_default).encode()


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Venue(Protocol):
    """An emulated exchange."""

    engine: Engine

    def classify(self, call: Call) -> tuple[bool, bool]:
        """(is_private, is_order) for fault scopes, without any side effect."""
        ...

    def handle(self, call: Call) -> Answer:
        """Verify, rate-limit and carry out one request."""
        ...

    def server_error(self) -> Answer:
        """The exchange's own 5xx answer, for injected faults."""
        ...


# The server puts a zero-argument callable under this ASGI scope extension that
# closes the request's connection without a response (see ``server.py``).
DROP_EXTENSION = "keybroker.emulator.drop"
