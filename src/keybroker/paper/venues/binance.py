"""Binance spot (``/api/v3``) for the paper venue: its requests read, its answers written.

    >>> VENUE.operation(request, classified, intents)
    Place(orders=(NewOrder(symbol='BTCUSDT', side='buy', type='market', ...),), ...)

Orders come from ``exchanges.binance.parse_order`` (the intents the policy
judged); the other parameters (timeInForce, newOrderRespType, orderId,
origClientOrderId) from ``exchanges.binance.request_params``, which refuses a
parameter given twice as the profile does. Answers follow Binance's shapes:
decimals with eight places, ``FULL`` order answers with their ``fills``, the
error codes of the spot API (-2010 insufficient balance, -2011 unknown order
on cancel, -2013 on query). Futures (``/fapi``) and order lists are not
simulated: they are refused, never forwarded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from keybroker.exchanges import binance as profile
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
    Side,
    TimeInForce,
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

# Base tier (VIP 0) spot: 0.1 % maker and taker, before any BNB discount.
FEES = Fees(maker=Decimal("0.001"), taker=Decimal("0.001"))
_BALANCE_PATHS = frozenset({"/api/v3/account"})
_ERRORS: dict[Refusal, tuple[int, str]] = {
    Refusal.UNKNOWN_SYMBOL: (-1121, "Invalid symbol."),
    Refusal.INVALID: (-1102, "Mandatory parameter was not sent, was empty/null, or malformed."),
    Refusal.LOT_SIZE: (-1013, "Filter failure: LOT_SIZE"),
    Refusal.NOTIONAL: (-1013, "Filter failure: NOTIONAL"),
    Refusal.INSUFFICIENT_BALANCE: (-2010, "Account has insufficient balance for requested action."),
    Refusal.WOULD_TAKE: (-2010, "Order would immediately match and take."),
    Refusal.DUPLICATE_CLIENT_ORDER_ID: (-2010, "Duplicate order sent."),
    Refusal.UNKNOWN_ORDER: (-2011, "Unknown order sent."),
}


def _d8(value: Decimal | None) -> str:
    return decimal_text(value if value is not None else ZERO, 8)


def _int(params: dict[str, str], name: str) -> int | None:
    value = params.get(name, "")
    if not value:
        return None
    if not value.isdigit():
        raise Refused(Refusal.INVALID, name)
    return int(value)


def _limit(params: dict[str, str], default: int, most: int) -> int:
    value = params.get("limit", "")
    return min(most, int(value)) if value.isdigit() and int(value) > 0 else default


class BinanceVenue:
    """The paper venue's Binance spot adapter."""

    exchange = "binance"
    fees = FEES
    book_depth = 100

    # -- reading the bot's request ----------------------------------------------------------

    def answers(self, classified: ClassifiedRequest) -> bool:
        if classified.kind == "public":
            return False
        if classified.kind == "account_read":
            path = (classified.pattern or classified.path).lower()
            return classified.method == "GET" and path in _BALANCE_PATHS
        return True

    def operation(
        self,
        request: httpx.Request,
        classified: ClassifiedRequest,
        intents: Sequence[OrderIntent],
    ) -> Operation:
        path = (classified.pattern or classified.path).lower()
        method = classified.method
        if not path.startswith("/api/v3/"):
            return Unsupported("paper trading on Binance covers spot (/api/v3) only")
        params = profile.request_params(request)
        if (method, path) in (("POST", "/api/v3/order"), ("POST", "/api/v3/order/test")):
            orders = tuple(self._new_order(intent, params) for intent in intents)
            default = "FULL" if orders and orders[0].type in ("market", "limit") else "ACK"
            return Place(
                orders,
                test=path.endswith("/test"),
                response_type=(params.get("newOrderRespType") or default).upper(),
            )
        symbol = params.get("symbol") or None
        target = Target(symbol, _int(params, "orderId"), params.get("origClientOrderId") or None)
        if (method, path) == ("DELETE", "/api/v3/order"):
            if symbol is None or (target.order_id is None and target.client_order_id is None):
                raise Refused(Refusal.INVALID, "symbol, orderId or origClientOrderId")
            return Cancel((target,), new_client_order_id=params.get("newClientOrderId") or None)
        if (method, path) == ("DELETE", "/api/v3/openorders"):
            if symbol is None:
                raise Refused(Refusal.INVALID, "symbol")
            return CancelAll(symbol)
        if (method, path) == ("GET", "/api/v3/order"):
            if symbol is None or (target.order_id is None and target.client_order_id is None):
                raise Refused(Refusal.INVALID, "symbol, orderId or origClientOrderId")
            return QueryOrder(target)
        if (method, path) == ("GET", "/api/v3/openorders"):
            return ListOrders(symbol, "open", 1000)
        if (method, path) == ("GET", "/api/v3/allorders"):
            if symbol is None:
                raise Refused(Refusal.INVALID, "symbol")
            return ListOrders(symbol, "all", _limit(params, 500, 1000))
        if (method, path) == ("GET", "/api/v3/mytrades"):
            if symbol is None:
                raise Refused(Refusal.INVALID, "symbol")
            return ListFills(symbol, _limit(params, 500, 1000))
        if method == "GET" and path in _BALANCE_PATHS:
            return Balances()
        return Unsupported(
            f"{method} {classified.pattern or path} is not simulated by paper trading"
        )

    def _new_order(self, intent: OrderIntent, params: dict[str, str]) -> NewOrder:
        if intent.side not in ("buy", "sell"):
            raise Refused(Refusal.INVALID, "side")
        side: Side = "buy" if intent.side == "buy" else "sell"
        kind = (intent.type or "").upper()
        tif_text = (params.get("timeInForce") or "GTC").upper()
        if tif_text not in ("GTC", "IOC", "FOK"):
            raise Refused(Refusal.INVALID, "timeInForce")
        tif: TimeInForce = tif_text  # type: ignore[assignment]
        if kind == "MARKET":
            if (intent.quantity is None) == (intent.quote_quantity is None):
                raise Refused(Refusal.INVALID, "quantity or quoteOrderQty")
            return NewOrder(
                intent.symbol,
                side,
                "market",
                intent.quantity,
                intent.quote_quantity,
                None,
                "IOC",
                False,
                intent.client_order_id or "",
            )
        if kind in ("LIMIT", "LIMIT_MAKER"):
            if intent.quantity is None or intent.price is None:
                raise Refused(Refusal.INVALID, "quantity and price")
            if intent.quantity <= 0 or intent.price <= 0:
                raise Refused(Refusal.INVALID, "quantity and price")
            return NewOrder(
                intent.symbol,
                side,
                "limit",
                intent.quantity,
                None,
                intent.price,
                "GTC" if kind == "LIMIT_MAKER" else tif,
                kind == "LIMIT_MAKER",
                intent.client_order_id or "",
            )
        raise Refused(Refusal.INVALID, f"type {kind or '(none)'} is not simulated")

    # -- market data ------------------------------------------------------------------------

    def market_url(self, request: httpx.Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"

    def book_request(self, market_url: str, symbol: str) -> httpx.Request:
        params = {"symbol": symbol, "limit": str(self.book_depth)}
        return httpx.Request("GET", market_url + "/api/v3/depth", params=params)

    def parse_book(self, body: bytes) -> Book | None:
        payload = _json(body)
        if not isinstance(payload, dict):
            return None
        try:
            bids = tuple(Level(Decimal(p), Decimal(q)) for p, q, *_ in payload["bids"])
            asks = tuple(Level(Decimal(p), Decimal(q)) for p, q, *_ in payload["asks"])
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return None
        return Book(bids, asks)

    def trades_request(self, market_url: str, symbol: str) -> httpx.Request:
        params = {"symbol": symbol, "limit": "500"}
        return httpx.Request("GET", market_url + "/api/v3/trades", params=params)

    def parse_trades(self, body: bytes) -> list[PublicTrade] | None:
        payload = _json(body)
        if not isinstance(payload, list):
            return None
        try:
            trades = [
                PublicTrade(int(t["id"]), Decimal(t["price"]), Decimal(t["qty"]), int(t["time"]))
                for t in payload
            ]
        except (KeyError, TypeError, ValueError, InvalidOperation):
            return None
        return sorted(trades, key=lambda trade: trade.trade_id)

    def instrument_request(self, market_url: str, symbol: str) -> httpx.Request:
        return httpx.Request("GET", market_url + "/api/v3/exchangeInfo", params={"symbol": symbol})

    def parse_instrument(self, body: bytes, symbol: str) -> Instrument | None:
        payload = _json(body)
        if not isinstance(payload, dict):
            return None
        for entry in payload.get("symbols") or ():
            if not isinstance(entry, dict) or entry.get("symbol") != symbol:
                continue
            filters = {f.get("filterType"): f for f in entry.get("filters") or ()}
            lot = filters.get("LOT_SIZE") or {}
            notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
            try:
                step = Decimal(lot.get("stepSize") or "0.00000001")
                return Instrument(
                    symbol,
                    str(entry["baseAsset"]),
                    str(entry["quoteAsset"]),
                    step_size=step if step > 0 else Decimal("0.00000001"),
                    min_qty=Decimal(lot.get("minQty") or "0"),
                    min_notional=Decimal(notional.get("minNotional") or "0"),
                )
            except (KeyError, InvalidOperation):
                return None
        return None

    # -- answers ----------------------------------------------------------------------------

    def refused(self, refused: Refused) -> Answer:
        code, message = _ERRORS[refused.reason]
        return Answer.json(400, {"code": code, "msg": message})

    def placed(self, operation: Place, outcomes: Sequence[Placed], now_ms: int) -> Answer:
        (outcome,) = outcomes
        if isinstance(outcome, Refused):
            return self.refused(outcome)
        if outcome is None or operation.test:
            return Answer.json(200, {})
        order, fills = outcome
        return Answer.json(200, _order_answer(order, fills, operation.response_type))

    def cancelled(
        self, operation: Cancel, outcomes: Sequence[Order | Refused], now_ms: int
    ) -> Answer:
        (outcome,) = outcomes
        if isinstance(outcome, Refused):
            return self.refused(outcome)
        return Answer.json(200, _cancel_answer(outcome, operation.new_client_order_id))

    def cancelled_all(self, operation: CancelAll, orders: Sequence[Order], now_ms: int) -> Answer:
        if not orders:
            return self.refused(Refused(Refusal.UNKNOWN_ORDER))
        return Answer.json(200, [_cancel_answer(order, None) for order in orders])

    def order(self, order: Order | None, fills: Sequence[Fill]) -> Answer:
        if order is None:
            return Answer.json(400, {"code": -2013, "msg": "Order does not exist."})
        return Answer.json(200, _status(order))

    def orders(self, orders: Sequence[Order], fills: Sequence[Fill]) -> Answer:
        return Answer.json(200, [_status(order) for order in orders])

    def fills(self, orders: Sequence[Order], fills: Sequence[Fill]) -> Answer:
        rows = []
        for fill in fills:
            rows.append(
                {
                    "symbol": fill.symbol,
                    "id": fill.fill_id,
                    "orderId": fill.order_id,
                    "orderListId": -1,
                    "price": _d8(fill.price),
                    "qty": _d8(fill.qty),
                    "quoteQty": _d8(fill.price * fill.qty),
                    "commission": _d8(fill.fee),
                    "commissionAsset": fill.fee_asset,
                    "time": fill.ms,
                    "isBuyer": fill.side == "buy",
                    "isMaker": fill.is_maker,
                    "isBestMatch": True,
                }
            )
        return Answer.json(200, rows)

    def balances(self, balances: Sequence[Balance], fees: Fees, now_ms: int) -> Answer:
        return Answer.json(
            200,
            {
                "makerCommission": int(fees.maker * 10_000),
                "takerCommission": int(fees.taker * 10_000),
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": _d8(fees.maker),
                    "taker": _d8(fees.taker),
                    "buyer": _d8(ZERO),
                    "seller": _d8(ZERO),
                },
                "canTrade": True,
                "canWithdraw": False,
                "canDeposit": False,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": now_ms,
                "accountType": "SPOT",
                "balances": [
                    {"asset": b.asset, "free": _d8(b.free), "locked": _d8(b.locked)}
                    for b in balances
                ],
                "permissions": ["SPOT"],
                "uid": 0,
            },
        )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _type(order: Order) -> str:
    if order.type == "market":
        return "MARKET"
    return "LIMIT_MAKER" if order.post_only else "LIMIT"


