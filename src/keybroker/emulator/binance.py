"""Binance spot (``/api/v3``), SAPI (``/sapi/v1``) and USDⓈ-M futures (``/fapi``), emulated.

    >>> venue = Binance(keys, EmulatorConfig(), now_ms=clock.now_ms)
    >>> venue.handle(call).status

One venue serves all three path families on one host (the real exchange uses
``api.binance.com`` and ``fapi.binance.com``); spot and USDⓈ-M keep separate
books, wallets, weight counters and order counters.

Every request is first charged its weight (per IP, per family) — over the
limit answers 429, a client that keeps going 418 — then, for signed
endpoints: ``X-MBX-APIKEY`` must name a known key allowed from this address
(401 -2014/-2015), ``signature`` and ``timestamp`` must be present (400
-1102), the signature must verify over the raw query + body bytes (400 -1022)
and the timestamp must satisfy ``timestamp < server + 1000`` and
``server - timestamp <= recvWindow`` (400 -1021; recvWindow defaults to 5000,
at most 60000). Only then does the endpoint run.

Withdrawals (``POST /sapi/v1/capital/withdraw/apply``) are journaled and
answered, never executed: no balance moves.

What ccxt 4.5.90 calls, all served (so ccxt needs no special options, only its
``urls['api']`` pointed here): ``load_markets`` → ``GET /api/v3/exchangeInfo``,
``/fapi/v1/exchangeInfo``, ``/dapi/v1/exchangeInfo`` (COIN-M: answered with no
symbols), ``/sapi/v1/capital/config/getall`` and ``/sapi/v1/margin/allPairs``
(plus ``/sapi/v1/margin/isolated/allPairs``; margin is not emulated, so no
pairs). ``fetch_balance`` → ``/api/v3/account`` or ``/fapi/v3/account``; orders
→ ``POST|GET|DELETE /api/v3/order`` and ``/fapi/v1/order``; open orders →
``/api/v3/openOrders``, ``/fapi/v1/openOrders``; data → ``ticker/24hr``,
``depth``, ``klines`` under ``/api/v3`` and ``/fapi/v1``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Literal
from urllib.parse import parse_qsl

from keybroker.emulator import binance_payloads as payloads
from keybroker.emulator.config import EmulatorConfig
from keybroker.emulator.engine import (
    Engine,
    Order,
    OrderRequest,
    Refusal,
    Refused,
    Rules,
    TimeInForce,
)
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.market import (
    Instrument,
    Market,
    default_spot_instruments,
    default_usdm_instruments,
)
from keybroker.emulator.ratelimit import OrderCounter, WeightLimiter
from keybroker.emulator.signatures import binance_payload, binance_signature_matches
from keybroker.emulator.wire import Answer, Call

SPOT_RULES = Rules(
    "spot",
    Decimal("0.001"),
    Decimal("0.001"),
    refuse_crossing_post_only=True,
    refuse_unfilled_fok=False,
)
USDM_RULES = Rules(
    "linear",
    Decimal("0.0002"),
    Decimal("0.0005"),
    refuse_crossing_post_only=True,
    refuse_unfilled_fok=True,
)

Product = Literal["spot", "usdm"]
INTERVALS_MS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
    "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
    "3d": 259_200_000, "1w": 604_800_000, "1M": 2_592_000_000,
}  # fmt: skip
MAX_RECV_WINDOW = 60_000
LISTEN_KEY_TTL_MS = 60 * 60 * 1000
BAD_KEY = "Invalid API-key, IP, or permissions for action."


class BinanceError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def _missing(name: str) -> BinanceError:
    return BinanceError(
        400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


@dataclass
class Request:
    """What a handler sees: merged parameters (query wins over body) and the verified key."""

    call: Call
    params: dict[str, str]
    product: Product
    key: ApiKey | None = None
    orders: list[Order] = field(default_factory=list)
    withdrawal: dict[str, object] | None = None

    @property
    def account(self) -> str:
        assert self.key is not None
        return self.key.api_key

    def text(self, name: str) -> str:
        value = self.params.get(name, "")
        if not value:
            raise _missing(name)
        return value

    def decimal(self, name: str) -> Decimal | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite() or number < 0:
            raise BinanceError(
                400,
                -1100,
                f"Illegal characters found in parameter '{name}'; legal range is "
                "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )
        return number

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        if not value.lstrip("-").isdigit():
            raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.")
        return int(value)


Handler = Callable[["Binance", Request], object]
Weight = int | Callable[[Mapping[str, str]], int]


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    weight: Weight
    product: Product = "spot"
    signed: bool = False
    kind: str = "public"  # public, user_stream, private, order, cancel, withdraw


class Binance:
    """The emulated Binance: keys, books, wallets, limits; ``handle`` answers one request."""

    def __init__(
        self, keys: Sequence[ApiKey], config: EmulatorConfig, now_ms: Callable[[], int]
    ) -> None:
        self.keys = {key.api_key: key for key in keys}
        self.config = config
        self.now_ms = now_ms
        self.engine = Engine(
            {
                "spot": (SPOT_RULES, default_spot_instruments("binance")),
                "usdm": (USDM_RULES, default_usdm_instruments()),
            },
            seed=config.seed,
            balances={key.api_key: key.balances for key in keys if key.balances is not None},
            now_ms=now_ms(),
        )
        self.weights = {
            product: WeightLimiter(config.weight_limit, ban_after=config.ban_after)
            for product in ("spot", "usdm")
        }
        self.order_counts = {
            "spot": OrderCounter(
                {
                    "10S": (10_000, config.spot_orders_per_10s),
                    "1D": (86_400_000, config.spot_orders_per_day),
                }
            ),
            "usdm": OrderCounter(
                {
                    "10S": (10_000, config.usdm_orders_per_10s),
                    "1M": (60_000, config.usdm_orders_per_minute),
                }
            ),
        }
        self._client_ids = 0
        self.listen_keys: dict[str, tuple[str, int]] = {}  # listen key -> (api key, expiry ms)

    # --- the request's way through -------------------------------------------------------------

    def classify(self, call: Call) -> tuple[bool, bool]:
        endpoint = ENDPOINTS.get((call.method, call.path))
        if endpoint is None:
            return False, False
        return endpoint.signed, endpoint.kind == "order"

    def server_error(self) -> Answer:
        body = {
            "code": -1001,
            "msg": "Internal error; unable to process your request. Please try again.",
        }
        return Answer(503, body, code="-1001")

    def handle(self, call: Call, verified_key: ApiKey | None = None) -> Answer:
        """Answer ``call``; ``verified_key`` is given by the WebSocket API, which checked the
        signature under its own rule (binance_ws.py) before handing the request here."""
        params = self._params(call)
        shown = {name: value for name, value in params.items() if name != "signature"}
        endpoint = ENDPOINTS.get((call.method, call.path))
        if endpoint is None:
            return Answer(
                404,
                {"code": -1000, "msg": "Unknown endpoint (not emulated)."},
                code="-1000",
                params=dict(shown),
            )
        weight = endpoint.weight if isinstance(endpoint.weight, int) else endpoint.weight(params)
        verdict = self.weights[endpoint.product].charge(call.client, weight, call.now_ms)
        headers = {"X-MBX-USED-WEIGHT-1M": str(verdict.used)}
        answer = Answer(
            200,
            None,
            headers,
            kind=endpoint.kind,
            params=dict(shown),
            api_key=call.headers.get("x-mbx-apikey"),
        )
        request = Request(call, params, endpoint.product)
        try:
            if verdict.status == "banned":
                headers["Retry-After"] = str(verdict.retry_after_s)
                raise BinanceError(
                    418,
                    -1003,
                    f"Way too much request weight used; IP banned "
                    f"until {verdict.ban_until_ms}. Please use WebSocket Streams "
                    "for live updates to avoid bans.",
                )
            if verdict.status == "limited":
                headers["Retry-After"] = str(verdict.retry_after_s)
                raise BinanceError(
                    429,
                    -1003,
                    "Too much request weight used; current limit is "
                    f"{self.weights[endpoint.product].limit} request weight per 1 "
                    "MINUTE. Please use WebSocket Streams for live updates to "
                    "avoid polling the API.",
                )
            if endpoint.signed:
                request.key = verified_key or self._authenticate(call, params)
            elif endpoint.kind == "user_stream":
                request.key = self._api_key_only(call)
            if endpoint.kind == "order":
                if request.key is not None and not request.key.can_trade:
                    raise BinanceError(401, -2015, BAD_KEY)  # what a read-only key gets
                self._count_order(request, headers)
            answer.body = endpoint.handler(self, request)
            answer.accepted = True
        except BinanceError as error:
            answer.status, answer.code = error.status, str(error.code)
            answer.body = {"code": error.code, "msg": error.msg}
        answer.orders = [order.snapshot() for order in request.orders]
        answer.withdrawal = request.withdrawal
        return answer

    @staticmethod
    def _params(call: Call) -> dict[str, str]:
        merged = dict(parse_qsl(call.body.decode("utf-8", "replace"), keep_blank_values=True))
        merged.update(parse_qsl(call.query.decode("utf-8", "replace"), keep_blank_values=True))
        return merged

    def _authenticate(self, call: Call, params: Mapping[str, str]) -> ApiKey:
        api_key = call.headers.get("x-mbx-apikey", "")
        if not api_key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        key = self.keys.get(api_key)
        if key is None or not key.allows_address(call.client):
            raise BinanceError(401, -2015, BAD_KEY)
        payload, signature = binance_payload(call.query, call.body)
        if not signature:
            raise _missing("signature")
        if not params.get("timestamp"):
            raise _missing("timestamp")
        timestamp, recv_window = self._timing(params)
        if not binance_signature_matches(key, payload, signature):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        if timestamp >= call.now_ms + 1000:
            raise BinanceError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if call.now_ms - timestamp > recv_window:
            raise BinanceError(
                400, -1021, "Timestamp for this request is outside of the recvWindow."
            )
        return key

    def _api_key_only(self, call: Call) -> ApiKey:
        """USER_STREAM security: the API key header, no signature."""
        key = self.keys.get(call.headers.get("x-mbx-apikey", ""))
        if key is None or not key.allows_address(call.client):
            raise BinanceError(401, -2015, BAD_KEY)
        return key

    @staticmethod
    def _timing(params: Mapping[str, str]) -> tuple[Decimal, Decimal]:
        raw = params["timestamp"]
        if not raw.isdigit():
            raise _missing("timestamp")
        timestamp = Decimal(raw)
        if len(raw) >= 16:  # microseconds, which spot accepts
            timestamp /= 1000
        try:
            recv_window = Decimal(params.get("recvWindow") or "5000")
        except InvalidOperation:
            recv_window = Decimal(-1)
        if not recv_window.is_finite() or recv_window <= 0:
            raise _missing("recvWindow")
        if recv_window > MAX_RECV_WINDOW:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        return timestamp, recv_window

    def _count_order(self, request: Request, headers: dict[str, str]) -> None:
        counter = self.order_counts[request.product]
        full = counter.exceeded(request.account, request.call.now_ms)
        if full is not None:
            window, limit = full
            unit = {"10S": "10 SECOND", "1D": "1 DAY", "1M": "1 MINUTE"}[window]
            raise BinanceError(
                429, -1015, f"Too many new orders; current limit is {limit} orders per {unit}."
            )
        counter.add(request.account, request.call.now_ms)
        for window, count in counter.counts(request.account, request.call.now_ms).items():
            headers[f"X-MBX-ORDER-COUNT-{window}"] = str(count)

    # --- shared pieces --------------------------------------------------------------------

    def _market(self, request: Request) -> Market:
        try:
            return self.engine.market(request.product, request.text("symbol"))
        except Refused as refused:
            raise BinanceError(400, -1121, "Invalid symbol.") from refused

    def _refusal(self, refused: Refused, product: Product) -> BinanceError:
        usdm = product == "usdm"
        reason = refused.reason
        table: dict[Refusal, tuple[int, str]] = {
            Refusal.UNKNOWN_SYMBOL: (-1121, "Invalid symbol."),
            Refusal.PRICE_FILTER: (-1013, "Filter failure: PRICE_FILTER"),
            Refusal.LOT_SIZE: (-1013, "Filter failure: LOT_SIZE"),
            Refusal.NOTIONAL: (-4164, "Order's notional must be no smaller than 5 (unless you "
                               "choose reduce only).") if usdm else
                              (-1013, "Filter failure: NOTIONAL"),
            Refusal.DUPLICATE_CLIENT_ORDER_ID: (-4116, "ClientOrderId is duplicated.") if usdm
                              else (-2010, "Duplicate order sent."),
            Refusal.INSUFFICIENT_BALANCE: (-2010, "Account has insufficient balance for "
                                           "requested action."),
            Refusal.INSUFFICIENT_MARGIN: (-2019, "Margin is insufficient."),
            Refusal.WOULD_TAKE: (-5022, "Due to the order could not be executed as maker, the "
                                 "Post Only order will be rejected. The order will not be "
                                 "recorded in the order history") if usdm else
                                (-2010, "Order would immediately match and take."),
            Refusal.FOK_UNFILLED: (-5021, "Due to the order could not be filled immediately, "
                                   "the FOK order has been rejected. The order will not be "
                                   "recorded in the order history"),
            Refusal.REDUCE_ONLY: (-2022, "ReduceOnly Order is rejected."),
            Refusal.UNKNOWN_ORDER: (-2011, "Unknown order sent."),
        }  # fmt: skip
        code, msg = table[reason]
        return BinanceError(400, code, msg)

    def _order_request(self, request: Request) -> OrderRequest:
        p = request.params
        symbol, side, kind = request.text("symbol"), request.text("side"), request.text("type")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        usdm = request.product == "usdm"
        known = ("LIMIT", "MARKET") if usdm else ("LIMIT", "MARKET", "LIMIT_MAKER")
        if kind not in known:
            unsupported = (
                "STOP_LOSS",
                "STOP_LOSS_LIMIT",
                "TAKE_PROFIT",
                "TAKE_PROFIT_LIMIT",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            )
            if kind in unsupported:
                raise BinanceError(400, -1014, "Unsupported order combination.")
            raise BinanceError(400, -1116, "Invalid orderType.")
        quantity, quote_quantity = request.decimal("quantity"), request.decimal("quoteOrderQty")
        price = request.decimal("price")
        time_in_force = p.get("timeInForce", "")
        post_only = kind == "LIMIT_MAKER" or (usdm and time_in_force == "GTX")
        if kind == "MARKET":
            if usdm and quantity is None:
                raise _missing("quantity")
            if quantity is None and quote_quantity is None:
                raise BinanceError(
                    400,
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )
            if quantity is not None and quote_quantity is not None:
                raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
            time_in_force = "GTC"
        else:
            if kind == "LIMIT" and not time_in_force:
                raise _missing("timeInForce")
            if quantity is None:
                raise _missing("quantity")
            if price is None:
                raise _missing("price")
            if quote_quantity is not None:
                raise BinanceError(400, -1106, "Parameter 'quoteOrderQty' sent when not required.")
            time_in_force = time_in_force or "GTC"
            if time_in_force == "GTX" and usdm:
                time_in_force = "GTC"
            if time_in_force not in ("GTC", "IOC", "FOK"):
                raise BinanceError(400, -1115, "Invalid timeInForce.")
        client_order_id = p.get("newClientOrderId") or self._next_client_id()
        tif: TimeInForce = time_in_force  # type: ignore[assignment]  # checked above
        return OrderRequest(
            symbol=symbol,
            side=side,  # type: ignore[arg-type]  # checked above
            type="MARKET" if kind == "MARKET" else "LIMIT",
            time_in_force=tif,
            quantity=quantity,
            quote_quantity=quote_quantity,
            price=price if kind != "MARKET" else None,
            client_order_id=client_order_id,
            post_only=post_only,
            reduce_only=usdm and p.get("reduceOnly", "").lower() == "true",
        )

    def _next_client_id(self) -> str:
        self._client_ids += 1
        digest = hashlib.sha256(f"{self.config.seed}:{self._client_ids}".encode()).hexdigest()
        return f"emulator{digest[:22]}"

    def _find(self, request: Request) -> Order:
        order_id = request.integer("orderId")
        client_id = request.params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise BinanceError(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        market = self._market(request)
        order = self.engine.find(
            request.account,
            request.product,
            market.instrument.symbol,
            order_id=order_id,
            client_order_id=client_id,
        )
        if order is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return order

    def _order_body(self, request: Request, order: Order) -> dict[str, object]:
        if request.product == "usdm":
            instrument = self.engine.markets["usdm"][order.symbol].instrument
            return payloads.usdm_order(order, instrument)
        return payloads.spot_order_status(order)

    # --- public market data ---------------------------------------------------------------

    def ping(self, request: Request) -> object:
        return {}

    def time(self, request: Request) -> object:
        return {"serverTime": request.call.now_ms}

    def exchange_info(self, request: Request) -> object:
        c, now = self.config, request.call.now_ms
        if request.product == "usdm":
            instruments = [m.instrument for m in self.engine.markets["usdm"].values()]
            return payloads.usdm_exchange_info(
                instruments, c.weight_limit, c.usdm_orders_per_10s, c.usdm_orders_per_minute, now
            )
        instruments = [m.instrument for m in self.engine.markets["spot"].values()]
        wanted = request.params.get("symbol")
        if wanted:
            instruments = [i for i in instruments if i.symbol == wanted]
            if not instruments:
                raise BinanceError(400, -1121, "Invalid symbol.")
        return payloads.spot_exchange_info(
            instruments, c.weight_limit, c.spot_orders_per_10s, c.spot_orders_per_day, now
        )

    def coin_m_exchange_info(self, request: Request) -> object:
        # COIN-M is not emulated; ccxt's default load_markets asks for it, so answer "no symbols".
        return {
            "timezone": "UTC",
            "serverTime": request.call.now_ms,
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": [],
        }

    def depth(self, request: Request) -> object:
        market = self._market(request)
        default = 500 if request.product == "usdm" else 100
        limit = request.integer("limit", default) or default
        if not 1 <= limit <= 5000:
            raise BinanceError(400, -1100, "Illegal characters found in parameter 'limit'.")
        return payloads.depth(market, limit, request.call.now_ms, request.product == "usdm")

    def trades(self, request: Request) -> object:
        market = self._market(request)
        limit = min(1000, request.integer("limit", 500) or 500)
        return payloads.public_trades(market, limit, request.product == "usdm")

    def klines(self, request: Request) -> object:
        market = self._market(request)
        interval = request.text("interval")
        if interval not in INTERVALS_MS:
            raise BinanceError(400, -1120, "Invalid interval.")
        most = 1500 if request.product == "usdm" else 1000
        limit = min(most, request.integer("limit", 500) or 500)
        candles = market.candles(
            INTERVALS_MS[interval],
            request.call.now_ms,
            limit=limit,
            start_ms=request.integer("startTime"),
            end_ms=request.integer("endTime"),
        )
        return payloads.klines(candles, INTERVALS_MS[interval], request.product == "usdm")

    def ticker_24h(self, request: Request) -> object:
        usdm, now = request.product == "usdm", request.call.now_ms
        if not request.params.get("symbol"):
            return [
                payloads.ticker_24h(m, m.candles(3_600_000, now, limit=24), now, usdm)
                for m in self.engine.markets[request.product].values()
            ]
        market = self._market(request)
        return payloads.ticker_24h(market, market.candles(3_600_000, now, limit=24), now, usdm)

    def ticker_price(self, request: Request) -> object:
        usdm = request.product == "usdm"
        fmt = str if usdm else payloads.d8
        markets = (
            [self._market(request)]
            if request.params.get("symbol")
            else list(self.engine.markets[request.product].values())
        )
        rows = [
            {
                "symbol": m.instrument.symbol,
                "price": fmt(m.mid),
                **({"time": request.call.now_ms} if usdm else {}),
            }
            for m in markets
        ]
        return rows[0] if request.params.get("symbol") else rows

    def book_ticker(self, request: Request) -> object:
        usdm, now = request.product == "usdm", request.call.now_ms
        if request.params.get("symbol"):
            return payloads.book_ticker(self._market(request), now, usdm)
        return [
            payloads.book_ticker(m, now, usdm)
            for m in self.engine.markets[request.product].values()
        ]

    def premium_index(self, request: Request) -> object:
        now = request.call.now_ms
        markets = (
            [self._market(request)]
            if request.params.get("symbol")
            else list(self.engine.markets["usdm"].values())
        )
        rows = [
            {
                "symbol": m.instrument.symbol,
                "markPrice": str(m.mid),
                "indexPrice": str(m.mid),
                "estimatedSettlePrice": str(m.mid),
                "lastFundingRate": "0.00010000",
                "interestRate": "0.00010000",
                "nextFundingTime": now - now % 28_800_000 + 28_800_000,
                "time": now,
            }
            for m in markets
        ]
        return rows[0] if request.params.get("symbol") else rows

    # --- trading --------------------------------------------------------------------------

    def new_order(self, request: Request) -> object:
        order_request = self._order_request(request)
        self._market(request)
        try:
            order = self.engine.place(
                request.account, request.product, order_request, request.call.now_ms
            )
        except Refused as refused:
            raise self._refusal(refused, request.product) from refused
        request.orders.append(order)
        if request.product == "usdm":
            return self._order_body(request, order)
        default = (
            "FULL"
            if order_request.type in ("MARKET", "LIMIT") and not (order_request.post_only)
            else "ACK"
        )
        response_type = request.params.get("newOrderRespType") or default
        if response_type not in ("ACK", "RESULT", "FULL"):
            raise BinanceError(
                400, -1100, "Illegal characters found in parameter 'newOrderRespType'."
            )
        return payloads.spot_order(order, response_type)

    def query_order(self, request: Request) -> object:
        return self._order_body(request, self._find(request))

    def cancel_order(self, request: Request) -> object:
        try:
            order = self._find(request)
        except BinanceError as error:
            if error.code != -2013:
                raise
            raise BinanceError(400, -2011, "Unknown order sent.") from error
        try:
            self.engine.cancel(
                request.account,
                request.product,
                order.symbol,
                request.call.now_ms,
                order_id=order.order_id,
            )
        except Refused as refused:
            raise self._refusal(refused, request.product) from refused
        if request.product == "usdm":
            return self._order_body(request, order)
        cancel_id = request.params.get("newClientOrderId") or self._next_client_id()
        return payloads.spot_cancel(order, cancel_id)

    def cancel_all(self, request: Request) -> object:
        market = self._market(request)
        symbol = market.instrument.symbol
        cancelled = []
        for order in self.engine.open_orders(request.account, request.product, symbol):
            self.engine.cancel(
                request.account,
                request.product,
                symbol,
                request.call.now_ms,
                order_id=order.order_id,
            )
            cancelled.append(order)
        if request.product == "usdm":
            return {"code": 200, "msg": "The operation of cancel all open order is done."}
        if not cancelled:
            raise BinanceError(400, -2011, "Unknown order sent.")
        return [payloads.spot_cancel(o, self._next_client_id()) for o in cancelled]

    def open_orders(self, request: Request) -> object:
        symbol = request.params.get("symbol") or None
        if symbol is not None:
            self._market(request)
        orders = self.engine.open_orders(request.account, request.product, symbol)
        return [self._order_body(request, o) for o in orders]

    def all_orders(self, request: Request) -> object:
        market = self._market(request)
        limit = min(1000, request.integer("limit", 500) or 500)
        orders = [
            o
            for o in self.engine.orders
            if o.account == request.account
            and o.product == request.product
            and o.symbol == market.instrument.symbol
        ]
        return [self._order_body(request, o) for o in orders[-limit:]]

    def my_trades(self, request: Request) -> object:
        market = self._market(request)
        orders = [
            o
            for o in self.engine.orders
            if o.account == request.account
            and o.product == request.product
            and o.symbol == market.instrument.symbol
        ]
        return payloads.my_trades(orders, request.product == "usdm")

    # --- accounts -------------------------------------------------------------------------

    def spot_account(self, request: Request) -> object:
        assert request.key is not None
        return payloads.spot_account(
            self.engine.account(request.account), request.key, request.call.now_ms
        )

    def usdm_account_v2(self, request: Request) -> object:
        return payloads.usdm_account(self.engine, request.account, request.call.now_ms, 2)

    def usdm_account_v3(self, request: Request) -> object:
        return payloads.usdm_account(self.engine, request.account, request.call.now_ms, 3)

    def usdm_balance(self, request: Request) -> object:
        return payloads.usdm_balance(self.engine, request.account, request.call.now_ms)

    def position_risk(self, request: Request) -> object:
        rows = payloads.position_risk(self.engine, request.account)
        symbol = request.params.get("symbol")
        return [row for row in rows if not symbol or row["symbol"] == symbol]

    def api_restrictions(self, request: Request) -> object:
        assert request.key is not None
        return payloads.api_restrictions(request.key)

    def coins(self, request: Request) -> object:
        assets = sorted(
            {i.base for i in self._instruments()} | {i.quote for i in self._instruments()}
        )
        return payloads.coins(self.engine.account(request.account), assets)

    def no_margin_pairs(self, request: Request) -> object:
        # Margin is not emulated; ccxt's load_markets asks for the pairs, so answer "none".
        return []

    def _instruments(self) -> list[Instrument]:
        return [m.instrument for m in self.engine.markets["spot"].values()]

    # --- user data streams ------------------------------------------------------------------

    def new_listen_key(self, request: Request) -> object:
        """POST /api/v3/userDataStream: the key's listen key (the same one while it is valid)."""
        now, owner = request.call.now_ms, request.account
        for key, (account, _) in self.listen_keys.items():
            if account == owner:
                self.listen_keys[key] = (owner, now + LISTEN_KEY_TTL_MS)
                return {"listenKey": key}
        key = secrets.token_hex(32)
        self.listen_keys[key] = (owner, now + LISTEN_KEY_TTL_MS)
        return {"listenKey": key}

    def keep_listen_key(self, request: Request) -> object:
        """PUT /api/v3/userDataStream: another 60 minutes."""
        key = request.text("listenKey")
        entry = self.listen_keys.get(key)
        if entry is None or entry[0] != request.account:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        self.listen_keys[key] = (entry[0], request.call.now_ms + LISTEN_KEY_TTL_MS)
        return {}

    def close_listen_key(self, request: Request) -> object:
        key = request.text("listenKey")
        if self.listen_keys.get(key, ("", 0))[0] != request.account:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        del self.listen_keys[key]
        return {}

    def listen_key_owner(self, key: str, now_ms: int) -> str | None:
        entry = self.listen_keys.get(key)
        return None if entry is None or entry[1] < now_ms else entry[0]

    def withdraw(self, request: Request) -> object:
        assert request.key is not None
        attempt: dict[str, object] = {
            name: request.params.get(name)
            for name in ("coin", "network", "address", "addressTag", "amount", "withdrawOrderId")
            if request.params.get(name)
        }
        attempt["executed"] = False
        request.withdrawal = attempt
        request.text("coin")
        request.text("address")
        request.text("amount")
        if not request.key.can_withdraw:
            raise BinanceError(401, -2015, BAD_KEY)
        digest = hashlib.sha256(f"{request.call.now_ms}:{sorted(attempt.items())}".encode())
        return {"id": digest.hexdigest()[:32]}


