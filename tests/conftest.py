"""Shared fixtures: every test runs with a clean keybroker environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# A real redis-server on a free loopback port (Debian's package): fixtures redis_server,
# redis_clean and start_redis.
pytest_plugins = ["redis_server"]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test may see the developer's real keybroker home, passphrase or exchange keys."""
    for name in list(os.environ):
        if name.startswith("KEYBROKER_") or name.endswith(
            ("_API_KEY", "_API_SECRET", "_PASSPHRASE", "_PRIVATE_KEY_PATH")
        ):
            monkeypatch.delenv(name, raising=False)
    yield