def _status(order: Order) -> dict[str, object]:
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "price": _d8(order.price),
        "origQty": _d8(order.quantity if order.quantity is not None else order.executed_qty),
        "executedQty": _d8(order.executed_qty),
        "cummulativeQuoteQty": _d8(order.cumulative_quote),
        "status": order.status,
        "timeInForce": order.time_in_force,
        "type": _type(order),
        "side": order.side.upper(),
        "stopPrice": _d8(ZERO),
        "icebergQty": _d8(ZERO),
        "time": order.created_ms,
        "updateTime": order.updated_ms,
        "isWorking": True,
        "workingTime": order.created_ms,
        "origQuoteOrderQty": _d8(order.quote_quantity),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def _order_answer(order: Order, fills: Sequence[Fill], response_type: str) -> dict[str, object]:
    body: dict[str, object] = {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
        "transactTime": order.created_ms,
    }
    if response_type == "ACK":
        return body
    status = _status(order)
    for name in (
        "price",
        "origQty",
        "executedQty",
        "origQuoteOrderQty",
        "cummulativeQuoteQty",
        "status",
        "timeInForce",
        "type",
        "side",
        "workingTime",
        "selfTradePreventionMode",
    ):
        body[name] = status[name]
    if response_type == "FULL":
        body["fills"] = [
            {
                "price": _d8(fill.price),
                "qty": _d8(fill.qty),
                "commission": _d8(fill.fee),
                "commissionAsset": fill.fee_asset,
                "tradeId": fill.fill_id,
            }
            for fill in fills
        ]
    return body


def _cancel_answer(order: Order, cancel_id: str | None) -> dict[str, object]:
    body = _order_answer(order, (), "RESULT")
    body["origClientOrderId"] = order.client_order_id
    body["clientOrderId"] = cancel_id or f"paper-cancel-{order.order_id}"
    return body


VENUE = BinanceVenue()
