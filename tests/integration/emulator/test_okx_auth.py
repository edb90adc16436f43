"""OKX v5 authentication: signature, passphrase, timestamp window, demo environment."""

from __future__ import annotations

import pytest
from emulator_testkit import OKX_KEY, Okx, Serve, journal

from keybroker.clock import FixedClock
from keybroker.emulator import ApiKey, EmulatorConfig
from keybroker.secret import Secret

ORDER = {
    "instId": "BTC-USDT",
    "tdMode": "cash",
    "side": "buy",
    "ordType": "limit",
    "sz": "0.01",
    "px": "50000",
    "clOrdId": "testorder1",
}


def test_a_correct_signature_is_accepted_for_get_and_post(okx: Okx) -> None:
    balance = okx.request("GET", "/api/v5/account/balance", params={"ccy": "BTC,USDT"})
    assert balance.status_code == 200, balance.text
    details = {d["ccy"]: d["availBal"] for d in balance.json()["data"][0]["details"]}
    assert details == {"BTC": "1", "USDT": "100000"}
    placed = okx.request("POST", "/api/v5/trade/order", body=ORDER)
    assert placed.status_code == 200
    assert placed.json()["code"] == "0"
    assert placed.json()["data"][0]["sCode"] == "0"


def test_a_wrong_secret_is_50113(okx: Okx) -> None:
    response = okx.request("GET", "/api/v5/account/balance", secret="not-the-secret")
    assert response.status_code == 401
    assert response.json() == {"code": "50113", "msg": "Invalid Sign", "data": []}


def test_a_body_changed_after_signing_is_50113(okx: Okx) -> None:
    signed = okx.request("POST", "/api/v5/trade/order", body=ORDER)
    assert signed.json()["code"] == "0"
    request = signed.request
    tampered = okx.http.post(
        "/api/v5/trade/order",
        content=request.content.replace(b'"0.01"', b'"0.02"'),
        headers=dict(request.headers),
    )
    assert tampered.json()["code"] == "50113"
    assert len([e for e in journal(okx.http) if e["orders"]]) == 1


def test_a_wrong_passphrase_is_50105(okx: Okx) -> None:
    response = okx.request("GET", "/api/v5/account/balance", passphrase="wrong-passphrase")
    assert response.status_code == 401
    assert response.json()["code"] == "50105"


def test_an_unknown_key_is_50111_and_missing_headers_name_themselves(okx: Okx) -> None:
    unknown = Okx(okx.http, api_key="nobody").request("GET", "/api/v5/account/balance")
    assert (unknown.status_code, unknown.json()["code"]) == (401, "50111")
    bare = okx.http.get("/api/v5/account/balance")
    assert bare.status_code == 401
    assert bare.json()["code"] == "50103"
    assert "OK-ACCESS-KEY" in bare.json()["msg"]


@pytest.mark.parametrize(
    ("skew_ms", "code"), [(30_000, "0"), (-30_000, "0"), (30_001, "50102"), (-30_001, "50102")]
)
def test_the_timestamp_must_be_within_30_seconds(serve: Serve, skew_ms: int, code: str) -> None:
    clock = FixedClock(1_795_000_000_000)
    client = Okx(serve("okx", clock=clock), now_ms=clock.now_ms)
    response = client.request(
        "GET", "/api/v5/account/balance", timestamp_ms=clock.now_ms() + skew_ms
    )
    assert response.json()["code"] == code


def test_a_unix_millisecond_timestamp_is_50112(okx: Okx) -> None:
    good = okx.request("GET", "/api/v5/account/balance")
    headers = dict(good.request.headers)
    headers["ok-access-timestamp"] = str(okx.now_ms())
    response = okx.http.get("/api/v5/account/balance", headers=headers)
    assert response.json()["code"] == "50112"


def test_the_demo_environment_needs_the_simulated_trading_header(serve: Serve) -> None:
    http = serve("okx")
    live_client = Okx(http, demo=False)
    response = live_client.request("GET", "/api/v5/account/balance")
    assert (response.status_code, response.json()["code"]) == (401, "50101")
    live_emulator = serve("okx", config=EmulatorConfig(okx_demo=False))
    assert (
        Okx(live_emulator, demo=False).request("GET", "/api/v5/account/balance").json()["code"]
        == "0"
    )
    assert Okx(live_emulator).request("GET", "/api/v5/account/balance").json()["code"] == "50101"


def test_account_config_reports_each_keys_permissions(serve: Serve) -> None:
    risky = ApiKey(
        "test-risky-okx",
        Secret("test-risky-secret"),
        Secret("test-risky-pass"),
        can_withdraw=True,
        ip_restricted=False,
    )
    http = serve("okx", keys=[OKX_KEY, risky])
    safe = Okx(http).request("GET", "/api/v5/account/config").json()["data"][0]
    assert (safe["perm"], safe["ip"]) == ("read_only,trade", "127.0.0.1")
    loose = Okx(
        http, api_key=risky.api_key, secret="test-risky-secret", passphrase="test-risky-pass"
    )
    reported = loose.request("GET", "/api/v5/account/config").json()["data"][0]
    assert (reported["perm"], reported["ip"]) == ("read_only,trade,withdraw", "")


def test_withdrawals_are_recorded_and_never_executed(serve: Serve) -> None:
    able = ApiKey(
        "test-able-okx", Secret("test-able-secret"), Secret("test-able-pass"), can_withdraw=True
    )
    http = serve("okx", keys=[OKX_KEY, able])
    body = {
        "ccy": "USDT",
        "amt": "100",
        "dest": "4",
        "toAddr": "test-address",
        "chain": "USDT-TRC20",
    }
    refused = Okx(http).request("POST", "/api/v5/asset/withdrawal", body=body)
    assert refused.json()["code"] == "50120"
    answered = Okx(
        http, api_key=able.api_key, secret="test-able-secret", passphrase="test-able-pass"
    ).request("POST", "/api/v5/asset/withdrawal", body=body)
    assert answered.json()["code"] == "0"
    withdrawals = [e for e in journal(http) if e["kind"] == "withdraw"]
    assert [w["accepted"] for w in withdrawals] == [False, True]
    assert all(w["withdrawal"]["executed"] is False for w in withdrawals)
    accounts = http.get("/__emulator__/accounts").json()["accounts"]
    assert accounts[able.api_key]["free"]["USDT"] == "100000"
