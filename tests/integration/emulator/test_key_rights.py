"""A read-only emulator key (``can_trade: false``): reported as such, and its orders refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from emulator_testkit import Binance, Okx, Serve

from keybroker.emulator import ApiKey
from keybroker.emulator.keys import load_keys
from keybroker.errors import InvalidInput
from keybroker.secret import Secret

READER = ApiKey("test-reader-key", Secret("test-reader-secret"), can_trade=False)
OKX_READER = ApiKey(
    "test-okx-reader", Secret("test-okx-reader-secret"), Secret("test-okx-pass"), can_trade=False
)
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": "0.001", "price": "20000"}  # fmt: skip


def test_binance_read_only_key_reports_no_trading_and_cannot_order(serve: Serve) -> None:
    reader = Binance(serve("binance", keys=[READER]), api_key=READER.api_key,
                     secret="test-reader-secret")  # fmt: skip
    rights = reader.signed("GET", "/sapi/v1/account/apiRestrictions").json()
    assert rights["enableReading"] is True
    assert (rights["enableSpotAndMarginTrading"], rights["enableFutures"]) == (False, False)
    refused = reader.signed("POST", "/api/v3/order", ORDER)
    assert (refused.status_code, refused.json()["code"]) == (401, -2015)
    assert reader.signed("GET", "/api/v3/account").status_code == 200


def test_binance_default_key_still_trades(binance: Binance) -> None:
    assert binance.signed("GET", "/sapi/v1/account/apiRestrictions").json()[
        "enableSpotAndMarginTrading"
    ]
    assert binance.signed("POST", "/api/v3/order", ORDER).status_code == 200


def test_okx_read_only_key(serve: Serve) -> None:
    http = serve("okx", keys=[OKX_READER])
    reader = Okx(http, api_key=OKX_READER.api_key, secret="test-okx-reader-secret",
                 passphrase="test-okx-pass")  # fmt: skip
    config = reader.request("GET", "/api/v5/account/config").json()["data"][0]
    assert config["perm"] == "read_only"
    body = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
            "sz": "0.001", "px": "20000"}  # fmt: skip
    refused = reader.request("POST", "/api/v5/trade/order", body=body).json()
    assert refused["code"] == "50120"


def test_keys_file_takes_can_trade(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"api_key": "k", "secret": "s", "can_trade": False}]))
    assert load_keys(path, "binance")[0].can_trade is False
    path.write_text(json.dumps([{"api_key": "k", "secret": "s", "can_trade": "no"}]))
    with pytest.raises(InvalidInput, match="can_trade"):
        load_keys(path, "binance")
