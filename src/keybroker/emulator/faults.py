"""Fault injection: what goes wrong, how often, decided by a seeded generator.

    >>> spec = FaultSpec.parse("latency=50ms,error5xx=0.1,drop_after_process=0.05,seed=7")
    >>> plan = FaultPlan(spec)
    >>> plan.draw(is_private=True, is_order=True)     # one of the Fault values

The ``--faults`` syntax is comma-separated ``key=value`` pairs (spaces ignored):

====================  =========================================================
``latency=DURATION``  delay every request in scope by this much (``50ms``, ``1.5s``)
``error5xx=P``        share P (0..1) answered with the exchange's 5xx, not processed
``timeout=P``         share P that hangs, unprocessed, then closes without an answer
``hang=DURATION``     how long a ``timeout`` hangs before closing (default ``30s``)
``drop_after_process=P``  share P processed in full (an order is placed), after
                      which the connection is closed without a response
``seed=N``            seed of the generator (default 0): same seed, same faults
``scope=WHICH``       which requests faults hit: ``all`` (default), ``private``
                      (signed requests) or ``orders`` (order placement only)
====================  =========================================================

A bare number of milliseconds is also a duration. The shares are exclusive
outcomes of one draw per request in scope, so they must add up to at most 1.
Unknown keys, bad values and repeated keys are errors. Control endpoints
(``/__emulator__/...``) are never faulted.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from keybroker.errors import InvalidInput

FaultScope = Literal["all", "private", "orders"]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)?$")
_SHARES = ("error5xx", "timeout", "drop_after_process")


class Fault(StrEnum):
    NONE = "none"
    ERROR_5XX = "error5xx"
    TIMEOUT = "timeout"
    DROP_AFTER_PROCESS = "drop_after_process"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    latency_ms: float = 0.0
    error5xx: float = 0.0
    timeout: float = 0.0
    drop_after_process: float = 0.0
    hang_ms: float = 30_000.0
    seed: int = 0
    scope: FaultScope = "all"

    @property
    def is_quiet(self) -> bool:
        return self.latency_ms == 0 and not any(getattr(self, name) for name in _SHARES)

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """Parse the ``--faults`` syntax above; InvalidInput names the offending key."""
        values: dict[str, str] = {}
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or not value:
                raise InvalidInput(f"faults: {part!r} is not key=value")
            if key in values:
                raise InvalidInput(f"faults: {key!r} is given twice")
            values[key] = value
        known = {"latency", "hang", "seed", "scope", *_SHARES}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(
                f"faults: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        shares = {name: _share(name, values[name]) for name in _SHARES if name in values}
        if sum(shares.values()) > 1:
            raise InvalidInput("faults: error5xx + timeout + drop_after_process must be <= 1")
        scope = values.get("scope", "all")
        if scope not in ("all", "private", "orders"):
            raise InvalidInput("faults: scope must be all, private or orders")
        seed = values.get("seed", "0")
        if not seed.isdigit():
            raise InvalidInput("faults: seed must be a non-negative integer")
        return cls(
            latency_ms=_duration_ms("latency", values.get("latency", "0")),
            hang_ms=_duration_ms("hang", values.get("hang", "30s")),
            seed=int(seed),
            scope=scope,  # type: ignore[arg-type]  # checked just above
            **shares,
        )


def _share(name: str, value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise InvalidInput(f"faults: {name} must be a share between 0 and 1")
    return share


def _duration_ms(name: str, value: str) -> float:
    match = _DURATION.match(value)
    if match is None:
        raise InvalidInput(f"faults: {name} must be a duration like 50ms or 2s")
    number = float(match.group(1))
    return number * 1000 if match.group(2) == "s" else number


class FaultPlan:
    """Draws one fault per request in scope, in arrival order, from the spec's seed."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)  # noqa: S311 - reproducible faults, no secrets

    def in_scope(self, *, is_private: bool, is_order: bool) -> bool:
        scope = self.spec.scope
        return (
            scope == "all"
            or (scope == "private" and is_private)
            or (scope == "orders" and is_order)
        )

    def draw(self, *, is_private: bool, is_order: bool) -> Fault:
        if not self.in_scope(is_private=is_private, is_order=is_order):
            return Fault.NONE
        if self.spec.is_quiet:
            return Fault.NONE
        roll = self._rng.random()
        for fault, share in (
            (Fault.ERROR_5XX, self.spec.error5xx),
            (Fault.TIMEOUT, self.spec.timeout),
            (Fault.DROP_AFTER_PROCESS, self.spec.drop_after_process),
        ):
            if roll < share:
                return fault
            roll -= share
        return Fault.NONE
