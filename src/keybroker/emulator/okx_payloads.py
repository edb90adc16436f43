"""The JSON OKX v5 sends back inside ``{"code": "0", "msg": "", "data": [...]}``.

    >>> okx_order(order, instrument)
    {'instType': 'SPOT', 'instId': 'BTC-USDT', 'ordId': '1', ... 'state': 'filled'}

Everything is a string, as OKX writes it; fees are negative when charged.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

from keybroker.emulator.engine import ZERO, Account, Order
from keybroker.emulator.keys import ApiKey
from keybroker.emulator.market import Candle, Instrument, Market

LISTED_MS = "1606468572000"
STATES = {
    "NEW": "live",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "EXPIRED": "canceled",
}


def s(value: Decimal) -> str:
    """A Decimal as OKX writes it: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def instrument(i: Instrument) -> dict[str, object]:
    return {
        "instType": "SPOT",
        "instId": i.symbol,
        "instFamily": "",
        "uly": "",
        "baseCcy": i.base,
        "quoteCcy": i.quote,
        "settleCcy": "",
        "ctVal": "",
        "ctMult": "",
        "ctValCcy": "",
        "ctType": "",
        "optType": "",
        "stk": "",
        "listTime": LISTED_MS,
        "expTime": "",
        "lever": "10",
        "tickSz": s(i.tick_size),
        "lotSz": s(i.step_size),
        "minSz": s(i.min_qty),
        "maxLmtSz": "10000",
        "maxMktSz": "1000000",
        "maxLmtAmt": "20000000",
        "maxMktAmt": "1000000",
        "maxTwapSz": "",
        "maxIcebergSz": "",
        "maxTriggerSz": "",
        "maxStopSz": "",
        "alias": "",
        "state": "live",
        "ruleType": "normal",
        "category": "1",
    }


def ticker(market: Market, day: list[Candle], now_ms: int) -> dict[str, object]:
    bids, asks = market.book(1)
    trades = market.trades(1)
    volume = sum((c.volume for c in day), ZERO)
    return {
        "instType": "SPOT",
        "instId": market.instrument.symbol,
        "last": s(market.mid),
        "lastSz": s(trades[-1].qty) if trades else "0",
        "askPx": s(asks[0].price) if asks else "",
        "askSz": s(asks[0].qty) if asks else "",
        "bidPx": s(bids[0].price) if bids else "",
        "bidSz": s(bids[0].qty) if bids else "",
        "open24h": s(day[0].open),
        "high24h": s(max(c.high for c in day)),
        "low24h": s(min(c.low for c in day)),
        "volCcy24h": s(sum((c.quote_volume for c in day), ZERO)),
        "vol24h": s(volume),
        "ts": str(now_ms),
        "sodUtc0": s(day[0].open),
        "sodUtc8": s(day[0].open),
    }


def books(market: Market, size: int, now_ms: int) -> dict[str, object]:
    bids, asks = market.book(size)
    return {
        "asks": [[s(lv.price), s(lv.qty), "0", "1"] for lv in asks],
        "bids": [[s(lv.price), s(lv.qty), "0", "1"] for lv in bids],
        "ts": str(now_ms),
    }


def candles(rows: list[Candle], interval_ms: int, now_ms: int) -> list[list[str]]:
    """Newest first; ``confirm`` is "0" for the candle still open."""
    return [
        [
            str(c.open_ms),
            s(c.open),
            s(c.high),
            s(c.low),
            s(c.close),
            s(c.volume),
            s(c.volume),
            s(c.quote_volume),
            "0" if c.open_ms + interval_ms > now_ms else "1",
        ]
        for c in reversed(rows)
    ]


def trades(market: Market, limit: int) -> list[dict[str, object]]:
    return [
        {
            "instId": market.instrument.symbol,
            "side": "sell" if t.buyer_is_maker else "buy",
            "sz": s(t.qty),
            "px": s(t.price),
            "tradeId": str(t.trade_id),
            "ts": str(t.time_ms),
        }
        for t in reversed(market.trades(limit))
    ]


def order_type(order: Order) -> str:
    r = order.request
    if r.type == "MARKET":
        return "market"
    if r.post_only:
        return "post_only"
    return {"GTC": "limit", "IOC": "ioc", "FOK": "fok"}[r.time_in_force]


def target_currency(order: Order) -> str:
    r = order.request
    if r.type != "MARKET":
        return ""
    return "quote_ccy" if r.quote_quantity is not None else "base_ccy"


