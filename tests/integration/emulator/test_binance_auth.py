"""Binance authentication as the docs state it: signature, key, timestamp and recvWindow."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from emulator_testkit import BINANCE_KEY, Binance, Serve, journal

from keybroker.clock import FixedClock
from keybroker.emulator import ApiKey, EmulatorConfig
from keybroker.secret import Secret


def test_a_correct_hmac_signature_is_accepted(binance: Binance) -> None:
    response = binance.signed("GET", "/api/v3/account")
    assert response.status_code == 200
    balances = {row["asset"]: row["free"] for row in response.json()["balances"]}
    assert balances["USDT"] == "100000.00000000"


def test_the_signature_covers_query_and_body_together(binance: Binance) -> None:
    # Mixed placement: symbol in the query, the rest in the body; the payload is
    # their concatenation with no separator (Binance docs, SIGNED endpoint example 3).
    query = "symbol=BTCUSDT"
    body = f"side=BUY&type=MARKET&quantity=0.001&timestamp={binance.now_ms()}"
    signature = binance.sign(query + body)
    response = binance.http.post(
        f"/api/v3/order?{query}",
        content=f"{body}&signature={signature}",
        headers={
            "X-MBX-APIKEY": binance.api_key,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "FILLED"


def test_a_wrong_secret_is_minus_1022(binance: Binance) -> None:
    response = binance.signed("GET", "/api/v3/account", sign_with="not-the-secret")
    assert response.status_code == 400
    assert response.json() == {
        "code": -1022,
        "msg": "Signature for this request is not valid.",
    }


def test_a_tampered_parameter_is_minus_1022(binance: Binance) -> None:
    payload = f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&timestamp={binance.now_ms()}"
    signature = binance.sign(payload)
    response = binance.http.post(
        "/api/v3/order",
        content=payload.replace("0.001", "0.002") + f"&signature={signature}",
        headers={"X-MBX-APIKEY": binance.api_key},
    )
    assert response.json()["code"] == -1022
    assert journal(binance.http)[-1]["orders"] == []


def test_an_unknown_key_is_minus_2015_and_a_missing_one_minus_2014(binance: Binance) -> None:
    unknown = binance.signed("GET", "/api/v3/account", api_key="nobody")
    assert (unknown.status_code, unknown.json()["code"]) == (401, -2015)
    assert unknown.json()["msg"] == "Invalid API-key, IP, or permissions for action."
    missing = binance.signed("GET", "/api/v3/account", api_key="")
    assert (missing.status_code, missing.json()["code"]) == (401, -2014)


def test_timestamps_outside_the_window_are_minus_1021(serve: Serve) -> None:
    clock = FixedClock(1_795_000_000_000)
    client = Binance(serve("binance", clock=clock), now_ms=clock.now_ms)
    now = clock.now_ms()
    assert client.signed("GET", "/api/v3/account", timestamp=now + 999).status_code == 200
    ahead = client.signed("GET", "/api/v3/account", timestamp=now + 1000)
    assert ahead.json() == {
        "code": -1021,
        "msg": "Timestamp for this request was 1000ms ahead of the server's time.",
    }
    assert client.signed("GET", "/api/v3/account", timestamp=now - 5000).status_code == 200
    late = client.signed("GET", "/api/v3/account", timestamp=now - 5001)
    assert (late.status_code, late.json()["code"]) == (400, -1021)
    assert "recvWindow" in late.json()["msg"]
    wider = client.signed("GET", "/api/v3/account", {"recvWindow": 10000}, timestamp=now - 9000)
    assert wider.status_code == 200
    too_wide = client.signed("GET", "/api/v3/account", {"recvWindow": 60001})
    assert too_wide.json()["code"] == -1131


def test_missing_signature_or_timestamp_is_minus_1102(binance: Binance) -> None:
    headers = {"X-MBX-APIKEY": binance.api_key}
    unsigned = binance.http.get(f"/api/v3/account?timestamp={binance.now_ms()}", headers=headers)
    assert unsigned.status_code == 400
    assert unsigned.json() == {
        "code": -1102,
        "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
    }
    payload = "recvWindow=5000"
    no_time = binance.http.get(
        f"/api/v3/account?{payload}&signature={binance.sign(payload)}", headers=headers
    )
    assert no_time.json()["code"] == -1102
    assert "'timestamp'" in no_time.json()["msg"]


def test_a_missing_order_parameter_is_minus_1102(binance: Binance) -> None:
    response = binance.signed("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY"})
    assert response.json() == {
        "code": -1102,
        "msg": "Mandatory parameter 'type' was not sent, was empty/null, or malformed.",
    }


def test_ed25519_keys_verify_with_the_public_key(serve: Serve) -> None:
    private = Ed25519PrivateKey.generate()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = ApiKey("test-ed25519-key", Secret(public_pem), key_type="ed25519")
    http = serve("binance", keys=[key])
    good = Binance(http, api_key=key.api_key, ed25519=private)
    assert good.signed("GET", "/api/v3/account").status_code == 200
    order = good.signed(
        "POST",
        "/api/v3/order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
    )
    assert order.status_code == 200, order.text
    other = Binance(http, api_key=key.api_key, ed25519=Ed25519PrivateKey.generate())
    assert other.signed("GET", "/api/v3/account").json()["code"] == -1022


def test_rsa_keys_verify_pkcs1v15_sha256_with_the_public_key(serve: Serve) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = ApiKey("test-rsa-key", Secret(public_pem), key_type="rsa")
    http = serve("binance", keys=[key])
    payload = f"timestamp={int(time.time() * 1000)}"
    raw = private.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
    signature = quote(base64.b64encode(raw).decode(), safe="")
    headers = {"X-MBX-APIKEY": key.api_key}
    good = http.get(f"/api/v3/account?{payload}&signature={signature}", headers=headers)
    assert good.status_code == 200
    unencoded = base64.b64encode(raw).decode()  # "+" unescaped reads as a space: invalid
    if "+" in unencoded:
        bad = http.get(f"/api/v3/account?{payload}&signature={unencoded}", headers=headers)
        assert bad.json()["code"] == -1022


def test_the_permission_endpoint_reports_each_keys_configuration(serve: Serve) -> None:
    risky = ApiKey(
        "test-risky-key", Secret("test-risky-secret"), can_withdraw=True, ip_restricted=False
    )
    http = serve("binance", keys=[BINANCE_KEY, risky])
    safe = Binance(http).signed("GET", "/sapi/v1/account/apiRestrictions").json()
    assert safe["enableWithdrawals"] is False
    assert safe["ipRestrict"] is True
    assert safe["enableInternalTransfer"] is False
    assert safe["permitsUniversalTransfer"] is False
    loose = Binance(http, api_key=risky.api_key, secret="test-risky-secret")
    reported = loose.signed("GET", "/sapi/v1/account/apiRestrictions").json()
    assert (reported["enableWithdrawals"], reported["ipRestrict"]) == (True, False)


def test_withdrawals_are_recorded_and_never_executed(serve: Serve) -> None:
    able = ApiKey("test-able-key", Secret("test-able-secret"), can_withdraw=True)
    http = serve("binance", keys=[BINANCE_KEY, able])
    request = {"coin": "BTC", "address": "bc1-test-address", "amount": "0.5"}
    refused = Binance(http).signed("POST", "/sapi/v1/capital/withdraw/apply", request)
    assert (refused.status_code, refused.json()["code"]) == (401, -2015)
    answered = Binance(http, api_key=able.api_key, secret="test-able-secret").signed(
        "POST", "/sapi/v1/capital/withdraw/apply", request
    )
    assert answered.status_code == 200 and "id" in answered.json()
    withdrawals = [e for e in journal(http) if e["kind"] == "withdraw"]
    assert [(w["api_key"], w["accepted"]) for w in withdrawals] == [
        (BINANCE_KEY.api_key, False),
        (able.api_key, True),
    ]
    assert all(w["withdrawal"]["executed"] is False for w in withdrawals)
    assert withdrawals[1]["withdrawal"]["amount"] == "0.5"
    accounts = http.get("/__emulator__/accounts").json()["accounts"]
    assert accounts[able.api_key]["free"]["BTC"] == "1"


def test_an_ip_bound_key_is_refused_from_another_address() -> None:
    # A peer address other than loopback cannot be produced over loopback HTTP,
    # so this one check talks to the venue directly.
    from keybroker.emulator.binance import Binance as Venue
    from keybroker.emulator.wire import Call

    venue = Venue([BINANCE_KEY], EmulatorConfig(), lambda: 1_795_000_000_000)
    call = Call(
        "GET",
        "/api/v3/account",
        b"timestamp=1",
        b"",
        {"x-mbx-apikey": BINANCE_KEY.api_key},
        "192.0.2.7",
        1_795_000_000_000,
    )
    answer = venue.handle(call)
    assert (answer.status, answer.code) == (401, "-2015")
