"""A real redis-server for tests (Debian's package) on a free loopback port, started and stopped.

    >>> server = RedisServer.start(tmp_path, password="test-redis-password-not-real")
    >>> server.url          # redis://:…@127.0.0.1:PORT/0
    >>> server.kill(); server.restart()   # same port, empty (no persistence)

Fixtures (registered by tests/conftest.py): ``redis_server`` (one per
session, flushed before each test) and ``start_redis`` (fresh servers a test
may kill; each stopped after the test). ``tls_files`` makes a throwaway CA
and a server certificate for 127.0.0.1 at test time.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from debian_packages import require_program

PASSWORD = "test-redis-password-not-real"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; ``url`` for keybroker, ``client()`` for assertions."""

    def __init__(
        self, directory: Path, port: int, password: str | None, tls: TlsFiles | None
    ) -> None:
        self.program = require_program("redis-server", package="redis-server")
        self.directory = directory
        self.port = port
        self.password = password
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls, directory: Path, *, password: str | None = None, tls: TlsFiles | None = None
    ) -> RedisServer:
        directory.mkdir(parents=True, exist_ok=True)
        server = cls(directory, _free_port(), password, tls)
        server.restart()
        return server

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"

    def client(self) -> redis.Redis:
        options: dict[str, object] = {"socket_timeout": 5}
        if self.tls is not None:
            options.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            **options,  # type: ignore[arg-type]
        )

    def restart(self) -> None:
        """Start (again) on the same port, with no data: no RDB, no AOF."""
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        args = [
            self.program,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"redis-server did not start: {error[-500:]}")
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within 15 s")

    def kill(self) -> None:
        """SIGKILL: the store vanishes mid-run, as a crash would make it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it (test material)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keybroker test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "redis.crt", directory / "redis.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    files.key.chmod(0o600)
    return files


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One password-protected redis-server for the session; flushed by ``redis_clean``."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis"), password=PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def redis_clean(redis_server: RedisServer) -> RedisServer:
    """The session's server, emptied for this test."""
    with redis_server.client() as client:
        client.flushall()
    return redis_server


StartRedis = Callable[..., RedisServer]


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[StartRedis]:
    """start_redis(password=None, tls=None): a server of this test's own (it may kill it)."""
    started: list[RedisServer] = []

    def start(*, password: str | None = None, tls: TlsFiles | None = None) -> RedisServer:
        server = RedisServer.start(tmp_path / f"redis{len(started)}", password=password, tls=tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
