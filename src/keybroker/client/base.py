"""What both adapters do the same way: the public methods, order safety, error translation.

    >>> with BinanceAdapter(binance_testnet_config()) as adapter:
    ...     candles = adapter.klines("BTCUSDT", "1h", limit=24)
    ...     order = adapter.place_order("BTCUSDT", "buy", "limit", "0.001", "50000")

An adapter module (``binance.py``, ``okx.py``) fills in the wire format: one
``Call`` builder and one parser per method, and which venue codes mean "no
such order" or "duplicate client order id". Everything that must be the same
on every exchange lives here:

- **Orders are never resent blindly.** Every order carries a client order id
  (ours if the caller gives none). After an ambiguous failure (5xx, timeout,
  dropped connection) the order is looked up by that id; if it is not there,
  the adapter waits until the exchange can no longer act on the lost request
  (its ``request_window_ms`` validity, sent as ``recvWindow`` or ``expTime``),
  looks again, and only then sends it again, with the same id. If the lookup
  itself fails, the error says ``outcome_unknown`` and the id is remembered:
  calling ``place_order`` again with that id looks it up before sending.
- **Errors**: every UpstreamError from the profile leaves as ``ExchangeError``
  (``.code`` names the kind) raised ``from`` it.
- **Secrets**: the adapter's repr is exactly ``BinanceAdapter(...)``; the
  config (and its Secrets) is never shown.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

from keybroker.client.calls import DEFAULT_TIMEOUT, Call, Reply, RetryPolicy
from keybroker.client.config import ExchangeConfig, ExchangeId
from keybroker.client.errors import (
    INVALID_RESPONSE,
    ORDER_NOT_FOUND,
    UNSUPPORTED,
    config_error,
    request_error,
    translate,
)
from keybroker.client.results import (
    Balance,
    Kline,
    Order,
    OrderBook,
    OrderType,
    Side,
    Ticker,
    TimeInForce,
)
from keybroker.clock import Clock, SystemClock
from keybroker.errors import (
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    InvalidInput,
    OrderRejected,
    TimestampOutsideWindow,
    UpstreamError,
)

if TYPE_CHECKING:
    from keybroker.client.transport import Transport
    from keybroker.exchanges.base import ExchangeProfile, KeyPermissions

T = TypeVar("T")

SIDES: tuple[Side, ...] = ("buy", "sell")
ORDER_TYPES: tuple[OrderType, ...] = ("limit", "market", "limit_maker")
TIMES_IN_FORCE: tuple[TimeInForce, ...] = ("GTC", "IOC", "FOK")


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """A checked order request in the adapters' own terms, before any wire format."""

    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None
    time_in_force: TimeInForce | None


def new_client_order_id() -> str:
    """32 letters and digits: valid at Binance (36 max) and OKX (alphanumeric, 32 max)."""
    return "kb" + secrets.token_hex(15)


