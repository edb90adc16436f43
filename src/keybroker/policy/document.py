"""A credential's policy as a value, and its one stored form (canonical JSON).

    >>> policy = Policy(scopes=("read", "trade"), symbols=("BTCUSDT",), max_notional=Decimal(500))
    >>> Policy.from_json(policy.to_json()) == policy
    True

The vault stores the bytes ``to_json`` gives, sealed and authenticated like a
credential; this module never sees the vault. Reading is strict: an unknown
key, a wrong type or a negative limit is an ``InvalidInput`` naming the key,
because a policy that was silently read differently from how it was written
is a limit the user believes in and does not have.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from keybroker.errors import InvalidInput
from keybroker.model import SCOPES

# Fields whose value is a limit in Decimal (quote currency, percent or multiple).
DECIMAL_FIELDS = (
    "max_notional",
    "price_collar_pct",
    "daily_notional",
    "max_leverage",
    "max_position_notional",
)
INT_FIELDS = ("max_open_orders", "max_orders_per_minute")
BOOL_FIELDS = ("allow_transfers", "allow_production")
LIST_FIELDS = ("scopes", "symbols", "order_types")
MODES = ("live", "paper")
"""``live``: orders go to the exchange; ``paper``: the gateway's paper venue answers them."""

_MAX_ITEMS = 1000
_MAX_NAME = 64


