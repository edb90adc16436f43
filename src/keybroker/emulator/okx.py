"""OKX API v5 (spot), emulated: its authentication, per-endpoint limits, trading and data.

    >>> venue = Okx(keys, EmulatorConfig(), now_ms=clock.now_ms)
    >>> venue.handle(call).body
    {'code': '0', 'msg': '', 'data': [...]}

A private request needs ``OK-ACCESS-KEY``, ``OK-ACCESS-SIGN``,
``OK-ACCESS-TIMESTAMP`` and ``OK-ACCESS-PASSPHRASE`` (each missing one: 50103,
50106, 50107, 50104), a known key allowed from this address (50111, 50110),
an ISO-8601 millisecond timestamp (50112) within 30 s of the server (50102),
the environment header matching the emulator (demo by default: the request
must carry ``x-simulated-trading: 1``, else 50101), the right passphrase
(50105) and ``base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath +
body))`` over the bytes received (50113). Authentication failures answer
HTTP 401; over-limit answers 429 with 50011; business refusals answer 200
with a non-zero ``code`` (and per-order ``sCode``), as OKX does.

Only SPOT instruments are emulated; other ``instType`` values list nothing.
Withdrawals (``POST /api/v5/asset/withdrawal``) are journaled, never executed.

What ccxt 4.5.90 calls (after ``set_sandbox_mode(True)``, which adds the demo
header and skips the private ``/asset/currencies``; then ``urls['api'] =
{'rest': base_url}``): ``load_markets`` → ``GET /api/v5/public/instruments``
for SPOT, FUTURES, SWAP and OPTION (twice, per underlying); ``create_order`` →
``POST /api/v5/trade/batch-orders`` (a one-order batch, ccxt's default);
``cancel_order`` → ``POST /trade/cancel-order``; ``fetch_order`` → ``GET
/trade/order``; ``fetch_open_orders`` → ``GET /trade/orders-pending``;
``fetch_balance`` → ``GET /account/balance``; ``fetch_ticker`` → ``/market/ticker``;
``fetch_order_book`` → ``/market/books``; ``fetch_ohlcv`` → ``/market/candles``
(``/market/history-candles`` for old ``since``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal
from urllib.parse import parse_qsl

from keybroker.emulator import okx_payloads as payloads
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
from keybroker.emulator.market import Market, default_spot_instruments
from keybroker.emulator.ratelimit import SlidingWindow
from keybroker.emulator.signatures import okx_signature_matches
from keybroker.emulator.wire import Answer, Call

SPOT_RULES = Rules(
    "spot",
    Decimal("0.0008"),
    Decimal("0.001"),
    refuse_crossing_post_only=False,
    refuse_unfilled_fok=False,
)
WINDOW_MS = 30_000
BARS_MS = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1H": 3_600_000, "2H": 7_200_000, "4H": 14_400_000,
    "6H": 21_600_000, "12H": 43_200_000, "1D": 86_400_000, "2D": 172_800_000,
    "3D": 259_200_000, "1W": 604_800_000, "1M": 2_592_000_000,
}  # fmt: skip
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
ORDER_TYPES = {"market", "limit", "post_only", "fok", "ioc"}
_TIME_IN_FORCE: dict[str, TimeInForce] = {"ioc": "IOC", "fok": "FOK"}


class OkxError(Exception):
    """A whole-request failure: ``{"code": code, "msg": msg, "data": []}`` with this status."""

    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class OrderFailed(Exception):
    """An order (or a whole placement) failed; ``results`` are the per-order ``sCode``s."""

    def __init__(self, code: str, msg: str, results: list[dict[str, object]] | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.results = code, msg, results or []


def _empty(name: str) -> OkxError:
    return OkxError(400, "50014", f"Parameter {name} can not be empty.")


def _bad(name: str) -> OkxError:
    return OkxError(400, "51000", f"Parameter {name} error")


@dataclass
class Request:
    call: Call
    query: dict[str, str]
    body: object
    key: ApiKey | None = None
    orders: list[Order] = field(default_factory=list)
    withdrawal: dict[str, object] | None = None

    @property
    def account(self) -> str:
        assert self.key is not None
        return self.key.api_key

    def arg(self, name: str) -> str:
        """A query parameter (GET) or top-level body field (POST), "" when absent."""
        if self.call.method == "GET":
            return self.query.get(name, "")
        value = self.body.get(name, "") if isinstance(self.body, dict) else ""
        return str(value) if value is not None else ""

    def required(self, name: str) -> str:
        value = self.arg(name)
        if not value:
            raise _empty(name)
        return value


Handler = Callable[["Okx", Request], list[object]]
Limit = Literal["ip", "user", "instrument"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    handler: Handler
    per_2s: int
    limit_by: Limit = "ip"
    private: bool = False
    kind: str = "public"


class Okx:
    """The emulated OKX: keys, books, wallets, limits; ``handle`` answers one request."""

    def __init__(
        self, keys: Sequence[ApiKey], config: EmulatorConfig, now_ms: Callable[[], int]
    ) -> None:
        self.keys = {key.api_key: key for key in keys}
        self.config = config
        self.now_ms = now_ms
        self.engine = Engine(
            {"spot": (SPOT_RULES, default_spot_instruments("okx"))},
            seed=config.seed,
            balances={key.api_key: key.balances for key in keys if key.balances is not None},
            now_ms=now_ms(),
        )
        self.windows = SlidingWindow(2_000)

    def classify(self, call: Call) -> tuple[bool, bool]:
        endpoint = ENDPOINTS.get((call.method, call.path))
        if endpoint is None:
            return False, False
        return endpoint.private, endpoint.kind == "order"

    def server_error(self) -> Answer:
        body = {
            "code": "50001",
            "msg": "Service temporarily unavailable. Please try again later.",
            "data": [],
        }
        return Answer(503, body, code="50001")

    def handle(self, call: Call, verified_key: ApiKey | None = None) -> Answer:
        """Answer ``call``; ``verified_key`` is the key a WebSocket connection logged in
        with (okx_ws.py), whose ops carry no per-request signature."""
        query = dict(parse_qsl(call.query.decode("utf-8", "replace"), keep_blank_values=True))
        endpoint = ENDPOINTS.get((call.method, call.path))
        answer = Answer(
            200,
            None,
            kind=endpoint.kind if endpoint else "public",
            params=dict(query),
            api_key=call.headers.get("ok-access-key")
            or (verified_key.api_key if verified_key else None),
        )
        request = Request(call, query, None)
        try:
            if endpoint is None:
                raise OkxError(404, "404", "Not Found (not emulated)")
            request.body = self._body(call)
            if isinstance(request.body, dict):
                answer.params.update(request.body)
            elif isinstance(request.body, list):
                answer.params["batch"] = request.body
            if endpoint.private:
                request.key = verified_key or self._authenticate(call)
                if endpoint.kind == "order" and not request.key.can_trade:
                    raise OkxError(401, "50120", "API key doesn't have permission to trade.")
            self._limit(endpoint, request)
            data = endpoint.handler(self, request)
            answer.body = {"code": "0", "msg": "", "data": data}
            answer.accepted = True
        except OkxError as error:
            answer.status, answer.code = error.status, error.code
            answer.body = {"code": error.code, "msg": error.msg, "data": []}
        except OrderFailed as failed:
            answer.code = failed.code
            answer.body = {"code": failed.code, "msg": failed.msg, "data": failed.results}
        if request.orders and isinstance(answer.body, dict):
            answer.body.setdefault("inTime", str(call.now_ms * 1000))
            answer.body.setdefault("outTime", str(call.now_ms * 1000))
        answer.orders = [order.snapshot() for order in request.orders]
        answer.withdrawal = request.withdrawal
        if isinstance(answer.body, dict) and answer.body.get("code") in ("1", "2"):
            answer.code = str(answer.body["code"])
            answer.accepted = answer.body["code"] == "2"
        return answer

    @staticmethod
    def _body(call: Call) -> object:
        if call.method != "POST":
            return None
        if not call.body.strip():
            raise OkxError(400, "50000", "Body for POST request cannot be empty.")
        try:
            return json.loads(call.body)
        except ValueError as exc:
            raise OkxError(400, "50002", "Json data format error") from exc

    def _authenticate(self, call: Call) -> ApiKey:
        h = call.headers
        for header, code in (
            ("ok-access-key", "50103"),
            ("ok-access-sign", "50106"),
            ("ok-access-timestamp", "50107"),
            ("ok-access-passphrase", "50104"),
        ):
            if not h.get(header):
                name = header.upper()
                raise OkxError(401, code, f'Request header "{name}" cannot be empty.')
        key = self.keys.get(h["ok-access-key"])
        if key is None:
            raise OkxError(401, "50111", "Invalid OK-ACCESS-KEY.")
        if not key.allows_address(call.client):
            raise OkxError(
                401,
                "50110",
                f"Your IP {call.client} is not included in your API key's IP whitelist.",
            )
        timestamp = h["ok-access-timestamp"]
        sent_ms = _parse_timestamp(timestamp)
        if abs(call.now_ms - sent_ms) > WINDOW_MS:
            raise OkxError(401, "50102", "Timestamp request expired.")
        if (h.get("x-simulated-trading") == "1") != self.config.okx_demo:
            raise OkxError(401, "50101", "APIKey does not match current environment.")
        assert key.passphrase is not None
        if h["ok-access-passphrase"].encode() != key.passphrase.reveal():
            raise OkxError(401, "50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
        path = call.path + ("?" + call.query.decode("utf-8", "replace") if call.query else "")
        prehash = (timestamp + call.method + path).encode() + call.body
        if not okx_signature_matches(key, prehash, h["ok-access-sign"]):
            raise OkxError(401, "50113", "Invalid Sign")
        return key

    def _limit(self, endpoint: Endpoint, request: Request) -> None:
        call = request.call
        who = request.account if endpoint.private else call.client
        keys: list[tuple[str, ...]] = []
        if endpoint.limit_by == "instrument":
            orders = request.body if isinstance(request.body, list) else [request.body]
            instruments = {str(o.get("instId", "")) for o in orders if isinstance(o, dict)}
            keys = [(call.path, who, instrument) for instrument in sorted(instruments)]
        keys = keys or [(call.path, who)]
        if not all(self.windows.allow(key, endpoint.per_2s, call.now_ms) for key in keys):
            raise OkxError(
                429,
                "50011",
                "Rate limit reached. Please refer to API documentation "
                "and throttle requests accordingly.",
            )

    # --- helpers --------------------------------------------------------------------------

    def _market(self, inst_id: str) -> Market:
        try:
            return self.engine.market("spot", inst_id)
        except Refused as refused:
            raise OkxError(200, "51001", "Instrument ID does not exist") from refused

    def _order(self, request: Request) -> Order:
        inst_id = request.required("instId")
        self._market(inst_id)
        order_id, client_id = request.arg("ordId"), request.arg("clOrdId")
        if not order_id and not client_id:
            raise _empty("ordId")
        order = self.engine.find(
            request.account,
            "spot",
            inst_id,
            order_id=int(order_id) if order_id.isdigit() else None,
            client_order_id=client_id or None,
        )
        if order is None or (order_id and not order_id.isdigit()):
            raise OkxError(200, "51603", "Order does not exist")
        return order

    def _json(self, order: Order) -> dict[str, object]:
        return payloads.okx_order(order, self.engine.markets["spot"][order.symbol].instrument)

    # --- public ---------------------------------------------------------------------------

    def time(self, request: Request) -> list[object]:
        return [{"ts": str(request.call.now_ms)}]

    def instruments(self, request: Request) -> list[object]:
        inst_type = request.required("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise _bad("instType")
        if inst_type != "SPOT":
            return []
        wanted = request.arg("instId")
        return [
            payloads.instrument(m.instrument)
            for m in self.engine.markets["spot"].values()
            if not wanted or m.instrument.symbol == wanted
        ]

    def ticker(self, request: Request) -> list[object]:
        market, now = self._market(request.required("instId")), request.call.now_ms
        return [payloads.ticker(market, market.candles(3_600_000, now, limit=24), now)]

    def tickers(self, request: Request) -> list[object]:
        if request.required("instType") != "SPOT":
            return []
        now = request.call.now_ms
        return [
            payloads.ticker(m, m.candles(3_600_000, now, limit=24), now)
            for m in self.engine.markets["spot"].values()
        ]

    def books(self, request: Request) -> list[object]:
        market = self._market(request.required("instId"))
        size = request.arg("sz") or "1"
        if not size.isdigit() or not 1 <= int(size) <= 400:
            raise _bad("sz")
        return [payloads.books(market, int(size), request.call.now_ms)]

    def candles(self, request: Request, most: int = 300) -> list[object]:
        market = self._market(request.required("instId"))
        bar = request.arg("bar") or "1m"
        if bar not in BARS_MS:
            raise _bad("bar")
        limit_text = request.arg("limit") or "100"
        if not limit_text.isdigit():
            raise _bad("limit")
        after, before = request.arg("after"), request.arg("before")
        rows = market.candles(
            BARS_MS[bar],
            request.call.now_ms,
            limit=min(most, int(limit_text)),
            start_ms=int(before) + 1 if before.isdigit() else None,
            end_ms=int(after) - 1 if after.isdigit() else None,
            from_start=False,
        )
        return list(payloads.candles(rows, BARS_MS[bar], request.call.now_ms))

    def history_candles(self, request: Request) -> list[object]:
        return self.candles(request, most=100)

    def trades(self, request: Request) -> list[object]:
        market = self._market(request.required("instId"))
        limit = request.arg("limit") or "100"
        return list(payloads.trades(market, min(500, int(limit) if limit.isdigit() else 100)))

    # --- trading --------------------------------------------------------------------------

    def place_order(self, request: Request) -> list[object]:
        if not isinstance(request.body, dict):
            raise OkxError(400, "50002", "Json data format error")
        result = self._place_one(request, request.body)
        if result["sCode"] != "0":
            raise _all_failed([result])
        return [result]

    def place_batch(self, request: Request) -> list[object]:
        if not isinstance(request.body, list) or not request.body:
            raise OkxError(400, "50002", "Json data format error")
        if len(request.body) > 20:
            raise OkxError(400, "51000", "Parameter orders error")
        results = [self._place_one(request, o) for o in request.body]
        failed = [r for r in results if r["sCode"] != "0"]
        if failed and len(failed) == len(results):
            raise _all_failed(results)
        if failed:
            raise OrderFailed("2", "Bulk operation partially succeeded.", results)
        return list(results)

    def _place_one(self, request: Request, body: object) -> dict[str, object]:
        if not isinstance(body, dict):
            raise OkxError(400, "50002", "Json data format error")
        client_id = str(body.get("clOrdId") or "")
        now = request.call.now_ms
        try:
            order_request = self._order_request(body, client_id)
            self._market(order_request.symbol)
            order = self.engine.place(request.account, "spot", order_request, now)
        except OrderFailed as failed:
            return _order_result(client_id, "", failed.code, failed.msg, now)
        except OkxError as error:
            return _order_result(client_id, "", error.code, error.msg, now)
        except Refused as refused:
            code, msg = _REFUSALS[refused.reason]
            return _order_result(client_id, "", code, msg, now)
        request.orders.append(order)
        return _order_result(client_id, str(order.order_id), "0", "Order placed", now)

    def _order_request(self, body: dict[str, object], client_id: str) -> OrderRequest:
        def text(name: str) -> str:
            value = body.get(name)
            if value is None or value == "":
                raise OrderFailed("50014", f"Parameter {name} can not be empty.")
            return str(value)

        inst_id, td_mode = text("instId"), text("tdMode")
        side, ord_type, size_text = text("side"), text("ordType"), text("sz")
        if td_mode != "cash":
            raise OrderFailed("51000", "Parameter tdMode error")
        if side not in ("buy", "sell"):
            raise OrderFailed("51000", "Parameter side error")
        if ord_type not in ORDER_TYPES:
            raise OrderFailed("51000", "Parameter ordType error")
        if client_id and not _CLIENT_ID.match(client_id):
            raise OrderFailed("51000", "Parameter clOrdId error")
        size = _decimal(size_text, "sz")
        price = None if ord_type == "market" else _decimal(text("px"), "px")
        target = str(body.get("tgtCcy") or "")
        if target not in ("", "base_ccy", "quote_ccy"):
            raise OrderFailed("51000", "Parameter tgtCcy error")
        in_quote = ord_type == "market" and (
            target == "quote_ccy" or (side == "buy" and target != "base_ccy")
        )
        if in_quote and side == "sell":
            raise OrderFailed("51000", "Parameter tgtCcy error")
        return OrderRequest(
            symbol=inst_id,
            side="BUY" if side == "buy" else "SELL",
            type="MARKET" if ord_type == "market" else "LIMIT",
            time_in_force=_TIME_IN_FORCE.get(ord_type, "GTC"),
            quantity=None if in_quote else size,
            quote_quantity=size if in_quote else None,
            price=price,
            client_order_id=client_id,
            post_only=ord_type == "post_only",
        )

    def cancel_order(self, request: Request) -> list[object]:
        now = request.call.now_ms
        try:
            order = self._order(request)
            self.engine.cancel(request.account, "spot", order.symbol, now, order_id=order.order_id)
        except (OkxError, Refused) as error:
            if isinstance(error, OkxError) and error.code != "51603":
                raise
            result = _order_result(
                request.arg("clOrdId"),
                request.arg("ordId"),
                "51400",
                "Order cancellation failed as the order has been filled, "
                "canceled or does not exist.",
                now,
            )
            raise _all_failed([result]) from error
        return [_order_result(order.client_order_id, str(order.order_id), "0", "", now)]

    def get_order(self, request: Request) -> list[object]:
        return [self._json(self._order(request))]

    def pending_orders(self, request: Request) -> list[object]:
        inst_type, inst_id = request.arg("instType"), request.arg("instId")
        if inst_type and inst_type != "SPOT":
            return []
        orders = self.engine.open_orders(request.account, "spot", inst_id or None)
        return list([self._json(o) for o in reversed(orders)][: _limit_arg(request)])

    def order_history(self, request: Request) -> list[object]:
        if request.required("instType") != "SPOT":
            return []
        inst_id = request.arg("instId")
        orders = [
            o
            for o in self.engine.orders
            if o.account == request.account
            and not o.is_open
            and (not inst_id or o.symbol == inst_id)
        ]
        return list([self._json(o) for o in reversed(orders)][: _limit_arg(request)])

    def fills(self, request: Request) -> list[object]:
        inst_id = request.arg("instId")
        orders = [
            o
            for o in self.engine.orders
            if o.account == request.account and (not inst_id or o.symbol == inst_id)
        ]
        rows: list[object] = list(payloads.fills(orders))
        return rows[: _limit_arg(request)]

    # --- account --------------------------------------------------------------------------

    def balance(self, request: Request) -> list[object]:
        wanted = {c for c in request.arg("ccy").split(",") if c}
        wallet = self.engine.account(request.account)
        return [payloads.balance(wallet, request.call.now_ms, wanted or None)]

    def account_config(self, request: Request) -> list[object]:
        assert request.key is not None
        return [payloads.account_config(request.key)]

    def withdrawal(self, request: Request) -> list[object]:
        assert request.key is not None
        body = request.body if isinstance(request.body, dict) else {}
        attempt: dict[str, object] = {
            name: body[name]
            for name in ("ccy", "amt", "dest", "toAddr", "chain", "clientId")
            if name in body
        }
        attempt["executed"] = False
        request.withdrawal = attempt
        for name in ("ccy", "amt", "dest", "toAddr"):
            request.required(name)
        if not request.key.can_withdraw:
            raise OkxError(401, "50120", "API key doesn't have permission to withdraw.")
        digest = hashlib.sha256(f"{request.call.now_ms}:{sorted(attempt.items())}".encode())
        return [
            {
                "amt": attempt["amt"],
                "wdId": str(int(digest.hexdigest()[:12], 16)),
                "ccy": attempt["ccy"],
                "clientId": body.get("clientId", ""),
                "chain": body.get("chain", ""),
            }
        ]


def _all_failed(results: list[dict[str, object]]) -> OrderFailed:
    return OrderFailed("1", "All operations failed", results)


def _order_result(
    client_id: str, order_id: str, code: str, msg: str, now_ms: int
) -> dict[str, object]:
    return {
        "clOrdId": client_id,
        "ordId": order_id,
        "tag": "",
        "ts": str(now_ms),
        "sCode": code,
        "sMsg": msg,
    }


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0:
        raise OrderFailed("51000", f"Parameter {name} error")
    return value


def _limit_arg(request: Request) -> int:
    text = request.arg("limit") or "100"
    return min(100, int(text)) if text.isdigit() else 100


def _parse_timestamp(text: str) -> int:
    if not _TIMESTAMP.match(text):
        raise OkxError(401, "50112", "Invalid OK-ACCESS-TIMESTAMP.")
    moment = datetime.strptime(
        text.replace("Z", "+0000"),
        "%Y-%m-%dT%H:%M:%S.%f%z" if "." in text else "%Y-%m-%dT%H:%M:%S%z",
    )
    return int(moment.astimezone(UTC).timestamp() * 1000)


_REFUSALS: dict[Refusal, tuple[str, str]] = {
    Refusal.UNKNOWN_SYMBOL: ("51001", "Instrument ID does not exist"),
    Refusal.PRICE_FILTER: ("51000", "Parameter px error"),
    Refusal.LOT_SIZE: ("51020", "Your order should meet or exceed the minimum order amount."),
    Refusal.NOTIONAL: ("51020", "Your order should meet or exceed the minimum order amount."),
    Refusal.DUPLICATE_CLIENT_ORDER_ID: ("51016", "Duplicated clOrdId"),
    Refusal.INSUFFICIENT_BALANCE: ("51008", "Order failed. Insufficient balance."),
    Refusal.INSUFFICIENT_MARGIN: ("51008", "Order failed. Insufficient balance."),
    Refusal.WOULD_TAKE: ("51000", "Parameter ordType error"),
    Refusal.FOK_UNFILLED: ("51000", "Parameter ordType error"),
    Refusal.REDUCE_ONLY: ("51000", "Parameter reduceOnly error"),
    Refusal.UNKNOWN_ORDER: (
        "51400",
        "Order cancellation failed as the order has been filled, canceled or does not exist.",
    ),
}

X = Okx
# (method, path) -> handler, requests per 2 s, what the limit counts by, private, kind.
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/api/v5/public/time"): Endpoint(X.time, 10),
    ("GET", "/api/v5/public/instruments"): Endpoint(X.instruments, 20),
    ("GET", "/api/v5/market/ticker"): Endpoint(X.ticker, 20),
    ("GET", "/api/v5/market/tickers"): Endpoint(X.tickers, 20),
    ("GET", "/api/v5/market/books"): Endpoint(X.books, 40),
    ("GET", "/api/v5/market/candles"): Endpoint(X.candles, 40),
    ("GET", "/api/v5/market/history-candles"): Endpoint(X.history_candles, 20),
    ("GET", "/api/v5/market/trades"): Endpoint(X.trades, 100),
    ("GET", "/api/v5/account/balance"): Endpoint(X.balance, 10, "user", True, "private"),
    ("GET", "/api/v5/account/config"): Endpoint(X.account_config, 5, "user", True, "private"),
    ("POST", "/api/v5/trade/order"): Endpoint(X.place_order, 60, "instrument", True, "order"),
    ("POST", "/api/v5/trade/batch-orders"): Endpoint(
        X.place_batch, 300, "instrument", True, "order"
    ),
    ("POST", "/api/v5/trade/cancel-order"): Endpoint(
        X.cancel_order, 60, "instrument", True, "cancel"
    ),
    ("GET", "/api/v5/trade/order"): Endpoint(X.get_order, 60, "user", True, "private"),
    ("GET", "/api/v5/trade/orders-pending"): Endpoint(
        X.pending_orders, 60, "user", True, "private"
    ),
    ("GET", "/api/v5/trade/orders-history"): Endpoint(X.order_history, 40, "user", True, "private"),
    ("GET", "/api/v5/trade/fills"): Endpoint(X.fills, 60, "user", True, "private"),
    ("POST", "/api/v5/asset/withdrawal"): Endpoint(X.withdrawal, 12, "user", True, "withdraw"),
}
