"""Bybit API v5 (spot), emulated: the minimum the WebSocket trade stream and its tests need.

    >>> venue = Bybit(keys, EmulatorConfig(), now_ms=clock.now_ms)
    >>> venue.handle(call).body
    {'retCode': 0, 'retMsg': 'OK', 'result': {...}, 'retExtInfo': {}, 'time': ...}

Endpoints: ``GET /v5/market/time``, ``GET /v5/market/instruments-info``
(what ccxt's ``load_markets`` reads; other categories list nothing), ``GET
/v5/market/tickers``, ``POST
/v5/order/create``, ``POST /v5/order/cancel``, ``GET /v5/order/realtime`` and
``GET /v5/user/query-api``. Only the ``spot`` category trades (BTCUSDT,
ETHUSDT); another category is refused with retCode 10001. ``/v5/order/amend``
is catalogued but refused (retCode 10001, "not emulated"): the shared engine
has no amendment. No per-endpoint rate limits are applied.

A private REST request needs ``X-BAPI-API-KEY``, ``X-BAPI-TIMESTAMP``,
``X-BAPI-SIGN`` and optionally ``X-BAPI-RECV-WINDOW`` (default 5000): a known
key allowed from this address (10003, 10010), a timestamp with ``server -
recv_window <= timestamp < server + 1000`` (10002) and the hex HMAC-SHA256 of
``timestamp + api_key + recv_window + (query | body)`` (10004), checked by this
module's own code. Errors answer HTTP 200 with a non-zero ``retCode``, as Bybit
does for these codes. The WebSocket side (bybit_ws.py) carries out its trade ops
through ``handle`` with the key its connection authenticated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from keybroker.emulator.config import EmulatorConfig
from keybroker.emulator.engine import Engine, Order, OrderRequest, Refusal, Refused, Rules
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.market import Market, default_spot_instruments
from keybroker.emulator.wire import Answer, Call

SPOT_RULES = Rules(
    "spot",
    Decimal("0.001"),
    Decimal("0.001"),
    refuse_crossing_post_only=True,
    refuse_unfilled_fok=False,
)
DEFAULT_RECV_WINDOW = 5000
FUTURE_TOLERANCE_MS = 1000
_STATUS = {
    "NEW": "New",
    "PARTIALLY_FILLED": "PartiallyFilled",
    "FILLED": "Filled",
    "CANCELED": "Cancelled",
    "EXPIRED": "Cancelled",
}
# retCodes and messages as ccxt 4.5.90's bybit.py exception table has them.
_REFUSALS: dict[Refusal, tuple[int, str]] = {
    Refusal.UNKNOWN_SYMBOL: (10001, "params error: symbol invalid"),
    Refusal.UNKNOWN_ORDER: (110001, "Order does not exist"),
    Refusal.PRICE_FILTER: (170134, "Order price decimal too long."),
    Refusal.LOT_SIZE: (170136, "Order quantity lower than the minimum."),
    Refusal.NOTIONAL: (170140, "Transaction amount lower than the minimum."),
    Refusal.DUPLICATE_CLIENT_ORDER_ID: (170141, "Duplicate clientOrderId"),
    Refusal.INSUFFICIENT_BALANCE: (170131, "Balance insufficient"),
    Refusal.INSUFFICIENT_MARGIN: (170131, "Balance insufficient"),
    Refusal.WOULD_TAKE: (170218, "The LIMIT-MAKER order is rejected due to invalid price."),
    Refusal.FOK_UNFILLED: (170213, "Order does not exist."),
    Refusal.REDUCE_ONLY: (110017, "Reduce-only rule not satisfied"),
}


class BybitError(Exception):
    """A refusal: ``{"retCode": code, "retMsg": msg}`` (HTTP 200, as Bybit answers these)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class Request:
    call: Call
    params: dict[str, str]
    key: ApiKey | None = None
    orders: list[Order] = field(default_factory=list)

    @property
    def account(self) -> str:
        assert self.key is not None
        return self.key.api_key

    def arg(self, name: str) -> str:
        return self.params.get(name, "")

    def required(self, name: str) -> str:
        value = self.arg(name)
        if not value:
            raise BybitError(10001, f"params error: {name} is required")
        return value


