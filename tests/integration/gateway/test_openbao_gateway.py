"""The gateway signing with keys that live in a real OpenBao dev server, set up through the CLI.

One OpenBao and one Binance emulator for the module. ``keybroker openbao setup``,
``keys add --store openbao`` (an HMAC secret imported) and ``keys generate
--store openbao`` (an Ed25519 key made inside) run as a user would run them;
the emulator knows the HMAC secret and only the Ed25519 *public* key, and
checks every signature with its own code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from cli_harness import Kb
from gateway_testkit import (
    BINANCE_API_KEY,
    BINANCE_SECRET,
    LIMIT_BUY,
    PASSPHRASE,
    TRADER,
    Gateway,
    make_vault,
    new_token,
    wait_until,
)

from keybroker.crypto.keys import RemoteKey
from keybroker.emulator import ApiKey
from keybroker.emulator import create_app as create_emulator
from keybroker.emulator import serve_in_thread as serve_emulator
from keybroker.gateway import GatewayConfig
from keybroker.gateway import create_app as create_gateway
from keybroker.gateway import serve_in_thread as serve_gateway
from keybroker.openbao import OpenBao, load
from keybroker.secret import Secret
from keybroker.vault import Vault
from openbao_server import BaoServer, start_server

ED_API_KEY = "test-binance-ed25519-key-not-real"
BOTS = itertools.count()


@dataclass
class Setup:
    bao: BaoServer
    home: Path
    kb: Kb
    exchange_url: str
    ed_public_pem: str
    ed_key_name: str

    def bao_env(self) -> dict[str, str | None]:
        return {"BAO_TOKEN": self.bao.root_token}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    bao = start_server(tmp_path_factory.mktemp("bao"))
    home = tmp_path_factory.mktemp("openbao-home") / "home"
    make_vault(home, {}).close()
    kb = Kb(home)
    env = {"BAO_TOKEN": bao.root_token}
    port = _free_port()
    exchange_url = f"http://127.0.0.1:{port}"
    kb("openbao", "setup", "--addr", bao.addr, "--gateway", "gw1", env=env)
    kb(
        "keys", "add", "bn", "--exchange", "binance", "--scope", "read,trade",
        "--base-url", exchange_url, "--store", "openbao", "--from-env",
        env={**env, "BINANCE_API_KEY": BINANCE_API_KEY, "BINANCE_API_SECRET": BINANCE_SECRET},
    )  # fmt: skip
    generated = json.loads(
        kb(
            "keys", "generate", "bned", "--exchange", "binance", "--key-type", "ed25519",
            "--store", "openbao", "--api-key", ED_API_KEY, "--scope", "read,trade",
            "--base-url", exchange_url, "--json", env=env,
        ).stdout
    )  # fmt: skip
    keys = [
        ApiKey(BINANCE_API_KEY, Secret(BINANCE_SECRET)),
        ApiKey(ED_API_KEY, Secret(generated["public_key_pem"]), key_type="ed25519"),
    ]
    _, stop_exchange = serve_emulator(create_emulator("binance", keys), port=port)
    yield Setup(bao, home, kb, exchange_url, generated["public_key_pem"], generated["transit_key"])
    stop_exchange()
    bao.stop()


@pytest.fixture
def start_gateway() -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(home: Path, **config: object) -> Gateway:
        vault = Vault.open(home / "vault.db")
        vault.unlock(Secret(PASSPHRASE))
        for name in ("bn", "bned"):
            vault.set_policy(name, TRADER.to_json())
        token = new_token(vault, f"bot-{next(BOTS)}", ["bn", "bned"])
        settings = GatewayConfig(audit_path=home / "audit.db", **config)  # type: ignore[arg-type]
        app = create_gateway(vault, settings, openbao=load(home))
        gateway = Gateway(serve_gateway(app), vault, home, token)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        for client in gateway.clients:
            client.close()
        gateway.running.stop()
        gateway.vault.close()


def _order(price: int) -> dict[str, str]:
    return {**LIMIT_BUY, "price": str(price)}


def test_the_vault_holds_no_secret_only_the_transit_key_name(setup: Setup) -> None:
    with Vault.open(setup.home / "vault.db") as vault:
        vault.unlock(Secret(PASSPHRASE))
        secret = vault.credential("bn").secret
        assert isinstance(secret, RemoteKey) and secret.store == "openbao"
        assert isinstance(vault.credential("bned").secret, RemoteKey)
    for path in setup.home.iterdir():
        assert BINANCE_SECRET.encode() not in path.read_bytes(), path.name
    listed = setup.kb("keys", "show", "bn", "--json").stdout
    assert BINANCE_SECRET not in listed
    for run in setup.kb.runs:  # setup, keys add, keys generate, show: no secret, no token
        assert BINANCE_SECRET not in run.text and setup.bao.root_token not in run.text
    # The gateway's policy names both keys; the HCL was printed by setup's rerun in keys add.
    with setup.bao.admin() as admin:
        hcl = admin.read("sys/policies/acl/gw1")["data"]["policy"]
    assert f"transit/sign/{setup.ed_key_name}" in hcl and "/sha2-256" in hcl


def test_orders_signed_in_openbao_reach_the_exchange(
    setup: Setup, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(setup.home)
    client = gateway.client()
    assert wait_until(lambda: client.get("/_/status").json()["openbao"]["state"] == "ready")
    hmac_answer = client.post("/bn/api/v3/order", data=_order(50_000))
    assert hmac_answer.status_code == 200, hmac_answer.text
    account = client.get("/bned/api/v3/account")
    assert account.status_code == 200, account.text  # the emulator checked the Ed25519 signature
    ed_answer = client.post("/bned/api/v3/order", data=_order(50_001))
    assert ed_answer.status_code == 200, ed_answer.text
    orders = httpx.get(f"{setup.exchange_url}/__emulator__/journal").json()["entries"]
    keys = {entry.get("api_key") for entry in orders if entry["path"] == "/api/v3/order"}
    assert {BINANCE_API_KEY, ED_API_KEY} <= keys
    status = client.get("/_/status").json()["openbao"]
    assert status["signatures"] >= 3 and status["transit_calls"] >= 2
    # Signed on the event loop in two passes (no worker thread), over a kept connection.
    assert status["threaded"] == 0
    assert 1 <= status["connections"] <= 3, status
    # The spent wrapping token is gone from openbao.json: the file cannot log anyone in again.
    connection = load(setup.home)
    assert connection is not None and connection.wrapped_secret_id is None


def test_an_order_refused_while_its_early_signature_is_pending_is_answered_and_never_sent(
    setup: Setup, start_gateway: Callable[..., Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    # A key in OpenBao starts signing as soon as the request is final, before the policy
    # decides. A refusal must neither wait for that signature nor let it out.
    setup.kb("openbao", "setup", env=setup.bao_env())  # a fresh single-use secret id
    gateway = start_gateway(setup.home, openbao_timeout_s=1.0)
    client = gateway.client()
    assert wait_until(lambda: client.get("/_/status").json()["openbao"]["state"] == "ready")
    journal = f"{setup.exchange_url}/__emulator__/journal"
    sent_before = len(httpx.get(journal).json()["entries"])
    setup.bao.pause()  # the early signature cannot finish
    try:
        refused = client.post("/bn/api/v3/order", data={**_order(50_020), "quantity": "1"})
    finally:
        setup.bao.resume()
    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "max_notional"
    assert client.post("/bn/api/v3/order", data=_order(50_021)).status_code == 200
    entries = httpx.get(journal).json()["entries"]
    orders = [e for e in entries[sent_before:] if e["path"] == "/api/v3/order"]
    assert [e["params"].get("price") for e in orders] == ["50021"]
    assert not any("never retrieved" in record.getMessage() for record in caplog.records)


def test_a_burst_goes_to_openbao_in_batches(
    setup: Setup, start_gateway: Callable[..., Gateway]
) -> None:
    setup.kb("openbao", "setup", env=setup.bao_env())  # a fresh single-use secret id
    gateway = start_gateway(setup.home)
    client = gateway.client()
    assert wait_until(lambda: client.get("/_/status").json()["openbao"]["state"] == "ready")
    before = client.get("/_/status").json()["openbao"]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(
            pool.map(lambda i: client.post("/bn/api/v3/order", data=_order(40_000 + i)), range(48))
        )
    assert [answer.status_code for answer in answers] == [200] * 48
    after = client.get("/_/status").json()["openbao"]
    signatures = after["signatures"] - before["signatures"]
    calls = after["transit_calls"] - before["transit_calls"]
    assert signatures == 48
    assert calls < signatures, f"{calls} transit calls for {signatures} signatures: no batching"
    assert after["threaded"] == 0


def test_the_gateways_token_can_do_nothing_but_sign_with_its_keys(setup: Setup) -> None:
    printed = setup.kb("openbao", "setup", env=setup.bao_env()).text
    connection = load(setup.home)
    assert connection is not None and connection.wrapped_secret_id is not None
    assert connection.wrapped_secret_id not in printed and connection.role_id not in printed
    assert 'path "auth/token/renew-self"' in printed  # the policy, printed as HCL
    with OpenBao(setup.bao.addr, None) as anonymous:
        wrapping = Secret(connection.wrapped_secret_id)
        secret_id = anonymous.write("sys/wrapping/unwrap", token=wrapping)["data"]["secret_id"]
        with pytest.raises(Exception, match="OpenBao refused sys/wrapping/unwrap"):
            anonymous.write("sys/wrapping/unwrap", token=wrapping)  # single use
        login = {"role_id": connection.role_id, "secret_id": secret_id}
        token = Secret(anonymous.write("auth/approle/login", login)["auth"]["client_token"])
        with pytest.raises(Exception, match="OpenBao refused auth/approle/login"):
            anonymous.write("auth/approle/login", login)  # the secret id is single use too
    with setup.bao.admin() as admin:
        hcl = admin.read("sys/policies/acl/gw1")["data"]["policy"]
    hmac_path = next(p.split('"')[1] for p in hcl.splitlines() if "/hmac/" in p)
    hmac_key = hmac_path.split("/")[2]
    body = {"input": "bWVzc2FnZQ=="}
    with OpenBao(setup.bao.addr, token) as gateway:
        assert "hmac" in gateway.write(hmac_path, body)["data"]  # its own key: allowed
        assert "signature" in gateway.write(f"transit/sign/{setup.ed_key_name}", body)["data"]
        gateway.write("auth/token/renew-self")  # and renewing itself
        refused = [
            ("POST", f"transit/hmac/{hmac_key}/sha2-512", body),  # another hash
            ("POST", f"transit/sign/{hmac_key}", body),
            ("POST", f"transit/hmac/{setup.ed_key_name}/sha2-256", body),
            ("POST", "transit/hmac/some-other-key/sha2-256", body),
            ("GET", f"transit/keys/{hmac_key}", None),
            ("GET", f"transit/export/hmac-key/{hmac_key}", None),
            ("POST", f"transit/keys/{hmac_key}/config", {"exportable": True}),
            ("POST", "transit/keys/new-key", {"type": "ed25519"}),
            ("GET", "transit/wrapping_key", None),
            ("POST", f"transit/verify/{setup.ed_key_name}", body),
            ("GET", "sys/policies/acl/gw1", None),
            ("PUT", "sys/policies/acl/gw1", {"policy": 'path "*" {capabilities=["sudo"]}'}),
            ("GET", "sys/mounts", None),
            ("POST", "auth/approle/role/gw1/secret-id", {}),
            ("POST", "auth/token/create", {}),
            ("GET", "auth/token/lookup-self", None),
            ("GET", "secret/data/anything", None),
        ]
        for method, path, payload in refused:
            with pytest.raises(Exception, match=r"\(403\)"):
                gateway.request(method, path, payload)


def test_openbao_unreachable_means_503_and_an_alert_never_a_local_signature(
    setup: Setup,
    start_gateway: Callable[..., Gateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup.kb("openbao", "setup", env=setup.bao_env())
    gateway = start_gateway(setup.home, openbao_timeout_s=1.0)
    client = gateway.client()
    assert wait_until(lambda: client.get("/_/status").json()["openbao"]["state"] == "ready")
    assert client.post("/bn/api/v3/order", data=_order(45_000)).status_code == 200
    journal = f"{setup.exchange_url}/__emulator__/journal"
    sent_before = len(httpx.get(journal).json()["entries"])
    setup.bao.pause()
    try:
        refused = client.post("/bn/api/v3/order", data=_order(45_001))
        ed_refused = client.get("/bned/api/v3/account")
    finally:
        setup.bao.resume()
    for answer in (refused, ed_refused):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "key_store_unavailable"
        assert "OpenBao" in answer.json()["detail"]
    assert len(httpx.get(journal).json()["entries"]) == sent_before  # nothing left unsigned
    assert any("openbao_unavailable" in record.getMessage() for record in caplog.records)
    recovered = client.post("/bn/api/v3/order", data=_order(45_002))
    assert recovered.status_code == 200, recovered.text
    assert any("openbao_recovered" in record.getMessage() for record in caplog.records)
    results = [row.row for row in gateway.rows("result")]
    assert any(row.detail and "OpenBao" in row.detail for row in results)


def test_a_gateway_without_openbao_refuses_those_keys_with_503(
    setup: Setup, tmp_path: Path
) -> None:
    vault = Vault.open(setup.home / "vault.db")
    vault.unlock(Secret(PASSPHRASE))
    token = new_token(vault, "bot-nobao", ["bn"])
    app = create_gateway(vault, GatewayConfig(audit_path=tmp_path / "audit.db"))
    running = serve_gateway(app)
    try:
        answer = httpx.post(
            f"{running.url}/bn/api/v3/order",
            data=_order(44_000),
            headers={"X-Keybroker-Token": token},
        )
    finally:
        running.stop()
        vault.close()
    assert answer.status_code == 503
    assert "keybroker openbao setup" in answer.json()["detail"]


@pytest.mark.slow
def test_the_gateway_process_never_holds_an_openbao_backed_secret(setup: Setup) -> None:
    from gateway_testkit import serve_process
    from test_canary_memory import _readable_or_skip, scan_memory

    setup.kb("openbao", "setup", env=setup.bao_env())
    with Vault.open(setup.home / "vault.db") as vault:
        vault.unlock(Secret(PASSPHRASE))
        vault.set_policy("bn", TRADER.to_json())
        token = new_token(vault, f"bot-{next(BOTS)}", ["bn", "bned"])
    process = serve_process(setup.home, "--port", "0", "--uds", str(setup.home / "scan.sock"))
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
        with httpx.Client(base_url=url, headers={"X-Keybroker-Token": token}) as client:
            assert wait_until(lambda: client.get("/_/status").json()["openbao"]["state"] == "ready")
            for i in range(5):
                answer = client.post("/bn/api/v3/order", data=_order(41_000 + i))
                assert answer.status_code == 200, answer.text
            assert client.get("/bned/api/v3/account").status_code == 200
        _readable_or_skip(process.pid)
        needles = (BINANCE_SECRET.encode(), PASSPHRASE.encode())
        found, read = scan_memory(process.pid, needles)
        assert read > 1_000_000
        # The scan finds what the process does hold: the vault passphrase it was started
        # with (its environment keeps it for the process's life). The bot token it checked
        # is no control: its request's buffers may be reused by the time the scan runs
        # (seen once under load).
        assert PASSPHRASE.encode() in found
        assert BINANCE_SECRET.encode() not in found, "the gateway's memory holds the secret"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
    assert BINANCE_SECRET not in out + err


def test_websocket_orders_are_signed_in_openbao_too(
    setup: Setup, start_gateway: Callable[..., Gateway]
) -> None:
    # Binance's WebSocket API signs every request with the key: for a key in OpenBao the
    # gateway signs the frame there (HMAC and Ed25519), as it does a REST request.
    setup.kb("openbao", "setup", env=setup.bao_env())  # a fresh single-use secret id
    gateway = start_gateway(setup.home)
    client = gateway.client()
    assert wait_until(lambda: client.get("/_/status").json()["openbao"]["state"] == "ready")
    before = client.get("/_/status").json()["openbao"]["signatures"]

    async def place(credential: str, price: int) -> dict[str, object]:
        url = gateway.url.replace("http://", "ws://") + f"/{credential}/ws-api/v3"
        headers = {"X-Keybroker-Token": gateway.token}
        async with websockets.connect(url, additional_headers=headers, open_timeout=10) as bot:
            params = {**LIMIT_BUY, "price": str(price)}
            await bot.send(json.dumps({"id": price, "method": "order.place", "params": params}))
            while True:
                answer = json.loads(await asyncio.wait_for(bot.recv(), 10))
                if answer.get("id") == price:
                    return dict(answer)

    hmac_answer = asyncio.run(place("bn", 39_001))
    ed_answer = asyncio.run(place("bned", 39_002))
    assert hmac_answer.get("status") == 200, hmac_answer
    assert ed_answer.get("status") == 200, ed_answer
    journal = httpx.get(f"{setup.exchange_url}/__emulator__/journal").json()["entries"]
    over_ws = {e.get("api_key") for e in journal if e.get("transport") == "ws" and e.get("orders")}
    assert {BINANCE_API_KEY, ED_API_KEY} <= over_ws
    after = client.get("/_/status").json()["openbao"]
    assert after["signatures"] - before >= 2 and after["threaded"] == 0