def okx_order(order: Order, spec: Instrument) -> dict[str, object]:
    r = order.request
    last = order.fills[-1] if order.fills else None
    fee = sum((f.fee for f in order.fills), ZERO)
    fee_ccy = last.fee_asset if last else (spec.base if r.side == "BUY" else spec.quote)
    size = r.quote_quantity if r.quote_quantity is not None else r.quantity
    return {
        "instType": "SPOT",
        "instId": r.symbol,
        "tgtCcy": target_currency(order),
        "ccy": "",
        "ordId": str(order.order_id),
        "clOrdId": r.client_order_id,
        "tag": "",
        "px": s(r.price) if r.price is not None else "",
        "pxUsd": "",
        "pxVol": "",
        "pxType": "",
        "sz": s(size or ZERO),
        "pnl": "0",
        "ordType": order_type(order),
        "side": r.side.lower(),
        "posSide": "net",
        "tdMode": "cash",
        "accFillSz": s(order.executed_qty),
        "fillPx": s(last.price) if last else "",
        "tradeId": str(last.trade_id) if last else "",
        "fillSz": s(last.qty) if last else "0",
        "fillTime": str(last.time_ms) if last else "",
        "avgPx": s(order.average_price) if order.executed_qty else "",
        "state": STATES[order.status],
        "lever": "",
        "attachAlgoClOrdId": "",
        "tpTriggerPx": "",
        "tpTriggerPxType": "",
        "tpOrdPx": "",
        "slTriggerPx": "",
        "slTriggerPxType": "",
        "slOrdPx": "",
        "attachAlgoOrds": [],
        "stpId": "",
        "stpMode": "",
        "feeCcy": fee_ccy,
        "fee": s(-fee),
        "rebateCcy": spec.quote if r.side == "BUY" else spec.base,
        "rebate": "0",
        "source": "",
        "category": "normal",
        "reduceOnly": "false",
        "isTpLimit": "false",
        "cancelSource": "1" if order.status == "CANCELED" else "",
        "cancelSourceReason": "",
        "quickMgnType": "",
        "algoClOrdId": "",
        "algoId": "",
        "uTime": str(order.updated_ms),
        "cTime": str(order.created_ms),
    }


def fills(orders: list[Order]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for order in orders:
        for fill in order.fills:
            rows.append(
                {
                    "instType": "SPOT",
                    "instId": order.symbol,
                    "tradeId": str(fill.trade_id),
                    "ordId": str(order.order_id),
                    "clOrdId": order.client_order_id,
                    "billId": str(fill.trade_id),
                    "tag": "",
                    "fillPx": s(fill.price),
                    "fillSz": s(fill.qty),
                    "side": order.request.side.lower(),
                    "posSide": "net",
                    "execType": "M" if fill.is_maker else "T",
                    "feeCcy": fill.fee_asset,
                    "fee": s(-fill.fee),
                    "ts": str(fill.time_ms),
                    "fillTime": str(fill.time_ms),
                }
            )
    return sorted(rows, key=lambda row: -int(str(row["tradeId"])))


def balance(wallet: Account, now_ms: int, only: set[str] | None) -> dict[str, object]:
    details = []
    for ccy in sorted(set(wallet.free) | set(wallet.locked)):
        if only and ccy not in only:
            continue
        free, locked = wallet.free.get(ccy, ZERO), wallet.locked.get(ccy, ZERO)
        details.append(
            {
                "ccy": ccy,
                "eq": s(free + locked),
                "cashBal": s(free + locked),
                "availBal": s(free),
                "availEq": s(free),
                "frozenBal": s(locked),
                "ordFrozen": s(locked),
                "disEq": "",
                "eqUsd": "",
                "upl": "0",
                "uplLiab": "",
                "liab": "",
                "crossLiab": "",
                "isoEq": "0",
                "isoLiab": "",
                "interest": "",
                "maxLoan": "",
                "mgnRatio": "",
                "notionalLever": "",
                "stgyEq": "0",
                "twap": "0",
                "spotInUseAmt": "",
                "uTime": str(wallet.updated_ms or now_ms),
            }
        )
    return {
        "adjEq": "",
        "borrowFroz": "",
        "details": details,
        "imr": "",
        "isoEq": "0",
        "mgnRatio": "",
        "mmr": "",
        "notionalUsd": "",
        "ordFroz": "",
        "totalEq": "",
        "uTime": str(wallet.updated_ms or now_ms),
    }


def account_config(key: ApiKey) -> dict[str, object]:
    perm = ",".join(
        ["read_only"]
        + (["trade"] if key.can_trade else [])
        + (["withdraw"] if key.can_withdraw else [])
    )
    uid = str(100_000_000 + zlib.crc32(key.api_key.encode()) % 100_000_000)
    return {
        "acctLv": "1",
        "autoLoan": False,
        "ctIsoMode": "automatic",
        "enableSpotBorrow": False,
        "greeksType": "PA",
        "ip": "127.0.0.1" if key.ip_restricted else "",
        "kycLv": "2",
        "label": "emulator",
        "level": "Lv1",
        "levelTmp": "",
        "liquidationGear": "-1",
        "mainUid": uid,
        "mgnIsoMode": "automatic",
        "opAuth": "0",
        "perm": perm,
        "posMode": "net_mode",
        "roleType": "0",
        "spotBorrowAutoRepay": False,
        "spotOffsetType": "",
        "spotRoleType": "0",
        "spotTraderInsts": [],
        "traderInsts": [],
        "type": "0",
        "uid": uid,
    }