Handler = Callable[["Bybit", Request], object]


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    private: bool = False
    kind: str = "public"


class Bybit:
    """The emulated Bybit: keys, spot books, wallets; ``handle`` answers one request."""

    def __init__(
        self, keys: Sequence[ApiKey], config: EmulatorConfig, now_ms: Callable[[], int]
    ) -> None:
        self.keys = {key.api_key: key for key in keys}
        self.config = config
        self.now_ms = now_ms
        self.engine = Engine(
            {"spot": (SPOT_RULES, default_spot_instruments("binance"))},
            seed=config.seed,
            balances={key.api_key: key.balances for key in keys if key.balances is not None},
            now_ms=now_ms(),
        )

    def classify(self, call: Call) -> tuple[bool, bool]:
        endpoint = ENDPOINTS.get((call.method, call.path))
        if endpoint is None:
            return False, False
        return endpoint.private, endpoint.kind == "order"

    def server_error(self) -> Answer:
        return Answer(503, {"retCode": 10016, "retMsg": "Internal server error."}, code="10016")

    def handle(self, call: Call, verified_key: ApiKey | None = None) -> Answer:
        """Answer ``call``; ``verified_key`` is the key a WebSocket connection authenticated
        (bybit_ws.py), whose trade ops carry no per-request signature."""
        endpoint = ENDPOINTS.get((call.method, call.path))
        answer = Answer(
            200,
            None,
            kind=endpoint.kind if endpoint else "public",
            api_key=call.headers.get("x-bapi-api-key")
            or (verified_key.api_key if verified_key else None),
        )
        request = Request(call, {})
        try:
            if endpoint is None:
                raise BybitError(10001, "path not emulated")
            request.params = self._params(call)
            answer.params = dict(request.params)
            if endpoint.private:
                request.key = verified_key or self._authenticate(call)
                if endpoint.kind in ("order", "cancel") and not request.key.can_trade:
                    raise BybitError(10005, "Permission denied, please check your API key.")
            result = endpoint.handler(self, request)
            answer.body = _envelope(0, "OK", result, call.now_ms)
            answer.accepted = True
        except BybitError as error:
            answer.code = str(error.code)
            answer.body = _envelope(error.code, error.msg, {}, call.now_ms)
        answer.orders = [order.snapshot() for order in request.orders]
        return answer

    @staticmethod
    def _params(call: Call) -> dict[str, str]:
        if call.method == "GET":
            return dict(parse_qsl(call.query.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            body = json.loads(call.body or b"{}")
        except ValueError:
            raise BybitError(10001, "params error: the body is not JSON") from None
        if not isinstance(body, dict):
            raise BybitError(10001, "params error: the body is not a JSON object")
        return {str(k): "" if v is None else str(v) for k, v in body.items()}

    def _authenticate(self, call: Call) -> ApiKey:
        h = call.headers
        key = self.keys.get(h.get("x-bapi-api-key", ""))
        if key is None:
            raise BybitError(10003, "API key is invalid.")
        if not key.allows_address(call.client):
            raise BybitError(10010, "Unmatched IP, please check your API key's bound IP addresses.")
        stamp, window = h.get("x-bapi-timestamp", ""), h.get("x-bapi-recv-window", "5000")
        if not stamp.isdigit() or not window.isdigit():
            raise BybitError(10002, "invalid request, please check your timestamp")
        if not call.now_ms - int(window) <= int(stamp) < call.now_ms + FUTURE_TOLERANCE_MS:
            raise BybitError(10002, "invalid request, please check your server timestamp")
        payload = call.query if call.method == "GET" else call.body
        message = (stamp + key.api_key + window).encode() + payload
        expected = hmac.new(key.secret.reveal(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, h.get("x-bapi-sign", "").lower()):
            raise BybitError(10004, "error sign!")
        return key

    # --- helpers --------------------------------------------------------------------------

    def market(self, request: Request) -> Market:
        if request.required("category") != "spot":
            raise BybitError(10001, "params error: only the spot category is emulated")
        try:
            return self.engine.market("spot", request.required("symbol"))
        except Refused:
            raise BybitError(10001, "params error: symbol invalid") from None

    # --- public ---------------------------------------------------------------------------

    def time(self, request: Request) -> object:
        now = request.call.now_ms
        return {"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}

    def instruments(self, request: Request) -> object:
        category = request.required("category")
        if category != "spot":
            return {"category": category, "list": [], "nextPageCursor": ""}
        wanted = request.arg("symbol")
        return {
            "category": "spot",
            "list": [
                instrument(m)
                for m in self.engine.markets["spot"].values()
                if not wanted or m.instrument.symbol == wanted
            ],
            "nextPageCursor": "",
        }

    def tickers(self, request: Request) -> object:
        return {"category": "spot", "list": [ticker(self.market(request))]}

    # --- private --------------------------------------------------------------------------

    def query_api(self, request: Request) -> object:
        key = request.key
        assert key is not None
        wallet = ["AccountTransfer"] + (["Withdraw"] if key.can_withdraw else [])
        return {
            "readOnly": 0 if key.can_trade else 1,
            "permissions": {"Spot": ["SpotTrade"] if key.can_trade else [], "Wallet": wallet},
            "ips": ["127.0.0.1"] if key.ip_restricted else ["*"],
        }

    def create(self, request: Request) -> object:
        market = self.market(request)
        side = {"Buy": "BUY", "Sell": "SELL"}.get(request.required("side"))
        order_type = {"Limit": "LIMIT", "Market": "MARKET"}.get(request.required("orderType"))
        if side is None or order_type is None:
            raise BybitError(10001, "params error: side or orderType invalid")
        tif = request.arg("timeInForce") or ("GTC" if order_type == "LIMIT" else "IOC")
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise BybitError(10001, "params error: timeInForce invalid")
        price = _amount(request.arg("price")) if order_type == "LIMIT" else None
        if order_type == "LIMIT" and price is None:
            raise BybitError(10001, "params error: price is required")
        qty = _amount(request.required("qty"))
        quote = order_type == "MARKET" and side == "BUY" and request.arg("marketUnit") != "baseCoin"
        order_request = OrderRequest(
            symbol=market.instrument.symbol,
            side=side,  # type: ignore[arg-type]
            type=order_type,  # type: ignore[arg-type]
            time_in_force="GTC" if tif == "PostOnly" else tif,  # type: ignore[arg-type]
            quantity=None if quote else qty,
            quote_quantity=qty if quote else None,
            price=price,
            client_order_id=request.arg("orderLinkId"),
            post_only=tif == "PostOnly",
        )
        try:
            order = self.engine.place(request.account, "spot", order_request, request.call.now_ms)
        except Refused as refused:
            raise BybitError(*_REFUSALS[refused.reason]) from None
        request.orders.append(order)
        return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}

    def cancel(self, request: Request) -> object:
        market = self.market(request)
        order_id, link_id = request.arg("orderId"), request.arg("orderLinkId")
        if not order_id and not link_id:
            raise BybitError(10001, "params error: orderId or orderLinkId is required")
        try:
            order = self.engine.cancel(
                request.account,
                "spot",
                market.instrument.symbol,
                request.call.now_ms,
                order_id=int(order_id) if order_id.isdigit() else None,
                client_order_id=link_id or None,
            )
        except Refused as refused:
            raise BybitError(*_REFUSALS[refused.reason]) from None
        return {"orderId": str(order.order_id), "orderLinkId": order.client_order_id}

    def amend(self, request: Request) -> object:
        raise BybitError(10001, "params error: order amendment is not emulated")

    def realtime(self, request: Request) -> object:
        if request.required("category") != "spot":
            return {"category": request.arg("category"), "list": [], "nextPageCursor": ""}
        symbol = request.arg("symbol") or None
        order_id, link_id = request.arg("orderId"), request.arg("orderLinkId")
        if order_id or link_id:
            found = self.engine.find(
                request.account,
                "spot",
                symbol,
                order_id=int(order_id) if order_id.isdigit() else None,
                client_order_id=link_id or None,
            )
            orders = [found] if found is not None and found.is_open else []
        else:
            orders = self.engine.open_orders(request.account, "spot", symbol)
        return {"category": "spot", "list": [order_json(o) for o in orders], "nextPageCursor": ""}


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/v5/market/time"): Endpoint(Bybit.time),
    ("GET", "/v5/market/instruments-info"): Endpoint(Bybit.instruments),
    ("GET", "/v5/market/tickers"): Endpoint(Bybit.tickers),
    ("GET", "/v5/user/query-api"): Endpoint(Bybit.query_api, private=True, kind="private"),
    ("GET", "/v5/order/realtime"): Endpoint(Bybit.realtime, private=True, kind="private"),
    ("POST", "/v5/order/create"): Endpoint(Bybit.create, private=True, kind="order"),
    ("POST", "/v5/order/amend"): Endpoint(Bybit.amend, private=True, kind="order"),
    ("POST", "/v5/order/cancel"): Endpoint(Bybit.cancel, private=True, kind="cancel"),
}


def _envelope(code: int, msg: str, result: object, now_ms: int) -> dict[str, object]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BybitError(10001, "params error: not a number") from None
    if not value.is_finite() or value <= 0:
        raise BybitError(10001, "params error: not a positive number")
    return value


def _s(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def instrument(market: Market) -> dict[str, object]:
    """A spot instrument as /v5/market/instruments-info lists it."""
    spec = market.instrument
    return {
        "symbol": spec.symbol,
        "baseCoin": spec.base,
        "quoteCoin": spec.quote,
        "innovation": "0",
        "status": "Trading",
        "marginTrading": "none",
        "lotSizeFilter": {
            "basePrecision": _s(spec.step_size),
            "quotePrecision": "0.00000001",
            "minOrderQty": _s(spec.min_qty),
            "maxOrderQty": "1000",
            "minOrderAmt": _s(spec.min_notional),
            "maxOrderAmt": "10000000",
        },
        "priceFilter": {"tickSize": _s(spec.tick_size)},
    }


def ticker(market: Market) -> dict[str, object]:
    """A spot ticker as /v5/market/tickers and the ``tickers`` topic carry it."""
    bids, asks = market.book(1)
    return {
        "symbol": market.instrument.symbol,
        "lastPrice": _s(market.mid),
        "bid1Price": _s(bids[0].price) if bids else "",
        "bid1Size": _s(bids[0].qty) if bids else "",
        "ask1Price": _s(asks[0].price) if asks else "",
        "ask1Size": _s(asks[0].qty) if asks else "",
    }


def order_json(order: Order) -> dict[str, Any]:
    """An order as /v5/order/realtime and the ``order`` topic carry it."""
    r = order.request
    leaves = order.remaining if order.is_open else Decimal(0)
    return {
        "category": "spot",
        "orderId": str(order.order_id),
        "orderLinkId": r.client_order_id,
        "symbol": r.symbol,
        "side": "Buy" if r.side == "BUY" else "Sell",
        "orderType": "Limit" if r.type == "LIMIT" else "Market",
        "price": _s(r.price) or "0",
        "qty": _s(r.quantity if r.quantity is not None else r.quote_quantity),
        "timeInForce": "PostOnly" if r.post_only else r.time_in_force,
        "orderStatus": _STATUS[order.status],
        "cumExecQty": _s(order.executed_qty) or "0",
        "cumExecValue": _s(order.cumulative_quote) or "0",
        "avgPrice": _s(order.average_price) or "0",
        "leavesQty": _s(leaves) or "0",
        "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
    }
