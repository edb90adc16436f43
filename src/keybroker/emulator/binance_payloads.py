"""The JSON bodies Binance sends back, built from the engine's state (spot, SAPI, USDⓈ-M).

    >>> spot_order(order, instrument, response_type="FULL")
    {'symbol': 'BTCUSDT', 'orderId': 1, ... 'fills': [...]}

Field names, order and string formats follow the Binance REST documentation
closely enough for ccxt 4.5.90 and our adapters to parse them. Spot amounts
are strings with 8 decimals, as Binance spot writes them; USDⓈ-M prices and
quantities are written at the instrument's precision.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

from keybroker.emulator.engine import ZERO, Account, Engine, Fill, Order
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.market import Candle, Instrument, Market

CREATED_MS = 1_700_000_000_000  # "createTime" of every emulated key and listing
DELIVERY_MS = 4_133_404_800_000  # a perpetual's "deliveryDate" on Binance


def d8(value: Decimal) -> str:
    return f"{value:.8f}"


def at(value: Decimal, quantum: Decimal) -> str:
    return str(value.quantize(quantum))


def _digits(quantum: Decimal) -> int:
    return max(0, -quantum.normalize().as_tuple().exponent)  # type: ignore[operator]


# --- market data ------------------------------------------------------------------------------


def spot_exchange_info(
    instruments: list[Instrument], weight_limit: int, orders_10s: int, orders_day: int, now_ms: int
) -> dict[str, object]:
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            _limit("REQUEST_WEIGHT", "MINUTE", 1, weight_limit),
            _limit("ORDERS", "SECOND", 10, orders_10s),
            _limit("ORDERS", "DAY", 1, orders_day),
            _limit("RAW_REQUESTS", "MINUTE", 5, 61000),
        ],
        "exchangeFilters": [],
        "symbols": [_spot_symbol(i) for i in instruments],
    }


def _limit(kind: str, interval: str, number: int, limit: int) -> dict[str, object]:
    return {"rateLimitType": kind, "interval": interval, "intervalNum": number, "limit": limit}


def _spot_symbol(i: Instrument) -> dict[str, object]:
    return {
        "symbol": i.symbol,
        "status": "TRADING",
        "baseAsset": i.base,
        "baseAssetPrecision": 8,
        "quoteAsset": i.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": d8(i.tick_size),
                "maxPrice": "1000000.00000000",
                "tickSize": d8(i.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": d8(i.min_qty),
                "maxQty": "9000.00000000",
                "stepSize": d8(i.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": d8(i.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def usdm_exchange_info(
    instruments: list[Instrument],
    weight_limit: int,
    orders_10s: int,
    orders_minute: int,
    now_ms: int,
) -> dict[str, object]:
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            _limit("REQUEST_WEIGHT", "MINUTE", 1, weight_limit),
            _limit("ORDERS", "MINUTE", 1, orders_minute),
            _limit("ORDERS", "SECOND", 10, orders_10s),
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": [_usdm_symbol(i) for i in instruments],
    }


def _usdm_symbol(i: Instrument) -> dict[str, object]:
    return {
        "symbol": i.symbol,
        "pair": i.symbol,
        "contractType": "PERPETUAL",
        "deliveryDate": DELIVERY_MS,
        "onboardDate": CREATED_MS,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": i.base,
        "quoteAsset": i.quote,
        "marginAsset": i.quote,
        "pricePrecision": _digits(i.tick_size),
        "quantityPrecision": _digits(i.step_size),
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": str(i.tick_size),
                "maxPrice": "4529764",
                "tickSize": str(i.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": str(i.min_qty),
                "maxQty": "1000",
                "stepSize": str(i.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": str(i.min_qty),
                "maxQty": "120",
                "stepSize": str(i.step_size),
            },
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MIN_NOTIONAL", "notional": str(i.min_notional)},
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def depth(market: Market, limit: int, now_ms: int, usdm: bool) -> dict[str, object]:
    bids, asks = market.book(limit)
    tick, step = market.instrument.tick_size, market.instrument.step_size

    def row(price: Decimal, qty: Decimal) -> list[str]:
        return [at(price, tick), at(qty, step)] if usdm else [d8(price), d8(qty)]

    body: dict[str, object] = {"lastUpdateId": market.steps + 1}
    if usdm:
        body["E"] = body["T"] = now_ms
    body["bids"] = [row(level.price, level.qty) for level in bids]
    body["asks"] = [row(level.price, level.qty) for level in asks]
    return body


def klines(candles: list[Candle], interval_ms: int, usdm: bool) -> list[list[object]]:
    fmt = str if usdm else d8
    return [
        [
            c.open_ms,
            fmt(c.open),
            fmt(c.high),
            fmt(c.low),
            fmt(c.close),
            fmt(c.volume),
            c.open_ms + interval_ms - 1,
            fmt(c.quote_volume),
            c.trades,
            fmt(c.volume / 2),
            fmt(c.quote_volume / 2),
            "0",
        ]
        for c in candles
    ]


def ticker_24h(market: Market, day: list[Candle], now_ms: int, usdm: bool) -> dict[str, object]:
    fmt = str if usdm else d8
    open_ = day[0].open
    last = market.mid
    volume = sum((c.volume for c in day), ZERO)
    quote_volume = sum((c.quote_volume for c in day), ZERO)
    trades = market.trades(1)
    body: dict[str, object] = {
        "symbol": market.instrument.symbol,
        "priceChange": fmt(last - open_),
        "priceChangePercent": f"{(last - open_) / open_ * 100:.3f}",
        "weightedAvgPrice": fmt((quote_volume / volume).quantize(market.instrument.tick_size)),
        "lastPrice": fmt(last),
        "lastQty": fmt(trades[-1].qty if trades else ZERO),
        "openPrice": fmt(open_),
        "highPrice": fmt(max(c.high for c in day)),
        "lowPrice": fmt(min(c.low for c in day)),
        "volume": fmt(volume),
        "quoteVolume": fmt(quote_volume),
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": trades[-1].trade_id if trades else 0,
        "lastId": trades[-1].trade_id if trades else 0,
        "count": sum(c.trades for c in day),
    }
    if not usdm:
        bids, asks = market.book(1)
        body["prevClosePrice"] = fmt(open_)
        body["bidPrice"], body["bidQty"] = (
            (d8(bids[0].price), d8(bids[0].qty)) if bids else (d8(ZERO), d8(ZERO))
        )
        body["askPrice"], body["askQty"] = (
            (d8(asks[0].price), d8(asks[0].qty)) if asks else (d8(ZERO), d8(ZERO))
        )
    return body


def book_ticker(market: Market, now_ms: int, usdm: bool) -> dict[str, object]:
    bids, asks = market.book(1)
    fmt = str if usdm else d8
    body: dict[str, object] = {
        "symbol": market.instrument.symbol,
        "bidPrice": fmt(bids[0].price if bids else ZERO),
        "bidQty": fmt(bids[0].qty if bids else ZERO),
        "askPrice": fmt(asks[0].price if asks else ZERO),
        "askQty": fmt(asks[0].qty if asks else ZERO),
    }
    if usdm:
        body["time"] = now_ms
    return body


def public_trades(market: Market, limit: int, usdm: bool) -> list[dict[str, object]]:
    fmt = str if usdm else d8
    return [
        {
            "id": t.trade_id,
            "price": fmt(t.price),
            "qty": fmt(t.qty),
            "quoteQty": fmt(t.price * t.qty),
            "time": t.time_ms,
            "isBuyerMaker": t.buyer_is_maker,
            **({} if usdm else {"isBestMatch": True}),
        }
        for t in market.trades(limit)
    ]


# --- orders -----------------------------------------------------------------------------------


def spot_order_type(order: Order) -> str:
    return "LIMIT_MAKER" if order.request.post_only else order.request.type


def spot_order(order: Order, response_type: str = "RESULT") -> dict[str, object]:
    """POST /api/v3/order answer in the ACK, RESULT or FULL shape."""
    r = order.request
    body: dict[str, object] = {
        "symbol": r.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": r.client_order_id,
        "transactTime": order.created_ms,
    }
    if response_type == "ACK":
        return body
    body.update(
        {
            "price": d8(r.price or ZERO),
            "origQty": d8(r.quantity if r.quantity is not None else order.executed_qty),
            "executedQty": d8(order.executed_qty),
            "origQuoteOrderQty": d8(r.quote_quantity or ZERO),
            "cummulativeQuoteQty": d8(order.cumulative_quote),
            "status": order.status,
            "timeInForce": r.time_in_force,
            "type": spot_order_type(order),
            "side": r.side,
            "workingTime": order.created_ms,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
    )
    if response_type == "FULL":
        body["fills"] = [_spot_fill(f) for f in order.fills]
    return body


def _spot_fill(fill: Fill) -> dict[str, object]:
    return {
        "price": d8(fill.price),
        "qty": d8(fill.qty),
        "commission": d8(fill.fee),
        "commissionAsset": fill.fee_asset,
        "tradeId": fill.trade_id,
    }


def spot_order_status(order: Order) -> dict[str, object]:
    """GET /api/v3/order, openOrders and allOrders entries."""
    r = order.request
    return {
        "symbol": r.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": r.client_order_id,
        "price": d8(r.price or ZERO),
        "origQty": d8(r.quantity if r.quantity is not None else order.executed_qty),
        "executedQty": d8(order.executed_qty),
        "cummulativeQuoteQty": d8(order.cumulative_quote),
        "status": order.status,
        "timeInForce": r.time_in_force,
        "type": spot_order_type(order),
        "side": r.side,
        "stopPrice": d8(ZERO),
        "icebergQty": d8(ZERO),
        "time": order.created_ms,
        "updateTime": order.updated_ms,
        "isWorking": True,
        "workingTime": order.created_ms,
        "origQuoteOrderQty": d8(r.quote_quantity or ZERO),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def spot_cancel(order: Order, cancel_client_id: str) -> dict[str, object]:
    body = spot_order(order, "RESULT")
    body["origClientOrderId"] = order.client_order_id
    body["clientOrderId"] = cancel_client_id
    return body


def my_trades(orders: list[Order], usdm: bool) -> list[dict[str, object]]:
    rows = []
    for order in orders:
        r = order.request
        for fill in order.fills:
            row: dict[str, object] = {
                "symbol": r.symbol,
                "id": fill.trade_id,
                "orderId": order.order_id,
                "price": str(fill.price) if usdm else d8(fill.price),
                "qty": str(fill.qty) if usdm else d8(fill.qty),
                "quoteQty": str(fill.price * fill.qty) if usdm else d8(fill.price * fill.qty),
                "commission": d8(fill.fee),
                "commissionAsset": fill.fee_asset,
                "time": fill.time_ms,
                "maker": fill.is_maker,
            }
            if usdm:
                row.update(
                    {
                        "side": r.side,
                        "buyer": r.side == "BUY",
                        "positionSide": "BOTH",
                        "realizedPnl": "0",
                    }
                )
            else:
                row.update(
                    {
                        "orderListId": -1,
                        "isBuyer": r.side == "BUY",
                        "isMaker": fill.is_maker,
                        "isBestMatch": True,
                    }
                )
                del row["maker"]
            rows.append(row)
    return sorted(rows, key=lambda row: int(str(row["id"])))


def usdm_order(order: Order, instrument: Instrument) -> dict[str, object]:
    """POST/GET/DELETE /fapi/v1/order answer."""
    r = order.request
    tick, step = instrument.tick_size, instrument.step_size
    average = order.average_price.quantize(tick) if order.executed_qty else ZERO
    return {
        "orderId": order.order_id,
        "symbol": r.symbol,
        "status": order.status,
        "clientOrderId": r.client_order_id,
        "price": at(r.price or ZERO, tick),
        "avgPrice": str(average),
        "origQty": at(r.quantity or ZERO, step),
        "executedQty": at(order.executed_qty, step),
        "cumQty": at(order.executed_qty, step),
        "cumQuote": str(order.cumulative_quote),
        "timeInForce": "GTX" if r.post_only else r.time_in_force,
        "type": r.type,
        "reduceOnly": r.reduce_only,
        "closePosition": False,
        "side": r.side,
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": r.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "time": order.created_ms,
        "updateTime": order.updated_ms,
    }


# --- accounts ---------------------------------------------------------------------------------


def spot_account(wallet: Account, key: ApiKey, now_ms: int) -> dict[str, object]:
    assets = sorted(set(wallet.free) | set(wallet.locked))
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00100000",
            "taker": "0.00100000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": key.can_withdraw,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": wallet.updated_ms or now_ms,
        "accountType": "SPOT",
        "balances": [
            {
                "asset": a,
                "free": d8(wallet.free.get(a, ZERO)),
                "locked": d8(wallet.locked.get(a, ZERO)),
            }
            for a in assets
        ],
        "permissions": ["SPOT"],
        "uid": 100_000_000 + zlib.crc32(key.api_key.encode()) % 100_000_000,
    }


def usdm_account(engine: Engine, account: str, now_ms: int, version: int) -> dict[str, object]:
    wallet = engine.account(account)
    product = "usdm"
    leverage = engine.rules[product].leverage
    positions = []
    unrealised, position_margin = ZERO, ZERO
    for symbol in sorted(engine.markets[product]):
        position = wallet.positions.get(symbol)
        mark = engine.markets[product][symbol].mid
        amount = position.amount if position else ZERO
        entry = position.entry_price if position else ZERO
        pnl = (mark - entry) * amount if amount else ZERO
        margin = abs(amount) * mark / leverage
        unrealised += pnl
        position_margin += margin
        row: dict[str, object] = {
            "symbol": symbol,
            "positionSide": "BOTH",
            "positionAmt": str(amount),
            "unrealizedProfit": d8(pnl),
            "isolatedMargin": "0",
            "notional": d8(amount * mark),
            "isolatedWallet": "0",
            "initialMargin": d8(margin),
            "maintMargin": d8(margin / 8),
            "updateTime": position.updated_ms if position else 0,
        }
        if version == 2:
            row.update(
                {
                    "leverage": str(leverage),
                    "entryPrice": str(entry),
                    "isolated": False,
                    "positionInitialMargin": d8(margin),
                    "openOrderInitialMargin": "0",
                    "maxNotional": "1000000",
                    "bidNotional": "0",
                    "askNotional": "0",
                }
            )
        positions.append(row)
    held = sum((o.reserved for o in engine.open_orders(account, product)), ZERO)
    available = engine.available_margin(account, product)
    balance = wallet.margin_balance
    asset = {
        "asset": "USDT",
        "walletBalance": d8(balance),
        "unrealizedProfit": d8(unrealised),
        "marginBalance": d8(balance + unrealised),
        "maintMargin": d8(position_margin / 8),
        "initialMargin": d8(position_margin + held),
        "positionInitialMargin": d8(position_margin),
        "openOrderInitialMargin": d8(held),
        "crossWalletBalance": d8(balance),
        "crossUnPnl": d8(unrealised),
        "availableBalance": d8(available),
        "maxWithdrawAmount": d8(max(ZERO, available)),
        "marginAvailable": True,
        # Binance marks never-used assets with updateTime 0 (ccxt skips them); this one is funded.
        "updateTime": wallet.updated_ms or now_ms,
    }
    body: dict[str, object] = {
        "totalInitialMargin": asset["initialMargin"],
        "totalMaintMargin": asset["maintMargin"],
        "totalWalletBalance": asset["walletBalance"],
        "totalUnrealizedProfit": asset["unrealizedProfit"],
        "totalMarginBalance": asset["marginBalance"],
        "totalPositionInitialMargin": asset["positionInitialMargin"],
        "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
        "totalCrossWalletBalance": asset["crossWalletBalance"],
        "totalCrossUnPnl": asset["crossUnPnl"],
        "availableBalance": asset["availableBalance"],
        "maxWithdrawAmount": asset["maxWithdrawAmount"],
        "assets": [asset],
        "positions": positions,
    }
    if version == 2:
        body.update(
            {
                "feeTier": 0,
                "canTrade": True,
                "canDeposit": True,
                "canWithdraw": True,
                "updateTime": 0,
                "multiAssetsMargin": False,
                "tradeGroupId": -1,
            }
        )
    return body


def usdm_balance(engine: Engine, account: str, now_ms: int) -> list[dict[str, object]]:
    wallet = engine.account(account)
    available = engine.available_margin(account, "usdm")
    return [
        {
            "accountAlias": "emulator",
            "asset": "USDT",
            "balance": d8(wallet.margin_balance),
            "crossWalletBalance": d8(wallet.margin_balance),
            "crossUnPnl": d8(ZERO),
            "availableBalance": d8(available),
            "maxWithdrawAmount": d8(max(ZERO, available)),
            "marginAvailable": True,
            "updateTime": wallet.updated_ms or now_ms,
        }
    ]


def position_risk(engine: Engine, account: str) -> list[dict[str, object]]:
    wallet = engine.account(account)
    leverage = engine.rules["usdm"].leverage
    rows = []
    for symbol, market in sorted(engine.markets["usdm"].items()):
        position = wallet.positions.get(symbol)
        amount = position.amount if position else ZERO
        entry = position.entry_price if position else ZERO
        mark = market.mid
        rows.append(
            {
                "symbol": symbol,
                "positionSide": "BOTH",
                "positionAmt": str(amount),
                "entryPrice": str(entry),
                "breakEvenPrice": str(entry),
                "markPrice": str(mark),
                "unRealizedProfit": d8((mark - entry) * amount if amount else ZERO),
                "liquidationPrice": "0",
                "leverage": str(leverage),
                "marginType": "cross",
                "isolatedMargin": "0.00000000",
                "isAutoAddMargin": "false",
                "notional": d8(amount * mark),
                "isolatedWallet": "0",
                "updateTime": position.updated_ms if position else 0,
            }
        )
    return rows


def api_restrictions(key: ApiKey) -> dict[str, object]:
    return {
        "ipRestrict": key.ip_restricted,
        "createTime": CREATED_MS,
        "enableReading": True,
        "enableWithdrawals": key.can_withdraw,
        "enableInternalTransfer": False,
        "enableMargin": False,
        "enableFutures": key.can_trade,
        "permitsUniversalTransfer": False,
        "enableVanillaOptions": False,
        "enableFixApiTrade": False,
        "enableFixReadOnly": False,
        "enableSpotAndMarginTrading": key.can_trade,
        "enablePortfolioMarginTrading": False,
    }


def coins(wallet: Account, assets: list[str]) -> list[dict[str, object]]:
    """GET /sapi/v1/capital/config/getall: one network per coin, withdrawals listed as enabled."""
    return [
        {
            "coin": asset,
            "depositAllEnable": True,
            "withdrawAllEnable": True,
            "name": asset,
            "free": d8(wallet.free.get(asset, ZERO)),
            "locked": d8(wallet.locked.get(asset, ZERO)),
            "freeze": "0",
            "withdrawing": "0",
            "ipoing": "0",
            "ipoable": "0",
            "storage": "0",
            "isLegalMoney": False,
            "trading": True,
            "networkList": [
                {
                    "network": asset if asset in ("BTC", "ETH") else "ETH",
                    "coin": asset,
                    "withdrawIntegerMultiple": "0.00000001",
                    "isDefault": True,
                    "depositEnable": True,
                    "withdrawEnable": True,
                    "depositDesc": "",
                    "withdrawDesc": "",
                    "specialTips": "",
                    "name": asset,
                    "resetAddressStatus": False,
                    "addressRegex": "^.+$",
                    "memoRegex": "",
                    "withdrawFee": "0.0005" if asset == "BTC" else "1",
                    "withdrawMin": "0.001" if asset == "BTC" else "10",
                    "withdrawMax": "10000",
                    "minConfirm": 1,
                    "unLockConfirm": 2,
                    "sameAddress": False,
                    "estimatedArrivalTime": 5,
                    "busy": False,
                    "contractAddressUrl": "",
                    "contractAddress": "",
                }
            ],
        }
        for asset in assets
    ]