@dataclass(frozen=True, slots=True)
class Policy:
    """What one credential may be used for; checked by ``evaluate`` before anything is signed.

    The defaults grant reading only: trading, transfers and production are
    granted, never assumed. A limit of ``None`` is "no limit of this kind";
    a limit of 0 permits nothing of that kind. Symbols and order types are
    compared case-insensitively in the exchange's own spelling (``BTCUSDT``
    on Binance, ``BTC-USDT`` on OKX).
    """

    scopes: tuple[str, ...] = ("read",)
    symbols: tuple[str, ...] = ()
    """Allowlist for orders; empty means no symbol may trade."""
    order_types: tuple[str, ...] = ()
    """Allowlist of order types; empty means any type."""
    max_notional: Decimal | None = None
    """Per order, in the quote currency."""
    max_open_orders: int | None = None
    max_orders_per_minute: int | None = None
    """Per credential, across all bots using it."""
    price_collar_pct: Decimal | None = None
    """A price more than this many percent away from the last price is refused."""
    daily_notional: Decimal | None = None
    """Per UTC day, in the quote currency."""
    max_leverage: Decimal | None = None
    max_position_notional: Decimal | None = None
    """Futures: per symbol, in the quote currency."""
    allow_transfers: bool = False
    allow_production: bool = False
    mode: str = "live"
    """``paper``: orders, cancels, order queries and balances are answered by the
    gateway's paper venue and never reach the exchange; market data still does."""

    def __post_init__(self) -> None:
        # Checked on construction too, so that no code path (CLI, JSON, a test,
        # dataclasses.replace) can build a policy the JSON reader would refuse.
        for name in LIST_FIELDS:
            object.__setattr__(self, name, _names(name, getattr(self, name)))
        for scope in self.scopes:
            if scope not in SCOPES:
                raise InvalidInput(
                    f"policy scopes: unknown scope {scope!r}; choose from: {', '.join(SCOPES)}"
                )
        object.__setattr__(self, "scopes", tuple(s for s in SCOPES if s in self.scopes))
        for name in DECIMAL_FIELDS:
            object.__setattr__(self, name, _decimal_limit(name, getattr(self, name)))
        for name in INT_FIELDS:
            object.__setattr__(self, name, _int_limit(name, getattr(self, name)))
        for name in BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"policy {name} must be true or false")
        if self.mode not in MODES:
            raise InvalidInput(f"policy mode must be one of: {', '.join(MODES)}")

    @property
    def is_paper(self) -> bool:
        """Whether the paper venue, not the exchange, answers this credential's orders."""
        return self.mode == "paper"

    @property
    def allows_trading(self) -> bool:
        """True when some order could pass: the trade scope and at least one symbol."""
        return "trade" in self.scopes and bool(self.symbols)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values; Decimals as strings, so no digit is lost."""
        result: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple):
                result[item.name] = list(value)
            elif isinstance(value, Decimal):
                result[item.name] = str(value)
            else:
                result[item.name] = value
        return result

    def to_json(self) -> bytes:
        """The canonical stored form: every field, sorted keys, compact, UTF-8.

        ``mode`` is left out while it is ``live``: a live policy is then stored
        byte for byte as before modes existed, so an older keybroker still
        reads it (and a paper one, whose mode it would not honour, it refuses).
        """
        document = self.to_dict()
        if self.mode == "live":
            del document["mode"]
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from parsed JSON; missing keys take their defaults.

        Raises InvalidInput naming the first unknown key or malformed value.
        """
        known = {item.name for item in fields(cls)}
        for key in data:
            if key not in known:
                raise InvalidInput(f"policy has an unknown key {_shown(key)}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in LIST_FIELDS:
                if not isinstance(value, list):
                    raise InvalidInput(f"policy {key} must be a list of strings")
                values[key] = tuple(value)
            elif key in DECIMAL_FIELDS and isinstance(value, str):
                values[key] = _parse_decimal(key, value)
            else:
                values[key] = value
        return cls(**values)

    @classmethod
    def from_json(cls, data: bytes) -> Policy:
        """Read what ``to_json`` wrote (or a hand-written document in the same shape).

        Raises InvalidInput for text that is not a JSON object, for an unknown
        key (named in the message) and for any malformed value.
        """
        try:
            parsed = json.loads(
                data.decode("utf-8"),
                parse_float=Decimal,
                parse_constant=_refuse_constant,
                object_pairs_hook=_refuse_duplicates,
            )
        except UnicodeDecodeError:
            raise InvalidInput("policy document is not UTF-8") from None
        except json.JSONDecodeError as error:
            raise InvalidInput(f"policy document is not JSON (line {error.lineno})") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("policy document must be a JSON object")
        return cls.from_dict(parsed)


def _shown(text: str) -> str:
    # Keys and names come from user files: shown briefly, never with control characters.
    clean = "".join(ch if ch.isprintable() else "?" for ch in text[:_MAX_NAME])
    return repr(clean + ("…" if len(text) > _MAX_NAME else ""))


def _names(field_name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise InvalidInput(f"policy {field_name} must be a list of strings")
    if len(value) > _MAX_ITEMS:
        raise InvalidInput(f"policy {field_name} has more than {_MAX_ITEMS} entries")
    result: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise InvalidInput(f"policy {field_name} must be a list of strings")
        name = item.strip()
        if (
            not name
            or len(name) > _MAX_NAME
            or any(not ch.isprintable() or ch.isspace() for ch in name)
        ):
            raise InvalidInput(f"policy {field_name}: {_shown(item)} is not a valid name")
        if name.casefold() not in seen:
            seen.add(name.casefold())
            result.append(name)
    return tuple(result)


def _parse_decimal(field_name: str, text: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except InvalidOperation:
        raise InvalidInput(f"policy {field_name} must be a number") from None


def _decimal_limit(field_name: str, value: object) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"policy {field_name} must be a number")
    if isinstance(value, float):
        # A float already lost digits before it got here; limits are exact.
        raise InvalidInput(f"policy {field_name} must be a decimal number, not a float")
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        raise InvalidInput(f"policy {field_name} must be a number")
    if not value.is_finite():
        raise InvalidInput(f"policy {field_name} must be a finite number")
    if value < 0:
        raise InvalidInput(f"policy {field_name} must not be negative")
    if field_name == "max_leverage" and value == 0:
        raise InvalidInput("policy max_leverage must be more than 0")
    if value.adjusted() > 20:
        raise InvalidInput(f"policy {field_name} is too large")
    # One spelling per value ("100", not "1E+2" or "100.00") keeps the stored form canonical.
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def _int_limit(field_name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"policy {field_name} must be a whole number")
    if value < 0:
        raise InvalidInput(f"policy {field_name} must not be negative")
    if value > 10**9:
        raise InvalidInput(f"policy {field_name} is too large")
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"policy document holds {name}, which is not a number")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two spellings of one key would let a reader and a writer see different limits.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"policy document gives {_shown(key)} twice")
        result[key] = value
    return result


DEFAULT_POLICY = Policy()
"""A new credential's policy: read-only, no symbols (trading is granted, never assumed)."""
