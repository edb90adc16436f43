"""OKX v5 spot (``tdMode`` cash) for the paper venue: its requests read, its answers written.

    >>> VENUE.operation(request, classified, intents)
    Place(orders=(NewOrder(symbol='BTC-USDT', side='buy', type='limit', ...),), batch=True)

Orders come from ``exchanges.okx.parse_order`` (the intents the policy
judged, with ``sz`` already read as base or quote by ``tgtCcy``); cancels
and queries name ``instId`` with ``ordId`` or ``clOrdId``. Every answer is
the ``{"code", "msg", "data"}`` envelope with strings for numbers, as OKX
writes it: a placement that failed for every order is code "1" with the
per-order ``sCode`` (51008 insufficient balance), HTTP 200. Margin, swaps,
algo orders and amendments are not simulated: refused, never forwarded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from keybroker.errors import InvalidInput
from keybroker.exchanges._wire import load_json
from keybroker.exchanges.base import ClassifiedRequest, OrderIntent
from keybroker.paper.model import (
    ZERO,
    Balance,
    Book,
    Fees,
    Fill,
    Instrument,
    Level,
    NewOrder,
    Order,
    PublicTrade,
    Refusal,
    Refused,
)
from keybroker.paper.venues.base import (
    Answer,
    Balances,
    Cancel,
    CancelAll,
    ListFills,
    ListOrders,
    Operation,
    Place,
    Placed,
    QueryOrder,
    Target,
    Unsupported,
    decimal_text,
)

# Regular users, level 1, spot: 0.08 % maker, 0.10 % taker.
FEES = Fees(maker=Decimal("0.0008"), taker=Decimal("0.001"))
_V5 = "/api/v5"
_PAPER_ACCOUNT_PATHS = frozenset({f"{_V5}/account/balance"})
_STATES = {
    "NEW": "live",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "EXPIRED": "canceled",
}
_ORDER_TYPES = {
    "market": ("market", "IOC", False),
    "limit": ("limit", "GTC", False),
    "post_only": ("limit", "GTC", True),
    "ioc": ("limit", "IOC", False),
    "fok": ("limit", "FOK", False),
}
_ERRORS: dict[Refusal, tuple[str, str]] = {
    Refusal.UNKNOWN_SYMBOL: ("51001", "Instrument ID does not exist"),
    Refusal.INVALID: ("51000", "Parameter error"),
    Refusal.LOT_SIZE: ("51020", "Your order should meet or exceed the minimum order amount."),
    Refusal.NOTIONAL: ("51020", "Your order should meet or exceed the minimum order amount."),
    Refusal.INSUFFICIENT_BALANCE: ("51008", "Order failed. Insufficient balance."),
    Refusal.WOULD_TAKE: ("51000", "Parameter ordType error"),
    Refusal.DUPLICATE_CLIENT_ORDER_ID: ("51016", "Duplicated clOrdId"),
    Refusal.UNKNOWN_ORDER: (
        "51400",
        "Order cancellation failed as the order has been filled, canceled or does not exist.",
    ),
}


def _s(value: Decimal | None) -> str:
    return "" if value is None else decimal_text(value)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _data(body: bytes) -> list[Any] | None:
    payload = _json(body)
    if not isinstance(payload, dict) or payload.get("code") != "0":
        return None
    data = payload.get("data")
    return data if isinstance(data, list) else None


def _query(request: httpx.Request) -> dict[str, str]:
    return {key: value for key, value in request.url.params.multi_items()}


def _target(fields: Mapping[str, Any]) -> Target:
    order_id = str(fields.get("ordId") or "")
    if order_id and not order_id.isdigit():
        # Not one of ours: the paper venue's ids are numbers. Looked up as absent.
        order_id = "0"
    client_id = str(fields.get("clOrdId") or "") or None
    symbol = str(fields.get("instId") or "") or None
    if symbol is None or (not order_id and client_id is None):
        raise Refused(Refusal.INVALID, "instId, ordId or clOrdId")
    return Target(symbol, int(order_id) if order_id else None, client_id)


class OkxVenue:
    """The paper venue's OKX spot adapter."""

    exchange = "okx"
    fees = FEES
    book_depth = 100

    # -- reading the bot's request ----------------------------------------------------------

    def answers(self, classified: ClassifiedRequest) -> bool:
        if classified.kind == "public":
            return False
        if classified.kind == "account_read":
            path = (classified.pattern or classified.path).lower()
            return classified.method == "GET" and path in _PAPER_ACCOUNT_PATHS
        return True

    def operation(
        self,
        request: httpx.Request,
        classified: ClassifiedRequest,
        intents: Sequence[OrderIntent],
    ) -> Operation:
        path = (classified.pattern or classified.path).lower()
        method = classified.method
        if method == "POST" and path in (f"{_V5}/trade/order", f"{_V5}/trade/batch-orders"):
            orders = tuple(
                self._new_order(intent, body)
                for intent, body in zip(intents, self._bodies(request), strict=True)
            )
            return Place(orders, batch=path.endswith("batch-orders"))
        if method == "POST" and path in (
            f"{_V5}/trade/cancel-order",
            f"{_V5}/trade/cancel-batch-orders",
        ):
            targets = tuple(_target(body) for body in self._bodies(request))
            if not targets:
                raise Refused(Refusal.INVALID, "instId")
            return Cancel(targets, batch=path.endswith("batch-orders"))
        query = _query(request)
        if method == "GET" and path == f"{_V5}/trade/order":
            return QueryOrder(_target(query))
        limit = min(100, int(query["limit"])) if query.get("limit", "").isdigit() else 100
        symbol = query.get("instId") or None
        if query.get("instType", "SPOT") != "SPOT":
            return Unsupported("paper trading on OKX covers spot only")
        if method == "GET" and path == f"{_V5}/trade/orders-pending":
            return ListOrders(symbol, "open", limit)
        if method == "GET" and path in (
            f"{_V5}/trade/orders-history",
            f"{_V5}/trade/orders-history-archive",
        ):
            return ListOrders(symbol, "closed", limit)
        if method == "GET" and path in (f"{_V5}/trade/fills", f"{_V5}/trade/fills-history"):
            return ListFills(symbol, limit)
        if method == "GET" and path == f"{_V5}/account/balance":
            wanted = frozenset(c for c in query.get("ccy", "").split(",") if c)
            return Balances(wanted)
        return Unsupported(
            f"{method} {classified.pattern or path} is not simulated by paper trading"
        )

    def _bodies(self, request: httpx.Request) -> list[Mapping[str, Any]]:
        try:
            payload = load_json(request.read())
        except InvalidInput:
            raise Refused(Refusal.INVALID, "body") from None
        bodies = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(body, dict) for body in bodies):
            raise Refused(Refusal.INVALID, "body")
        return bodies

    def _new_order(self, intent: OrderIntent, body: Mapping[str, Any]) -> NewOrder:
        if str(body.get("tdMode") or "") != "cash":
            raise Refused(Refusal.INVALID, "tdMode")
        if intent.side not in ("buy", "sell"):
            raise Refused(Refusal.INVALID, "side")
        shape = _ORDER_TYPES.get(intent.type or "")
        if shape is None:
            raise Refused(Refusal.INVALID, "ordType")
        kind, tif, post_only = shape
        size = intent.quote_quantity if intent.quote_quantity is not None else intent.quantity
        if size is None or size <= 0:
            raise Refused(Refusal.INVALID, "sz")
        if kind == "limit" and (intent.price is None or intent.price <= 0):
            raise Refused(Refusal.INVALID, "px")
        return NewOrder(
            intent.symbol,
            intent.side,  # type: ignore[arg-type]
            kind,  # type: ignore[arg-type]
            intent.quantity,
            intent.quote_quantity,
            intent.price if kind == "limit" else None,
            tif,  # type: ignore[arg-type]
            post_only,
            intent.client_order_id or "",
        )

    # -- market data ------------------------------------------------------------------------

    def market_url(self, request: httpx.Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"

    def book_request(self, market_url: str, symbol: str) -> httpx.Request:
        params = {"instId": symbol, "sz": str(self.book_depth)}
        return httpx.Request("GET", market_url + f"{_V5}/market/books", params=params)

    def parse_book(self, body: bytes) -> Book | None:
        data = _data(body)
        if not data or not isinstance(data[0], dict):
            return None
        try:
            bids = tuple(Level(Decimal(row[0]), Decimal(row[1])) for row in data[0]["bids"])
            asks = tuple(Level(Decimal(row[0]), Decimal(row[1])) for row in data[0]["asks"])
        except (KeyError, TypeError, IndexError, InvalidOperation):
            return None
        return Book(bids, asks)

    def trades_request(self, market_url: str, symbol: str) -> httpx.Request:
        params = {"instId": symbol, "limit": "500"}
        return httpx.Request("GET", market_url + f"{_V5}/market/trades", params=params)

    def parse_trades(self, body: bytes) -> list[PublicTrade] | None:
        data = _data(body)
        if data is None:
            return None
        try:
            trades = [
                PublicTrade(int(t["tradeId"]), Decimal(t["px"]), Decimal(t["sz"]), int(t["ts"]))
                for t in data
            ]
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return None
        return sorted(trades, key=lambda trade: trade.trade_id)

    def instrument_request(self, market_url: str, symbol: str) -> httpx.Request:
        params = {"instType": "SPOT", "instId": symbol}
        return httpx.Request("GET", market_url + f"{_V5}/public/instruments", params=params)

    def parse_instrument(self, body: bytes, symbol: str) -> Instrument | None:
        for entry in _data(body) or ():
            if not isinstance(entry, dict) or entry.get("instId") != symbol:
                continue
            try:
                step = Decimal(entry.get("lotSz") or "0.00000001")
                return Instrument(
                    symbol,
                    str(entry["baseCcy"]),
                    str(entry["quoteCcy"]),
                    step_size=step if step > 0 else Decimal("0.00000001"),
                    min_qty=Decimal(entry.get("minSz") or "0"),
                )
            except (KeyError, InvalidOperation):
                return None
        return None

    # -- answers ----------------------------------------------------------------------------

    def refused(self, refused: Refused) -> Answer:
        code, message = _ERRORS[refused.reason]
        if refused.reason is Refusal.INVALID and refused.detail:
            message = f"Parameter {refused.detail} error"
        return Answer.json(400, {"code": code, "msg": message, "data": []})

    def placed(self, operation: Place, outcomes: Sequence[Placed], now_ms: int) -> Answer:
        results = []
        for order, outcome in zip(operation.orders, outcomes, strict=True):
            if isinstance(outcome, Refused):
                code, message = _ERRORS[outcome.reason]
                results.append(_result(order.client_order_id, "", code, message, now_ms))
            elif outcome is not None:
                placed = outcome[0]
                results.append(
                    _result(
                        placed.client_order_id, str(placed.order_id), "0", "Order placed", now_ms
                    )
                )
        return _envelope(results, now_ms)

    def cancelled(
        self, operation: Cancel, outcomes: Sequence[Order | Refused], now_ms: int
    ) -> Answer:
        results = []
        for target, outcome in zip(operation.targets, outcomes, strict=True):
            if isinstance(outcome, Refused):
                code, message = _ERRORS[outcome.reason]
                order_id = "" if target.order_id is None else str(target.order_id)
                results.append(
                    _result(target.client_order_id or "", order_id, code, message, now_ms)
                )
            else:
                results.append(
                    _result(outcome.client_order_id, str(outcome.order_id), "0", "", now_ms)
                )
        return _envelope(results, now_ms)

    def cancelled_all(self, operation: CancelAll, orders: Sequence[Order], now_ms: int) -> Answer:
        return _envelope(
            [_result(o.client_order_id, str(o.order_id), "0", "", now_ms) for o in orders], now_ms
        )

    def order(self, order: Order | None, fills: Sequence[Fill]) -> Answer:
        if order is None:
            return Answer.json(200, {"code": "51603", "msg": "Order does not exist", "data": []})
        return _ok([_order(order, fills)])

    def orders(self, orders: Sequence[Order], fills: Sequence[Fill]) -> Answer:
        return _ok([_order(order, fills) for order in reversed(orders)])

    def fills(self, orders: Sequence[Order], fills: Sequence[Fill]) -> Answer:
        client_ids = {order.order_id: order.client_order_id for order in orders}
        return _ok(
            [
                {
                    "instType": "SPOT",
                    "instId": fill.symbol,
                    "tradeId": str(fill.fill_id),
                    "ordId": str(fill.order_id),
                    "clOrdId": client_ids.get(fill.order_id, ""),
                    "billId": str(fill.fill_id),
                    "tag": "",
                    "fillPx": _s(fill.price),
                    "fillSz": _s(fill.qty),
                    "side": fill.side,
                    "posSide": "net",
                    "execType": "M" if fill.is_maker else "T",
                    "feeCcy": fill.fee_asset,
                    "fee": _s(-fill.fee),
                    "ts": str(fill.ms),
                    "fillTime": str(fill.ms),
                }
                for fill in reversed(fills)
            ]
        )

    def balances(self, balances: Sequence[Balance], fees: Fees, now_ms: int) -> Answer:
        details = [
            {
                "ccy": b.asset,
                "eq": _s(b.free + b.locked),
                "cashBal": _s(b.free + b.locked),
                "availBal": _s(b.free),
                "availEq": _s(b.free),
                "frozenBal": _s(b.locked),
                "ordFrozen": _s(b.locked),
                "disEq": "",
                "eqUsd": "",
                "upl": "0",
                "isoEq": "0",
                "stgyEq": "0",
                "uTime": str(now_ms),
            }
            for b in balances
        ]
        return _ok(
            [
                {
                    "adjEq": "",
                    "details": details,
                    "imr": "",
                    "isoEq": "0",
                    "mgnRatio": "",
                    "mmr": "",
                    "notionalUsd": "",
                    "ordFroz": "",
                    "totalEq": "",
                    "uTime": str(now_ms),
                }
            ]
        )


def _ok(data: list[object]) -> Answer:
    return Answer.json(200, {"code": "0", "msg": "", "data": data})


def _result(client_id: str, order_id: str, code: str, message: str, now_ms: int) -> dict[str, str]:
    return {
        "clOrdId": client_id,
        "ordId": order_id,
        "tag": "",
        "ts": str(now_ms),
        "sCode": code,
        "sMsg": message,
    }


def _envelope(results: Sequence[dict[str, str]], now_ms: int) -> Answer:
    failed = sum(1 for result in results if result["sCode"] != "0")
    if failed and failed == len(results):
        code, message = "1", "All operations failed"
    elif failed:
        code, message = "2", "Bulk operation partially succeeded."
    else:
        code, message = "0", ""
    stamp = str(now_ms * 1000)
    return Answer.json(
        200,
        {"code": code, "msg": message, "data": list(results), "inTime": stamp, "outTime": stamp},
    )


def _order(order: Order, fills: Sequence[Fill]) -> dict[str, object]:
    own = [fill for fill in fills if fill.order_id == order.order_id]
    last = own[-1] if own else None
    fee = sum((fill.fee for fill in own), ZERO)
    fee_asset = last.fee_asset if last else (order.base if order.side == "buy" else order.quote)
    if order.type == "market":
        ord_type = "market"
    elif order.post_only:
        ord_type = "post_only"
    else:
        ord_type = {"GTC": "limit", "IOC": "ioc", "FOK": "fok"}[order.time_in_force]
    size = order.quote_quantity if order.quote_quantity is not None else order.quantity
    target = ""
    if order.type == "market":
        target = "quote_ccy" if order.quote_quantity is not None else "base_ccy"
    return {
        "instType": "SPOT",
        "instId": order.symbol,
        "tgtCcy": target,
        "ccy": "",
        "ordId": str(order.order_id),
        "clOrdId": order.client_order_id,
        "tag": "",
        "px": _s(order.price),
        "sz": _s(size or ZERO),
        "pnl": "0",
        "ordType": ord_type,
        "side": order.side,
        "posSide": "net",
        "tdMode": "cash",
        "accFillSz": _s(order.executed_qty),
        "fillPx": _s(last.price) if last else "",
        "tradeId": str(last.fill_id) if last else "",
        "fillSz": _s(last.qty) if last else "0",
        "fillTime": str(last.ms) if last else "",
        "avgPx": _s(order.average_price) if order.executed_qty else "",
        "state": _STATES[order.status],
        "lever": "",
        "feeCcy": fee_asset,
        "fee": _s(-fee),
        "rebateCcy": order.quote if order.side == "buy" else order.base,
        "rebate": "0",
        "source": "",
        "category": "normal",
        "reduceOnly": "false",
        "cancelSource": "1" if order.status == "CANCELED" else "",
        "algoClOrdId": "",
        "algoId": "",
        "uTime": str(order.updated_ms),
        "cTime": str(order.created_ms),
    }


VENUE = OkxVenue()