def _depth_weight(params: Mapping[str, str]) -> int:
    limit = int(params["limit"]) if params.get("limit", "").isdigit() else 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _usdm_depth_weight(params: Mapping[str, str]) -> int:
    limit = int(params["limit"]) if params.get("limit", "").isdigit() else 500
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _usdm_klines_weight(params: Mapping[str, str]) -> int:
    limit = int(params["limit"]) if params.get("limit", "").isdigit() else 500
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _by_symbol(one: int, every: int) -> Callable[[Mapping[str, str]], int]:
    return lambda params: one if params.get("symbol") else every


B = Binance
# (method, path) -> handler, weight (per Binance's docs), product, signed, kind.
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/v3/ping"): Endpoint(B.ping, 1),
    ("GET", "/api/v3/time"): Endpoint(B.time, 1),
    ("GET", "/api/v3/exchangeInfo"): Endpoint(B.exchange_info, 20),
    ("GET", "/api/v3/depth"): Endpoint(B.depth, _depth_weight),
    ("GET", "/api/v3/trades"): Endpoint(B.trades, 25),
    ("GET", "/api/v3/klines"): Endpoint(B.klines, 2),
    ("GET", "/api/v3/ticker/24hr"): Endpoint(B.ticker_24h, _by_symbol(2, 80)),
    ("GET", "/api/v3/ticker/price"): Endpoint(B.ticker_price, _by_symbol(2, 4)),
    ("GET", "/api/v3/ticker/bookTicker"): Endpoint(B.book_ticker, _by_symbol(2, 4)),
    ("POST", "/api/v3/userDataStream"): Endpoint(B.new_listen_key, 2, kind="user_stream"),
    ("PUT", "/api/v3/userDataStream"): Endpoint(B.keep_listen_key, 2, kind="user_stream"),
    ("DELETE", "/api/v3/userDataStream"): Endpoint(B.close_listen_key, 2, kind="user_stream"),
    ("POST", "/api/v3/order"): Endpoint(B.new_order, 1, signed=True, kind="order"),
    ("DELETE", "/api/v3/order"): Endpoint(B.cancel_order, 1, signed=True, kind="cancel"),
    ("GET", "/api/v3/order"): Endpoint(B.query_order, 4, signed=True, kind="private"),
    ("DELETE", "/api/v3/openOrders"): Endpoint(B.cancel_all, 1, signed=True, kind="cancel"),
    ("GET", "/api/v3/openOrders"): Endpoint(
        B.open_orders, _by_symbol(6, 80), signed=True, kind="private"
    ),
    ("GET", "/api/v3/allOrders"): Endpoint(B.all_orders, 20, signed=True, kind="private"),
    ("GET", "/api/v3/myTrades"): Endpoint(B.my_trades, 20, signed=True, kind="private"),
    ("GET", "/api/v3/account"): Endpoint(B.spot_account, 20, signed=True, kind="private"),
    ("GET", "/sapi/v1/account/apiRestrictions"): Endpoint(
        B.api_restrictions, 1, signed=True, kind="private"
    ),
    ("GET", "/sapi/v1/capital/config/getall"): Endpoint(B.coins, 10, signed=True, kind="private"),
    ("GET", "/sapi/v1/margin/allPairs"): Endpoint(
        B.no_margin_pairs, 1, signed=True, kind="private"
    ),
    ("GET", "/sapi/v1/margin/isolated/allPairs"): Endpoint(
        B.no_margin_pairs, 10, signed=True, kind="private"
    ),
    ("POST", "/sapi/v1/capital/withdraw/apply"): Endpoint(
        B.withdraw, 1, signed=True, kind="withdraw"
    ),
    ("GET", "/dapi/v1/exchangeInfo"): Endpoint(B.coin_m_exchange_info, 1, "usdm"),
    ("GET", "/fapi/v1/ping"): Endpoint(B.ping, 1, "usdm"),
    ("GET", "/fapi/v1/time"): Endpoint(B.time, 1, "usdm"),
    ("GET", "/fapi/v1/exchangeInfo"): Endpoint(B.exchange_info, 1, "usdm"),
    ("GET", "/fapi/v1/depth"): Endpoint(B.depth, _usdm_depth_weight, "usdm"),
    ("GET", "/fapi/v1/trades"): Endpoint(B.trades, 5, "usdm"),
    ("GET", "/fapi/v1/klines"): Endpoint(B.klines, _usdm_klines_weight, "usdm"),
    ("GET", "/fapi/v1/ticker/24hr"): Endpoint(B.ticker_24h, _by_symbol(1, 40), "usdm"),
    ("GET", "/fapi/v1/ticker/price"): Endpoint(B.ticker_price, _by_symbol(1, 2), "usdm"),
    ("GET", "/fapi/v1/ticker/bookTicker"): Endpoint(B.book_ticker, _by_symbol(2, 5), "usdm"),
    ("GET", "/fapi/v1/premiumIndex"): Endpoint(B.premium_index, 1, "usdm"),
    ("POST", "/fapi/v1/order"): Endpoint(B.new_order, 0, "usdm", True, "order"),
    ("DELETE", "/fapi/v1/order"): Endpoint(B.cancel_order, 1, "usdm", True, "cancel"),
    ("GET", "/fapi/v1/order"): Endpoint(B.query_order, 1, "usdm", True, "private"),
    ("DELETE", "/fapi/v1/allOpenOrders"): Endpoint(B.cancel_all, 1, "usdm", True, "cancel"),
    ("GET", "/fapi/v1/openOrders"): Endpoint(
        B.open_orders, _by_symbol(1, 40), "usdm", True, "private"
    ),
    ("GET", "/fapi/v1/allOrders"): Endpoint(B.all_orders, 5, "usdm", True, "private"),
    ("GET", "/fapi/v1/userTrades"): Endpoint(B.my_trades, 5, "usdm", True, "private"),
    ("GET", "/fapi/v2/account"): Endpoint(B.usdm_account_v2, 5, "usdm", True, "private"),
    ("GET", "/fapi/v3/account"): Endpoint(B.usdm_account_v3, 5, "usdm", True, "private"),
    ("GET", "/fapi/v2/balance"): Endpoint(B.usdm_balance, 5, "usdm", True, "private"),
    ("GET", "/fapi/v3/balance"): Endpoint(B.usdm_balance, 5, "usdm", True, "private"),
    ("GET", "/fapi/v2/positionRisk"): Endpoint(B.position_risk, 5, "usdm", True, "private"),
    ("GET", "/fapi/v3/positionRisk"): Endpoint(B.position_risk, 5, "usdm", True, "private"),
}
