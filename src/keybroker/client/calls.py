"""Requests as plain data, and how hard to try: the cheap half of the transport.

    >>> Call("GET", "/api/v3/klines", (("symbol", "BTCUSDT"), ("interval", "1m")))
    >>> RetryPolicy(tries=3, backoff=0.25).delay(1, random.Random(7))

Kept apart from ``transport.py`` so that the adapter modules (and ``import
keybroker``) can describe requests without loading httpx and the signers;
the transport is loaded when the first adapter is built.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from keybroker.errors import InvalidInput

DEFAULT_TIMEOUT = 30.0  # seconds, per request (seed 001: "Timeout is set to 30 seconds")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard the adapters try. Times in seconds.

    ``tries`` counts sends of one read (and of one order, each resend only after
    a lookup said the order does not exist). Back-off before try n (n >= 1) is
    ``min(max_backoff, backoff * 2**(n-1))``, half of it fixed and half random, so
    that many bots failing together do not come back together. A read waits for
    a ``Retry-After`` of at most ``max_retry_after``; a longer one is raised.
    ``settle_margin`` is added to an order's validity window before concluding,
    from a lookup, that the order was not placed (see ``Adapter.place_order``).
    """

    tries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    settle_margin: float = 0.25

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise InvalidInput("RetryPolicy.tries must be at least 1")
        if min(self.backoff, self.max_backoff, self.max_retry_after, self.settle_margin) < 0:
            raise InvalidInput("RetryPolicy times must not be negative")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before try ``attempt`` (1 = the first retry)."""
        step = min(self.max_backoff, self.backoff * 2.0 ** max(0, attempt - 1))
        return step / 2 + rng.uniform(0, step / 2)


@dataclass(frozen=True, slots=True)
class Call:
    """One exchange request as plain data, before signing.

    ``params`` go in the query string, or in a form body when ``form`` is True
    (Binance orders); ``json`` is a JSON body (OKX). ``signed`` requests go through
    the profile's signer with the adapter's credential.
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json: Any = None
    form: bool = False
    signed: bool = False
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: the body as sent, and as JSON with decimals as Decimal."""

    content: bytes
    data: Any
    status: int
