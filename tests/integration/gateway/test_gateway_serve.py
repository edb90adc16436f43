"""``keybroker serve`` as a real process: listeners, hardening report, TLS rule, restarts."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_testkit import (
    LIMIT_BUY,
    TRADER,
    StartEmulator,
    assert_no_secret,
    make_vault,
    new_token,
    serve_process,
    wait_until,
)

from keybroker.audit import read_rows, verify_chain
from keybroker.vault import Vault


class Served:
    """A `keybroker serve` process and what it printed when ready."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stdout is not None
        self.url = process.stdout.readline().strip()
        self.uds = process.stdout.readline().strip().removeprefix("unix:")
        if not self.url.startswith("http"):
            self.stop()
            raise AssertionError(f"serve did not start: {self.stderr}")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        _, err = self.process.communicate(timeout=15)
        self.stderr = err
        return err


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        one.stop()


def _home(tmp_path: Path, exchange_url: str) -> tuple[Path, str]:
    home = tmp_path / "home"
    vault = make_vault(home, {"bn": ("binance", exchange_url)}, policies={"bn": TRADER})
    token = new_token(vault, "bot1", ["bn"])
    vault.close()
    return home, token


def test_serve_listens_on_tcp_and_a_0600_socket_and_reports_hardening(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(serve_process(home, "--port", "0"))
    served.append(gateway)
    assert gateway.url.startswith("http://127.0.0.1:")
    assert gateway.uds == str(home / "gateway.sock")
    mode = (home / "gateway.sock").stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    headers = {"X-Keybroker-Token": token}
    assert httpx.get(f"{gateway.url}/bn/api/v3/account", headers=headers).status_code == 200
    transport = httpx.HTTPTransport(uds=gateway.uds)
    with httpx.Client(transport=transport, base_url="http://localhost") as client:
        placed = client.post("/bn/api/v3/order", data=LIMIT_BUY, headers=headers)
        assert placed.status_code == 200, placed.text
    status = httpx.get(f"{gateway.url}/_/status", headers=headers).json()
    assert set(status["hardening"]) == {
        "core dumps off",
        "not dumpable",
        "memory locked",
        "secret memory (memfd_secret)",
    }
    assert status["hardening"]["core dumps off"]["held"] is True
    limits = Path(f"/proc/{gateway.process.pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"]

    err = gateway.stop()
    for step in ("core dumps off", "not dumpable", "memory locked", "secret memory"):
        assert f"hardening: {step}" in err
    assert not (home / "gateway.sock").exists()  # removed on SIGTERM
    assert verify_chain(home / "audit.db").ok
    assert_no_secret(err)
    assert token not in err


def test_an_audit_command_elsewhere_never_takes_the_gateways_rows_away(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    # The gateway's start once read the log by path (open, close: every POSIX lock of
    # the process on the file gone); the next `keybroker audit verify` then deleted
    # the WAL the gateway kept writing into, and no later row was ever seen again.
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(serve_process(home, "--port", "0"))
    served.append(gateway)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KEYBROKER_")}
    verify = subprocess.run(
        [sys.executable, "-m", "keybroker", "--home", str(home), "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    headers = {"X-Keybroker-Token": token}
    for _ in range(3):
        assert httpx.get(f"{gateway.url}/bn/api/v3/account", headers=headers).status_code == 200
        denied = httpx.post(
            f"{gateway.url}/bn/sapi/v1/capital/withdraw/apply",
            data={"coin": "BTC"},
            headers=headers,
        )
        assert denied.status_code == 403
    wait_until(lambda: len(read_rows(home / "audit.db", kind="result")) >= 3, timeout=10)
    assert len(read_rows(home / "audit.db", kind="result")) == 3  # one per account read
    assert len(read_rows(home / "audit.db", kind="denied")) == 3
    descriptors = Path(f"/proc/{gateway.process.pid}/fd")
    held = [os.readlink(descriptors / fd) for fd in os.listdir(descriptors)]
    assert not [name for name in held if "audit.db" in name and "(deleted)" in name]


def test_a_halt_holds_across_a_restart(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    vault = Vault.open(home / "vault.db")
    vault.halt("bn", reason="test")
    vault.close()
    first = Served(serve_process(home, "--port", "0"))
    served.append(first)
    headers = {"X-Keybroker-Token": token}
    denied = httpx.post(f"{first.url}/bn/api/v3/order", data=LIMIT_BUY, headers=headers)
    assert denied.json()["rule"] == "kill_switch"
    first.stop()
    second = Served(serve_process(home, "--port", "0"))
    served.append(second)
    again = httpx.post(f"{second.url}/bn/api/v3/order", data=LIMIT_BUY, headers=headers)
    assert again.status_code == 403 and again.json()["rule"] == "kill_switch"
    cancel = httpx.delete(
        f"{second.url}/bn/api/v3/openOrders", params={"symbol": "BTCUSDT"}, headers=headers
    )
    assert cancel.json().get("rule") != "kill_switch"
    assert exchange.requests_to("/api/v3/order", "POST") == []


def test_a_remote_bind_needs_tls(tmp_path: Path, emulator: StartEmulator) -> None:
    exchange = emulator("binance")
    home, _ = _home(tmp_path, exchange.url)
    process = serve_process(home, "--host", "0.0.0.0", "--port", "0")  # noqa: S104
    out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "--tls-cert" in err and "--insecure-plaintext-remote" in err
    assert out == ""
    half = serve_process(home, "--port", "0", "--tls-cert", str(tmp_path / "cert.pem"))
    _, err = half.communicate(timeout=30)
    assert half.returncode == 1 and "together" in err


def test_insecure_plaintext_remote_warns_at_every_start(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(
        serve_process(home, "--host", "0.0.0.0", "--port", "0", "--insecure-plaintext-remote")  # noqa: S104
    )
    served.append(gateway)
    port = gateway.url.rsplit(":", 1)[1]
    response = httpx.get(
        f"http://127.0.0.1:{port}/bn/api/v3/time", headers={"X-Keybroker-Token": token}
    )
    assert response.status_code == 200
    err = gateway.stop()
    assert "warning: --insecure-plaintext-remote" in err


def test_a_wrong_passphrase_fails_before_listening(tmp_path: Path, emulator: StartEmulator) -> None:
    exchange = emulator("binance")
    home, _ = _home(tmp_path, exchange.url)
    process = serve_process(
        home, "--port", "0", env={"KEYBROKER_PASSPHRASE": "not the passphrase, sorry"}
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "wrong passphrase" in err
    assert out == "" and not (home / "gateway.sock").exists()


def test_hardening_never_crashes_and_says_what_held() -> None:
    code = (
        "from keybroker.gateway.hardening import harden, PR_GET_DUMPABLE, _libc\n"
        "for step in harden(): print(step.line())\n"
        "print('dumpable', _libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    lines = done.stdout.splitlines()
    assert lines[0] == "core dumps off: held"
    assert lines[1] == "not dumpable: held"
    assert lines[2].startswith("memory locked: ")
    assert lines[3].startswith("secret memory (memfd_secret): ")
    assert lines[4] == "dumpable 0"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 and its key (test material only)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keybroker test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_a_remote_bind_with_tls_serves_https_and_keeps_the_socket_plain(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    cert, key = _self_signed(tmp_path)
    gateway = Served(
        serve_process(
            home,
            "--host",
            "0.0.0.0",  # noqa: S104
            "--port",
            "0",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        )
    )
    served.append(gateway)
    port = gateway.url.rsplit(":", 1)[1]
    assert gateway.url.startswith("https://")
    headers = {"X-Keybroker-Token": token}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as client:
        response = client.get(f"https://127.0.0.1:{port}/bn/api/v3/account", headers=headers)
        assert response.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/_/health", timeout=5)  # no plaintext on TCP
    transport = httpx.HTTPTransport(uds=gateway.uds)
    with httpx.Client(transport=transport, base_url="http://localhost") as client:
        assert client.get("/bn/api/v3/account", headers=headers).status_code == 200
    err = gateway.stop()
    assert "insecure" not in err


def test_a_missing_or_mismatched_tls_file_is_one_line_before_anything_listens(
    tmp_path: Path, emulator: StartEmulator
) -> None:
    exchange = emulator("binance")
    home, _ = _home(tmp_path, exchange.url)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    cert, _ = _self_signed(tmp_path / "one")
    _, other_key = _self_signed(tmp_path / "two")
    for cert_file, key_file, says in (
        (tmp_path / "missing.pem", other_key, "--tls-cert"),
        (cert, other_key, "KEY_VALUES_MISMATCH"),
    ):
        process = serve_process(
            home, "--port", "0", "--tls-cert", str(cert_file), "--tls-key", str(key_file)
        )
        out, err = process.communicate(timeout=30)
        assert process.returncode == 1, err
        assert says in err and "unexpected" not in err
        assert out == ""
        assert not (home / "gateway.json").exists()  # doctor never sees a gateway that never ran
        assert not (home / "gateway.sock").exists()


def test_public_cache_ms_lets_pollers_share_one_upstream_request(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(serve_process(home, "--port", "0", "--public-cache-ms", "5000"))
    served.append(gateway)
    headers = {"X-Keybroker-Token": token}
    ticker = f"{gateway.url}/bn/api/v3/ticker/24hr?symbol=BTCUSDT"
    answers = [httpx.get(ticker, headers=headers) for _ in range(5)]  # one after another
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    assert len(exchange.requests_to("/api/v3/ticker/24hr")) == 1
    # The first answer came from the exchange; the others say how old they are.
    assert "x-keybroker-cache-age-ms" not in answers[0].headers
    ages = [int(answer.headers["x-keybroker-cache-age-ms"]) for answer in answers[1:]]
    assert ages == sorted(ages) and ages[0] >= 0 and ages[-1] < 5000
    for answer, age in zip(answers[1:], ages, strict=True):
        assert answer.headers["age"] == str(age // 1000)


@pytest.mark.slow
def test_on_defaults_45_pollers_of_one_ticker_cost_at_most_one_request_a_second(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    """The issue's target, with no flag given: 45 bots, each polling once a second."""
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(serve_process(home, "--port", "0"))
    served.append(gateway)
    ticker = f"{gateway.url}/bn/api/v3/ticker/price?symbol=BTCUSDT"
    rounds, bots = 3, 45
    statuses: list[int] = []

    def bot(index: int) -> None:
        with httpx.Client(headers={"X-Keybroker-Token": token}, timeout=10) as client:
            time.sleep(index / bots)  # bots poll out of phase, spread over the second
            for _ in range(rounds):
                started = time.monotonic()
                statuses.append(client.get(ticker).status_code)
                time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(bots) as pool:
        list(pool.map(bot, range(bots)))
    seconds = time.monotonic() - began
    assert statuses == [200] * (rounds * bots)
    upstream = len(exchange.requests_to("/api/v3/ticker/price"))
    # One request per started second of polling at most; and the cache does expire.
    assert 2 <= upstream <= int(seconds) + 1, (upstream, seconds)


def test_error_answers_are_never_kept(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(serve_process(home, "--port", "0"))  # default cache: 1000 ms
    served.append(gateway)
    headers = {"X-Keybroker-Token": token}
    unknown = f"{gateway.url}/bn/api/v3/ticker/price?symbol=NOSUCHPAIR"
    answers = [httpx.get(unknown, headers=headers) for _ in range(3)]
    assert {answer.status_code for answer in answers} == {400}
    assert all("age" not in answer.headers for answer in answers)
    assert len(exchange.requests_to("/api/v3/ticker/price")) == 3
    # A signed read is never kept either, however quickly it is repeated.
    for _ in range(3):
        assert httpx.get(f"{gateway.url}/bn/api/v3/account", headers=headers).status_code == 200
    assert len(exchange.requests_to("/api/v3/account")) == 3


def test_public_cache_ms_0_sends_each_sequential_poll_upstream(
    tmp_path: Path, emulator: StartEmulator, served: list[Served]
) -> None:
    exchange = emulator("binance")
    home, token = _home(tmp_path, exchange.url)
    gateway = Served(serve_process(home, "--port", "0", "--public-cache-ms", "0"))
    served.append(gateway)
    headers = {"X-Keybroker-Token": token}
    ticker = f"{gateway.url}/bn/api/v3/ticker/24hr?symbol=BTCUSDT"
    for _ in range(3):
        assert httpx.get(ticker, headers=headers).status_code == 200
    assert len(exchange.requests_to("/api/v3/ticker/24hr")) == 3
