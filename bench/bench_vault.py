"""Vault numbers next to seed 001's scheme: run ``python bench/bench_vault.py`` (< 2 minutes).

Prints one table:

* unlock time at the default calibrated Argon2id parameters, and seed 001's
  Fernet + PBKDF2-SHA256 (100,000 iterations) measured in the same run, with
  the memory each passphrase guess costs an attacker;
* ``vault.credential(name)`` after unlock (median and p99, target median < 50 µs);
* adding 1,000 credentials, each its own durable transaction (target < 5 s);
* the file size with 10,000 credentials.

Every secret here is fake and the vault lives in a temporary directory.
"""

from __future__ import annotations

import base64
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from keybroker.crypto.kdf import Argon2idParams
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial, Vault

PASSPHRASE = "benchmark passphrase, not a real one"
PBKDF2_ITERATIONS = 100_000  # seed 001: "PBKDF2 with a random salt and 100,000 iterations"


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fernet_pbkdf2_unlock(salt: bytes, token: bytes) -> bytes:
    """Seed 001's unlock: derive a Fernet key from the password, decrypt one stored key."""
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=PBKDF2_ITERATIONS)
    key = base64.urlsafe_b64encode(kdf.derive(PASSPHRASE.encode()))
    return Fernet(key).decrypt(token)


def material(n: int) -> KeyMaterial:
    return KeyMaterial(f"FAKE-BENCH-KEY-{n:06d}", Secret(f"FAKE-BENCH-SECRET-{n:06d}-" + "x" * 40))


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "home" / "vault.db"

        # -- unlock: keybroker at its defaults, seed 001 beside it ------------------
        started = time.perf_counter()
        params = Argon2idParams.calibrate()
        calibration = time.perf_counter() - started
        Vault.create(path, Secret(PASSPHRASE), kdf=params).close()

        def unlock() -> None:
            with Vault.open(path) as vault:
                vault.unlock(Secret(PASSPHRASE))

        argon_unlock = median_seconds(unlock, repeat=5)
        salt = os.urandom(16)
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=100_000)
        token = Fernet(base64.urlsafe_b64encode(kdf.derive(PASSPHRASE.encode()))).encrypt(
            b"FAKE-SECRET"
        )
        pbkdf2_unlock = median_seconds(lambda: fernet_pbkdf2_unlock(salt, token), repeat=5)
        rows += [
            (
                f"unlock, Argon2id {params.memory_kib // 1024} MiB × {params.iterations} passes "
                f"× {params.lanes} lanes",
                f"{argon_unlock:.3f} s",
                f"seed 001 Fernet+PBKDF2-SHA256 100k: {pbkdf2_unlock:.3f} s",
            ),
            (
                "memory per passphrase guess",
                f"{params.memory_kib // 1024} MiB",
                "PBKDF2: ~0.2 KiB (one SHA-256 state; GPUs run thousands at once)",
            ),
            ("(calibrating the defaults took)", f"{calibration:.2f} s", ""),
        ]

        with Vault.open(path) as vault:
            vault.unlock(Secret(PASSPHRASE))

            # -- adding 1,000 credentials, each durable ------------------------------
            started = time.perf_counter()
            for n in range(1000):
                vault.add(f"bench-{n:05d}", "binance", material(n))
            add_1000 = time.perf_counter() - started
            rows.append(
                (
                    "add 1,000 credentials (one fsync'd transaction each)",
                    f"{add_1000:.2f} s",
                    f"target < 5 s; {add_1000:.2f} ms each",
                )
            )

            # -- lookup after unlock ---------------------------------------------------
            name = "bench-00500"
            vault.credential(name)  # the first use decrypts; later ones check the row
            lookups = []
            for _ in range(20_000):
                start = time.perf_counter_ns()
                vault.credential(name)
                lookups.append(time.perf_counter_ns() - start)
            lookups.sort()
            median_us = statistics.median(lookups) / 1000
            p99_us = lookups[int(len(lookups) * 0.99)] / 1000
            # The first use of each name after unlock decrypts and authenticates it.
            with Vault.open(path) as fresh:
                fresh.unlock(Secret(PASSPHRASE))
                first_uses = []
                for n in range(500):
                    start = time.perf_counter_ns()
                    fresh.credential(f"bench-{n:05d}")
                    first_uses.append(time.perf_counter_ns() - start)
            first_us = statistics.median(first_uses) / 1000
            rows += [
                (
                    "credential(name) after unlock, median / p99",
                    f"{median_us:.1f} / {p99_us:.1f} µs",
                    "target median < 50 µs (row re-read and compared on every call)",
                ),
                (
                    "credential(name), first use of a name (decrypts)",
                    f"{first_us:.1f} µs",
                    "median over 500 names",
                ),
            ]

            # -- file size with 10,000 records ---------------------------------------
            started = time.perf_counter()
            for n in range(1000, 10_000):
                vault.add(f"bench-{n:05d}", "binance", material(n))
            add_9000 = time.perf_counter() - started
        size = path.stat().st_size  # closed: the WAL is folded into the file
        rows.append(
            (
                "file size with 10,000 credentials",
                f"{size / 2**20:.1f} MiB",
                f"{size / 10_000:.0f} bytes each (9,000 more durable adds: {add_9000:.1f} s)",
            )
        )

    print(
        f"keybroker vault benchmark — Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs"
    )
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    for label, value, comment in rows:
        print(f"  {label:<{width}}  {value:>{value_width}}  {comment}")


if __name__ == "__main__":
    main()
