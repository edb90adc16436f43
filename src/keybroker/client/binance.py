"""BinanceAdapter: Binance spot (``/api/v3``) for bots that hold their own key in-process.

    >>> with BinanceAdapter(binance_testnet_config()) as binance:
    ...     binance.klines("BTCUSDT", "1h", limit=24)[-1].close
    Decimal('60000.00')

This module is the adapter's knowledge of Binance's wire format: which
endpoint each method calls with which parameters, and how to read the
answers. Signing, hosts and error codes come from the Binance profile
(``keybroker.exchanges.binance``); retries and order safety from ``base.py``.
Orders go in a form body with ``newOrderRespType=RESULT`` (fill totals without
the per-fill list), and every signed call carries ``recvWindow``, which is also
how long Binance may act on a lost order before the adapter may resend it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from keybroker.client.base import Adapter, OrderSpec, plain
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
from keybroker.errors import UpstreamError

INTERVALS_MS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
    "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
    "3d": 259_200_000, "1w": 604_800_000, "1M": 2_592_000_000,
}  # fmt: skip
_CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_STATUSES: dict[str, OrderStatus] = {
    "NEW": "open",
    "PENDING_NEW": "accepted",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "PENDING_CANCEL": "open",
    "REJECTED": "rejected",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",
}
_TYPES = {"limit": "LIMIT", "market": "MARKET", "limit_maker": "LIMIT_MAKER"}
_ORDER_NOT_FOUND = -2013  # "Order does not exist."
_UNKNOWN_ORDER = -2011  # "Unknown order sent." (a cancel of nothing open)
_REJECTED = -2010  # "New order rejected", message says why (e.g. "Duplicate order sent.")


class BinanceAdapter(Adapter):
    """Binance spot through the Binance profile; see ``Adapter`` for the methods."""

    exchange = ExchangeId.Binance

    def _symbol(self, symbol: str) -> str:
        if not isinstance(symbol, str) or not symbol.strip():
            raise request_error("symbol is empty", exchange="binance")
        # "BTC/USDT" and "BTC-USDT" mean BTCUSDT here.
        return symbol.strip().upper().replace("/", "").replace("-", "")

    def _check_client_order_id(self, coid: str) -> None:
        if not isinstance(coid, str) or not _CLIENT_ORDER_ID.match(coid):
            raise request_error(
                "binance client_order_id must be 1-36 of letters, digits and . : / _ -",
                exchange="binance",
            )

    def _signed(self, method: str, path: str, *params: tuple[str, str], form: bool = False) -> Call:
        return Call(
            method, path, (*params, ("recvWindow", str(self._window_ms))), form=form, signed=True
        )

    # -- market data ---------------------------------------------------------------------
    def _time_call(self) -> Call:
        return Call("GET", "/api/v3/time")

    def _parse_time(self, data: Any) -> int:
        return int(data["serverTime"])

    def _klines_call(
        self, symbol: str, interval: str, limit: int, start: int | None, end: int | None
    ) -> Call:
        if interval not in INTERVALS_MS:
            raise request_error(
                f"binance interval must be one of: {', '.join(INTERVALS_MS)}", exchange="binance"
            )
        params = [("symbol", symbol), ("interval", interval), ("limit", str(limit))]
        if start is not None:
            params.append(("startTime", str(start)))
        if end is not None:
            params.append(("endTime", str(end)))
        return Call("GET", "/api/v3/klines", tuple(params))

    def _parse_klines(self, interval: str, data: Any) -> list[Kline]:
        now = self._transport.now_ms(sync=False)
        return [
            Kline(
                open_time_ms=int(row[0]),
                open=Decimal(row[1]),
                high=Decimal(row[2]),
                low=Decimal(row[3]),
                close=Decimal(row[4]),
                volume=Decimal(row[5]),
                close_time_ms=int(row[6]),
                quote_volume=Decimal(row[7]),
                trades=int(row[8]),
                is_closed=int(row[6]) < now,
            )
            for row in data
        ]

    def _ticker_call(self, symbol: str) -> Call:
        return Call("GET", "/api/v3/ticker/24hr", (("symbol", symbol),))

    def _parse_ticker(self, data: Any) -> Ticker:
        return Ticker(
            symbol=data["symbol"],
            last=Decimal(data["lastPrice"]),
            bid=_optional(data.get("bidPrice")),
            ask=_optional(data.get("askPrice")),
            high_24h=_optional(data.get("highPrice")),
            low_24h=_optional(data.get("lowPrice")),
            volume_24h=_optional(data.get("volume")),
            time_ms=int(data["closeTime"]) if "closeTime" in data else None,
        )

    def _book_call(self, symbol: str, depth: int) -> Call:
        return Call("GET", "/api/v3/depth", (("symbol", symbol), ("limit", str(depth))))

    def _parse_book(self, symbol: str, data: Any) -> OrderBook:
        return OrderBook(
            symbol=symbol,  # the depth answer does not repeat it
            bids=tuple(BookLevel(Decimal(p), Decimal(q)) for p, q in data["bids"]),
            asks=tuple(BookLevel(Decimal(p), Decimal(q)) for p, q in data["asks"]),
        )

    # -- account ---------------------------------------------------------------------------
    def _balances_call(self) -> Call:
        return self._signed("GET", "/api/v3/account", ("omitZeroBalances", "true"))

    def _parse_balances(self, data: Any) -> dict[str, Balance]:
        return {
            row["asset"]: Balance(row["asset"], Decimal(row["free"]), Decimal(row["locked"]))
            for row in data["balances"]
        }

    def _permissions_call(self) -> Call:
        from keybroker.exchanges.binance import PERMISSION_PATH

        return self._signed("GET", PERMISSION_PATH)

    # -- orders --------------------------------------------------------------------------------
    def _open_orders_call(self, symbol: str | None) -> Call:
        if symbol is None:
            return self._signed("GET", "/api/v3/openOrders")
        return self._signed("GET", "/api/v3/openOrders", ("symbol", symbol))

    def _parse_orders(self, data: Any) -> list[Order]:
        return [_order(row) for row in data]

    def _order_call(self, symbol: str, order_id: str | None, coid: str | None) -> Call:
        return self._signed("GET", "/api/v3/order", ("symbol", symbol), _id_param(order_id, coid))

    def _parse_order(self, data: Any) -> Order:
        return _order(data)

    def _place_call(self, spec: OrderSpec, coid: str, now_ms: int) -> Call:
        params = [
            ("symbol", spec.symbol),
            ("side", spec.side.upper()),
            ("type", _TYPES[spec.type]),
        ]
        if spec.type == "limit":
            params.append(("timeInForce", spec.time_in_force or "GTC"))
        params.append(("quantity", plain(spec.quantity)))
        if spec.price is not None:
            params.append(("price", plain(spec.price)))
        params += [("newClientOrderId", coid), ("newOrderRespType", "RESULT")]
        return self._signed("POST", "/api/v3/order", *params, form=True)

    def _parse_placed(self, reply: Reply, spec: OrderSpec, coid: str) -> Order:
        return _order(reply.data)

    def _cancel_call(self, symbol: str, order_id: str | None, coid: str | None) -> Call:
        return self._signed(
            "DELETE", "/api/v3/order", ("symbol", symbol), _id_param(order_id, coid)
        )

    def _parse_canceled(
        self, reply: Reply, symbol: str, order_id: str | None, coid: str | None
    ) -> Order:
        # A cancel's clientOrderId is the cancel request's own id; the order's is "orig".
        data = dict(reply.data)
        data["clientOrderId"] = data.get("origClientOrderId", data.get("clientOrderId"))
        return _order(data)

    def _is_not_found(self, error: UpstreamError) -> bool:
        return error.code == _ORDER_NOT_FOUND

    def _is_duplicate(self, error: UpstreamError) -> bool:
        return error.code == _REJECTED and "duplicate" in error.message.lower()

    def _is_cancel_refused(self, error: UpstreamError) -> bool:
        return error.code in (_UNKNOWN_ORDER, _ORDER_NOT_FOUND)


def _id_param(order_id: str | None, coid: str | None) -> tuple[str, str]:
    if order_id is not None:
        return ("orderId", str(order_id))
    return ("origClientOrderId", str(coid))


def _optional(value: Any) -> Decimal | None:
    return None if value in (None, "") else Decimal(value)


def _order(data: Any) -> Order:
    order_type = str(data["type"]).lower()
    executed = Decimal(data["executedQty"])
    quote = Decimal(data.get("cummulativeQuoteQty", "0"))
    price = Decimal(data.get("price", "0"))
    side: Side = "buy" if data["side"] == "BUY" else "sell"
    tif = data.get("timeInForce")
    time_in_force: TimeInForce | None = tif if tif in ("GTC", "IOC", "FOK") else None
    created = data.get("time", data.get("transactTime"))
    updated = data.get("updateTime", data.get("workingTime", created))
    return Order(
        symbol=data["symbol"],
        order_id=str(data["orderId"]),
        client_order_id=str(data["clientOrderId"]),
        side=side,
        type=order_type,
        status=_STATUSES[data["status"]],
        quantity=Decimal(data["origQty"]),
        price=None if order_type == "market" or not price else price,
        filled_quantity=executed,
        average_price=(quote / executed) if executed else None,
        time_in_force=None if order_type == "market" else time_in_force,
        created_ms=int(created) if created is not None else None,
        updated_ms=int(updated) if updated is not None else None,
    )