def to_decimal(what: str, value: object) -> Decimal:
    """A positive finite Decimal from Decimal, int, str or float (via its shortest repr).

    Raises ExchangeError (``InvalidRequest``) naming ``what``.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str | float):
        raise request_error(f"{what} must be a Decimal, int or str")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise request_error(f"{what} is not a number") from None
    if not number.is_finite() or number <= 0:
        raise request_error(f"{what} must be a positive finite number")
    return number


def plain(number: Decimal) -> str:
    """A Decimal as exchanges want it: never an exponent (``1E-8`` is ``0.00000001``)."""
    return format(number, "f")


def to_ms(what: str, value: int | datetime | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise request_error(f"{what} must be timezone-aware (a naive datetime is ambiguous)")
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise request_error(f"{what} must be milliseconds since the epoch or a datetime")
    return value


class Adapter(ABC):
    """Sync, thread-safe access to one exchange account; see the module docstring.

    ``timeout`` is per request in seconds (30 by default). ``request_window_ms``
    is how long after signing the exchange may still act on a request (Binance
    ``recvWindow``, OKX ``expTime``). ``clock`` and ``sleep`` are for tests.
    """

    exchange: ClassVar[ExchangeId]

    def __init__(
        self,
        config: ExchangeConfig,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        request_window_ms: int = 5000,
        clock: Clock | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        name = type(self).__name__
        if not isinstance(config, ExchangeConfig):
            raise config_error(f"{name} takes an ExchangeConfig")
        if config.exchange_id is not self.exchange:
            raise config_error(
                f"{name} needs a {self.exchange.value} config, not {config.exchange_id.value}"
            )
        if not timeout > 0:
            raise config_error("timeout must be a positive number of seconds")
        if not 1 <= request_window_ms <= 60_000:
            raise config_error("request_window_ms must be between 1 and 60000")
        # Loaded here, not at import: httpx and the signers are what make
        # `import keybroker` slow, and most importers never build an adapter.
        from keybroker.client.transport import Transport
        from keybroker.exchanges import get_profile

        self._config = config
        self._profile: ExchangeProfile = get_profile(self.exchange.value)
        self._window_ms = request_window_ms
        self._retry = retry or RetryPolicy()
        self._sleep = sleep or time.sleep
        self._unresolved: dict[str, int] = {}
        self._unresolved_lock = threading.Lock()
        self._transport: Transport = Transport(
            self._profile,
            config.credential(),
            self._base_url,
            self._time_call(),
            self._parse_time,
            timeout=timeout,
            retry=self._retry,
            clock=clock or SystemClock(),
            sleep=self._sleep,
            headers=config.headers,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(...)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} refuses to be pickled: it holds a secret")

    def close(self) -> None:
        """Close the connection pool; the adapter cannot be used afterwards."""
        self._transport.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- public methods ------------------------------------------------------------------
    def server_time(self) -> int:
        """The exchange's time in ms since the epoch; also re-measures the clock offset."""
        with self._translated():
            return self._transport.sync_time()

    def klines(
        self,
        symbol: str,
        interval: str = "1m",
        limit: int = 100,
        start: int | datetime | None = None,
        end: int | datetime | None = None,
    ) -> list[Kline]:
        """Up to ``limit`` candles, oldest first, between ``start`` and ``end`` (ms or datetime).

        ``interval`` uses Binance's spelling (``1m``, ``1h``, ``1d``, ``1w``, ``1M``)
        on both exchanges. When the range holds more than ``limit`` candles, Binance
        gives the earliest and OKX the latest (each exchange pages its own way).
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise request_error("limit must be a positive int")
        call = self._klines_call(
            self._symbol(symbol), interval, limit, to_ms("start", start), to_ms("end", end)
        )
        return self._read(call, lambda data, _reply: self._parse_klines(interval, data))

    def ticker(self, symbol: str) -> Ticker:
        """Last price, best bid and ask and 24-hour statistics of ``symbol``."""
        return self._read(
            self._ticker_call(self._symbol(symbol)), lambda data, _reply: self._parse_ticker(data)
        )

    def order_book(self, symbol: str, depth: int = 100) -> OrderBook:
        """The best ``depth`` levels on each side of ``symbol``'s book."""
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise request_error("depth must be a positive int")
        symbol = self._symbol(symbol)
        return self._read(
            self._book_call(symbol, depth), lambda data, _reply: self._parse_book(symbol, data)
        )

    def balances(self) -> dict[str, Balance]:
        """The account's spot balances by asset (assets with nothing in them may be left out)."""
        return self._read(self._balances_call(), lambda data, _reply: self._parse_balances(data))

    def key_permissions(self) -> KeyPermissions:
        """What the exchange says this key may do (read, trade, withdraw, IP-bound)."""
        call = self._permissions_call()
        profile = self._profile
        return self._read(call, lambda _data, reply: profile.permissions(reply.content))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The account's open orders, for one symbol or all."""
        call = self._open_orders_call(None if symbol is None else self._symbol(symbol))
        return self._read(call, lambda data, _reply: self._parse_orders(data))

    def get_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """One order by the exchange's id or by client order id.

        Raises ExchangeError with code ``OrderNotFound`` when the exchange has no such order.
        """
        symbol = self._symbol(symbol)
        _one_id(order_id, client_order_id)
        with self._translated(client_order_id=client_order_id):
            found = self._lookup(symbol, order_id, client_order_id)
        if found is None:
            raise ExchangeError(
                f"{self.exchange.value}: no order {order_id or client_order_id} on {symbol}",
                code=ORDER_NOT_FOUND,
                exchange=self.exchange.value,
                client_order_id=client_order_id,
            )
        return found

    def place_order(
        self,
        symbol: str,
        side: str,
        type: str,
        quantity: Decimal | int | str | float,
        price: Decimal | int | str | float | None = None,
        client_order_id: str | None = None,
        time_in_force: str = "GTC",
    ) -> Order:
        """Place one order and return it as the exchange reports it; never places it twice.

        ``side`` is buy or sell; ``type`` limit, market or limit_maker (post-only);
        ``quantity`` is in the base asset. ``time_in_force`` (GTC, IOC, FOK) applies
        to limit orders. ``client_order_id`` is generated when not given; reuse it
        to place the same order again after an error with ``outcome_unknown``.
        Raises ExchangeError; for an order that may or may not exist,
        ``outcome_unknown`` is True and ``retryable`` says whether trying again
        (with the same client order id) makes sense.
        """
        spec = self._order_spec(symbol, side, type, quantity, price, time_in_force)
        coid = client_order_id if client_order_id is not None else new_client_order_id()
        self._check_client_order_id(coid)
        with self._translated(client_order_id=coid):
            return self._place(spec, coid)

    def cancel_order(
        self, symbol: str, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """Cancel an order; return its final state.

        An order that was already filled or cancelled is returned as it is (the
        goal, "not open any more", holds). Raises ExchangeError with code
        ``OrderNotFound`` when the exchange has no such order.
        """
        symbol = self._symbol(symbol)
        _one_id(order_id, client_order_id)
        with self._translated(client_order_id=client_order_id):
            return self._cancel(symbol, order_id, client_order_id)

    # -- the order algorithms ----------------------------------------------------------------
    def _place(self, spec: OrderSpec, coid: str) -> Order:
        with self._unresolved_lock:
            pending = self._unresolved.get(coid)
        if pending is not None:
            found = self._settle(spec.symbol, coid, pending)
            with self._unresolved_lock:
                self._unresolved.pop(coid, None)
            if found is not None:
                return found
        transport = self._transport
        last: UpstreamError | None = None
        for attempt in range(self._retry.tries):
            if attempt:
                self._sleep(self._retry.delay(attempt, _JITTER))
            sent_ms = transport.now_ms()
            call = self._place_call(spec, coid, sent_ms)
            try:
                reply = transport.request(call, now_ms=sent_ms, idempotent=False)
            except TimestampOutsideWindow as exc:
                # Checked before the exchange acted: not placed. Re-measure, send again.
                last = exc
                transport.sync_time()
                continue
            except ExchangeUnavailable as exc:
                # 5xx, timeout or dropped connection: the order may exist.
                last = exc
                found = self._settle(spec.symbol, coid, sent_ms + self._window_ms)
                if found is not None:
                    return found
                continue  # it does not exist, and the lost request can no longer act
            except OrderRejected as exc:
                # A resend that meets the first copy (an open order has this id): it exists.
                if attempt and self._is_duplicate(exc):
                    found = self._settle(spec.symbol, coid, sent_ms + self._window_ms)
                    if found is not None:
                        return found
                raise
            try:
                return self._parsed(self._parse_placed, reply, spec, coid)
            except ExchangeError:
                # Accepted (a success status) but unreadable: the order exists, so
                # answer with what a lookup says rather than an error a bot may retry.
                found = self._settle(spec.symbol, coid, sent_ms + self._window_ms)
                if found is not None:
                    return found
                raise
        assert last is not None
        raise translate(
            last,
            message=f"{last.message}; order {coid} was not placed after {self._retry.tries} tries",
            client_order_id=coid,
        ) from last

    def _settle(self, symbol: str, coid: str, deadline_ms: int) -> Order | None:
        # Is the order there? If not, wait until the exchange would refuse the lost
        # request (timestamp + window on its clock, plus a margin for our offset
        # estimate) and ask again: an exchange still working on it would otherwise
        # be answered "not found" and the resend would be a duplicate.
        try:
            found = self._lookup(symbol, None, coid)
            if found is not None:
                return found
            margin_ms = int(self._retry.settle_margin * 1000) + self._transport.rtt_ms
            wait_ms = deadline_ms + margin_ms - self._transport.now_ms()
            if wait_ms > 0:
                self._sleep(wait_ms / 1000)
                found = self._lookup(symbol, None, coid)
            return found
        except UpstreamError as exc:
            with self._unresolved_lock:
                self._unresolved[coid] = deadline_ms
            raise translate(
                exc,
                message=f"{self.exchange.value}: order {coid} may or may not have been placed "
                f"(looking it up failed: {exc.message}); place it again with the same "
                "client_order_id, which looks it up before sending",
                client_order_id=coid,
                outcome_unknown=True,
            ) from exc

    def _cancel(self, symbol: str, order_id: str | None, coid: str | None) -> Order:
        transport = self._transport
        last: UpstreamError | None = None
        for attempt in range(self._retry.tries):
            if attempt:
                self._sleep(self._retry.delay(attempt, _JITTER))
            try:
                reply = transport.request(
                    self._cancel_call(symbol, order_id, coid), idempotent=False
                )
                return self._parsed(self._parse_canceled, reply, symbol, order_id, coid)
            except TimestampOutsideWindow as exc:
                last = exc
                transport.sync_time()
                continue
            except ExchangeUnavailable as exc:
                last = exc  # the cancel may have happened: look before sending it again
            except ExchangeRejected as exc:
                if not self._is_cancel_refused(exc):
                    raise
                found = self._lookup(symbol, order_id, coid)
                if found is None:
                    raise translate(exc, code=ORDER_NOT_FOUND) from exc
                if found.is_open:
                    raise
                return found  # already filled or cancelled: not open, as asked
            found = self._lookup(symbol, order_id, coid)
            if found is None:
                raise ExchangeError(
                    f"{self.exchange.value}: no order {order_id or coid} on {symbol}",
                    code=ORDER_NOT_FOUND,
                    exchange=self.exchange.value,
                    client_order_id=coid,
                )
            if not found.is_open:
                return found
        assert last is not None
        raise translate(last, client_order_id=coid) from last

    def _lookup(self, symbol: str, order_id: str | None, coid: str | None) -> Order | None:
        """The order, or None if the exchange says it has no such order (reads retry)."""
        try:
            reply = self._transport.request(self._order_call(symbol, order_id, coid))
        except ExchangeRejected as exc:
            if self._is_not_found(exc):
                return None
            raise
        return self._parsed(self._parse_order, reply.data)

    # -- helpers -----------------------------------------------------------------------------
    def _read(self, call: Call, parse: Callable[[Any, Reply], T]) -> T:
        with self._translated():
            reply = self._transport.request(call)
            return self._parsed(parse, reply.data, reply)

    def _parsed(self, parse: Callable[..., T], *args: Any) -> T:
        try:
            return parse(*args)
        except (
            KeyError,
            IndexError,
            TypeError,
            ValueError,
            InvalidOperation,
            AttributeError,
        ) as exc:
            # A shape we do not know: say so rather than hand the bot a half-read value.
            # Only the exception's type is named: its text could quote the answer.
            raise ExchangeError(
                f"{self.exchange.value} answered in a shape the adapter does not understand "
                f"({type(exc).__name__})",
                code=INVALID_RESPONSE,
                exchange=self.exchange.value,
            ) from None

    @contextmanager
    def _translated(self, *, client_order_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except UpstreamError as exc:
            raise translate(exc, client_order_id=client_order_id) from exc
        except InvalidInput as exc:
            # From the profile: a path it has no host for, a permission query it lacks.
            raise ExchangeError(
                exc.message, code=UNSUPPORTED, exchange=self.exchange.value
            ) from exc

    def _base_url(self, path: str) -> str:
        if self._config.rest_base_url is not None:
            return self._config.rest_base_url
        return self._profile.base_url(path, self._config.environment)

    def _order_spec(
        self,
        symbol: str,
        side: str,
        order_type: str,
        quantity: object,
        price: object,
        time_in_force: str,
    ) -> OrderSpec:
        side_name = str(side).strip().lower()
        if side_name not in SIDES:
            raise request_error(f"side must be one of: {', '.join(SIDES)}")
        type_name = str(order_type).strip().lower()
        if type_name not in ORDER_TYPES:
            raise request_error(f"type must be one of: {', '.join(ORDER_TYPES)}")
        tif = str(time_in_force).strip().upper()
        if tif not in TIMES_IN_FORCE:
            raise request_error(f"time_in_force must be one of: {', '.join(TIMES_IN_FORCE)}")
        amount = to_decimal("quantity", quantity)
        if type_name == "market":
            if price is not None:
                raise request_error("a market order takes no price")
            limit_price = None
        else:
            if price is None:
                raise request_error(f"a {type_name} order needs a price")
            limit_price = to_decimal("price", price)
        return OrderSpec(
            symbol=self._symbol(symbol),
            side=side_name,  # checked above
            type=type_name,
            quantity=amount,
            price=limit_price,
            time_in_force=None if type_name == "market" else tif,
        )

    # -- what each exchange module fills in ------------------------------------------------------
    @abstractmethod
    def _symbol(self, symbol: str) -> str: ...
    @abstractmethod
    def _check_client_order_id(self, coid: str) -> None: ...
    @abstractmethod
    def _time_call(self) -> Call: ...
    @abstractmethod
    def _parse_time(self, data: Any) -> int: ...
    @abstractmethod
    def _klines_call(
        self, symbol: str, interval: str, limit: int, start: int | None, end: int | None
    ) -> Call: ...
    @abstractmethod
    def _parse_klines(self, interval: str, data: Any) -> list[Kline]: ...
    @abstractmethod
    def _ticker_call(self, symbol: str) -> Call: ...
    @abstractmethod
    def _parse_ticker(self, data: Any) -> Ticker: ...
    @abstractmethod
    def _book_call(self, symbol: str, depth: int) -> Call: ...
    @abstractmethod
    def _parse_book(self, symbol: str, data: Any) -> OrderBook: ...
    @abstractmethod
    def _balances_call(self) -> Call: ...
    @abstractmethod
    def _parse_balances(self, data: Any) -> dict[str, Balance]: ...
    @abstractmethod
    def _permissions_call(self) -> Call: ...
    @abstractmethod
    def _open_orders_call(self, symbol: str | None) -> Call: ...
    @abstractmethod
    def _parse_orders(self, data: Any) -> list[Order]: ...
    @abstractmethod
    def _order_call(self, symbol: str, order_id: str | None, coid: str | None) -> Call: ...
    @abstractmethod
    def _parse_order(self, data: Any) -> Order: ...
    @abstractmethod
    def _place_call(self, spec: OrderSpec, coid: str, now_ms: int) -> Call: ...
    @abstractmethod
    def _parse_placed(self, reply: Reply, spec: OrderSpec, coid: str) -> Order: ...
    @abstractmethod
    def _cancel_call(self, symbol: str, order_id: str | None, coid: str | None) -> Call: ...
    @abstractmethod
    def _parse_canceled(
        self, reply: Reply, symbol: str, order_id: str | None, coid: str | None
    ) -> Order: ...
    @abstractmethod
    def _is_not_found(self, error: UpstreamError) -> bool: ...
    @abstractmethod
    def _is_duplicate(self, error: UpstreamError) -> bool: ...
    @abstractmethod
    def _is_cancel_refused(self, error: UpstreamError) -> bool: ...


def _one_id(order_id: str | None, client_order_id: str | None) -> None:
    if (order_id is None) == (client_order_id is None):
        raise request_error("give exactly one of order_id and client_order_id")


# Jitter for order resends; not a secret, and shared so resends of many orders spread out.
_JITTER = random.Random()  # noqa: S311
