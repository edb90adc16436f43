"""OKXAdapter: OKX v5 spot (cash) trading for bots that hold their own key in-process.

    >>> with OKXAdapter(okx_testnet_config()) as okx:
    ...     okx.ticker("BTC-USDT").last
    Decimal('60000')

This module is the adapter's knowledge of OKX's wire format; signing, the
demo header and error codes come from the OKX profile
(``keybroker.exchanges.okx``), retries and order safety from ``base.py``.
OKX specifics worth knowing:

- Orders are ``tdMode=cash``; market orders are sized in the base asset
  (``tgtCcy=base_ccy``), since a market *buy* is otherwise sized in the quote.
- Every order carries an ``expTime`` header (signing time + ``request_window_ms``):
  OKX refuses it after that, which is what lets the adapter conclude a lost
  order will never execute before it resends it.
- OKX answers a placement with ids only, so ``place_order`` returns status
  ``accepted`` without fill figures (``get_order`` has them); ``cancel_order``
  reads the order back to return its final state.
- Candles come newest first from OKX and are returned oldest first; at most
  300 per call, and ``open_orders`` returns at most the 100 newest.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from keybroker.client.base import Adapter, OrderSpec, plain
from keybroker.client.binance import INTERVALS_MS
from keybroker.client.calls import Call, Reply
from keybroker.client.config import ExchangeId
from keybroker.client.errors import request_error
from keybroker.client.results import (
    Balance,
    BookLevel,
    Kline,
    Order,
    OrderBook,
    OrderStatus,
    Side,
    Ticker,
    TimeInForce,
)
from keybroker.errors import OrderRejected, UpstreamError

# Binance spelling (the adapters' common one) -> OKX bar; OKX has no 8h bar.
BARS = {
    "1s": "1s", "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m",
    "1h": "1H", "2h": "2H", "4h": "4H", "6h": "6H", "12h": "12H",
    "1d": "1D", "3d": "3D", "1w": "1W", "1M": "1M",
}  # fmt: skip
MOST_CANDLES = 300
MOST_LEVELS = 400
_CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_STATES: dict[str, OrderStatus] = {
    "live": "open",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "canceled": "canceled",
    "mmp_canceled": "canceled",
}
_ORDER_TYPES: dict[str, tuple[str, TimeInForce | None]] = {
    "limit": ("limit", "GTC"),
    "ioc": ("limit", "IOC"),
    "fok": ("limit", "FOK"),
    "post_only": ("limit_maker", "GTC"),
    "market": ("market", None),
}
_ORDER_NOT_FOUND = "51603"
_DUPLICATE_CLIENT_ID = "51016"
# Cancellation failed: filled, cancelled or missing; already cancelled; already completed.
_CANCEL_REFUSED = frozenset({"51400", "51401", "51402", _ORDER_NOT_FOUND})
_DEMO_HEADER = (("x-simulated-trading", "1"),)


class OKXAdapter(Adapter):
    """OKX spot through the OKX profile; see ``Adapter`` for the methods."""

    exchange = ExchangeId.OKX

    def _symbol(self, symbol: str) -> str:
        if not isinstance(symbol, str) or not symbol.strip():
            raise request_error("symbol is empty", exchange="okx")
        return symbol.strip().upper().replace("/", "-")  # "BTC/USDT" means BTC-USDT here

    def _check_client_order_id(self, coid: str) -> None:
        if not isinstance(coid, str) or not _CLIENT_ORDER_ID.match(coid):
            raise request_error(
                "okx client_order_id must be 1-32 letters and digits", exchange="okx"
            )

    def _call(
        self,
        method: str,
        path: str,
        *params: tuple[str, str],
        json: Any = None,
        signed: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Call:
        # Demo trading is chosen by this header (the signer sets it on signed
        # calls too); ccxt's sandbox mode sends it on public calls as well.
        if self._config.testnet:
            headers = (*headers, *_DEMO_HEADER)
        return Call(method, path, params, json=json, signed=signed, headers=headers)

    # -- market data ---------------------------------------------------------------------
    def _time_call(self) -> Call:
        return self._call("GET", "/api/v5/public/time")

    def _parse_time(self, data: Any) -> int:
        return int(data["data"][0]["ts"])

    def _klines_call(
        self, symbol: str, interval: str, limit: int, start: int | None, end: int | None
    ) -> Call:
        bar = BARS.get(interval)
        if bar is None:
            raise request_error(f"okx interval must be one of: {', '.join(BARS)}", exchange="okx")
        if limit > MOST_CANDLES:
            raise request_error(f"okx returns at most {MOST_CANDLES} candles", exchange="okx")
        params = [("instId", symbol), ("bar", bar), ("limit", str(limit))]
        # OKX pages by exclusive bounds: "after" = older than, "before" = newer than.
        if end is not None:
            params.append(("after", str(end + 1)))
        if start is not None:
            params.append(("before", str(start - 1)))
        return self._call("GET", "/api/v5/market/candles", *params)

    def _parse_klines(self, interval: str, data: Any) -> list[Kline]:
        rows = data["data"]
        interval_ms = INTERVALS_MS[interval]
        return [
            Kline(
                open_time_ms=int(row[0]),
                open=Decimal(row[1]),
                high=Decimal(row[2]),
                low=Decimal(row[3]),
                close=Decimal(row[4]),
                volume=Decimal(row[5]),
                close_time_ms=int(row[0]) + interval_ms - 1,
                quote_volume=Decimal(row[7]) if len(row) > 7 and row[7] != "" else None,
                is_closed=row[8] == "1" if len(row) > 8 else True,
            )
            for row in reversed(rows)
        ]

    def _ticker_call(self, symbol: str) -> Call:
        return self._call("GET", "/api/v5/market/ticker", ("instId", symbol))

    def _parse_ticker(self, data: Any) -> Ticker:
        row = data["data"][0]
        return Ticker(
            symbol=row["instId"],
            last=Decimal(row["last"]),
            bid=_optional(row.get("bidPx")),
            ask=_optional(row.get("askPx")),
            high_24h=_optional(row.get("high24h")),
            low_24h=_optional(row.get("low24h")),
            volume_24h=_optional(row.get("vol24h")),
            time_ms=int(row["ts"]) if row.get("ts") else None,
        )

    def _book_call(self, symbol: str, depth: int) -> Call:
        if depth > MOST_LEVELS:
            raise request_error(f"okx gives at most {MOST_LEVELS} levels", exchange="okx")
        return self._call("GET", "/api/v5/market/books", ("instId", symbol), ("sz", str(depth)))

    def _parse_book(self, symbol: str, data: Any) -> OrderBook:
        book = data["data"][0]
        return OrderBook(
            symbol=symbol,
            bids=tuple(BookLevel(Decimal(row[0]), Decimal(row[1])) for row in book["bids"]),
            asks=tuple(BookLevel(Decimal(row[0]), Decimal(row[1])) for row in book["asks"]),
            time_ms=int(book["ts"]) if book.get("ts") else None,
        )

    # -- account ---------------------------------------------------------------------------
    def _balances_call(self) -> Call:
        return self._call("GET", "/api/v5/account/balance", signed=True)

    def _parse_balances(self, data: Any) -> dict[str, Balance]:
        details = data["data"][0]["details"] if data["data"] else []
        return {
            row["ccy"]: Balance(
                row["ccy"], _amount(row.get("availBal")), _amount(row.get("frozenBal"))
            )
            for row in details
        }

    def _permissions_call(self) -> Call:
        from keybroker.exchanges.okx import PERMISSION_PATH

        return self._call("GET", PERMISSION_PATH, signed=True)

    # -- orders --------------------------------------------------------------------------------
    def _open_orders_call(self, symbol: str | None) -> Call:
        params = [("instType", "SPOT")]
        if symbol is not None:
            params.append(("instId", symbol))
        return self._call("GET", "/api/v5/trade/orders-pending", *params, signed=True)

    def _parse_orders(self, data: Any) -> list[Order]:
        return [_order(row) for row in data["data"]]

    def _order_call(self, symbol: str, order_id: str | None, coid: str | None) -> Call:
        which = ("ordId", str(order_id)) if order_id is not None else ("clOrdId", str(coid))
        return self._call("GET", "/api/v5/trade/order", ("instId", symbol), which, signed=True)

    def _parse_order(self, data: Any) -> Order:
        return _order(data["data"][0])

    def _place_call(self, spec: OrderSpec, coid: str, now_ms: int) -> Call:
        if spec.type == "market":
            order_type = "market"
        elif spec.type == "limit_maker":
            order_type = "post_only"
        else:
            order_type = {"GTC": "limit", "IOC": "ioc", "FOK": "fok"}[spec.time_in_force or "GTC"]
        body: dict[str, str] = {
            "instId": spec.symbol,
            "tdMode": "cash",
            "side": spec.side,
            "ordType": order_type,
            "sz": plain(spec.quantity),
            "clOrdId": coid,
        }
        if spec.price is not None:
            body["px"] = plain(spec.price)
        if spec.type == "market":
            body["tgtCcy"] = "base_ccy"
        expires = (("expTime", str(now_ms + self._window_ms)),)
        return self._call("POST", "/api/v5/trade/order", json=body, signed=True, headers=expires)

    def _parse_placed(self, reply: Reply, spec: OrderSpec, coid: str) -> Order:
        row = reply.data["data"][0]
        return Order(
            symbol=spec.symbol,
            order_id=str(row["ordId"]),
            client_order_id=str(row.get("clOrdId") or coid),
            side=spec.side,
            type=spec.type,
            status="accepted",
            quantity=spec.quantity,
            price=spec.price,
            filled_quantity=None,
            average_price=None,
            time_in_force=spec.time_in_force,
            created_ms=int(row["ts"]) if row.get("ts") else None,
            updated_ms=None,
        )

    def _cancel_call(self, symbol: str, order_id: str | None, coid: str | None) -> Call:
        body = {"instId": symbol}
        if order_id is not None:
            body["ordId"] = str(order_id)
        else:
            body["clOrdId"] = str(coid)
        return self._call("POST", "/api/v5/trade/cancel-order", json=body, signed=True)

    def _parse_canceled(
        self, reply: Reply, symbol: str, order_id: str | None, coid: str | None
    ) -> Order:
        # The answer holds ids only; read the order back for its final state.
        found = self._lookup(symbol, order_id, coid)
        if found is None:
            raise OrderRejected(
                f"okx cancelled order {order_id or coid} but cannot find it now",
                exchange="okx",
                code=_ORDER_NOT_FOUND,
            )
        return found

    def _is_not_found(self, error: UpstreamError) -> bool:
        return str(error.code) == _ORDER_NOT_FOUND

    def _is_duplicate(self, error: UpstreamError) -> bool:
        return str(error.code) == _DUPLICATE_CLIENT_ID

    def _is_cancel_refused(self, error: UpstreamError) -> bool:
        return str(error.code) in _CANCEL_REFUSED


def _optional(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(value)


def _amount(value: Any) -> Decimal:
    return Decimal(0) if value in (None, "") else Decimal(value)


def _order(row: Any) -> Order:
    order_type, time_in_force = _ORDER_TYPES.get(row["ordType"], (str(row["ordType"]), None))
    filled = _amount(row.get("accFillSz"))
    size = Decimal(row["sz"])
    if row.get("tgtCcy") == "quote_ccy":
        size = filled  # sz counted the quote asset; the base amount is what was filled
    side: Side = "buy" if row["side"] == "buy" else "sell"
    return Order(
        symbol=row["instId"],
        order_id=str(row["ordId"]),
        client_order_id=str(row.get("clOrdId", "")),
        side=side,
        type=order_type,
        status=_STATES[row["state"]],
        quantity=size,
        price=_optional(row.get("px")) if order_type != "market" else None,
        filled_quantity=filled,
        average_price=_optional(row.get("avgPx")) if filled else None,
        time_in_force=time_in_force,
        created_ms=int(row["cTime"]) if row.get("cTime") else None,
        updated_ms=int(row["uTime"]) if row.get("uTime") else None,
    )
