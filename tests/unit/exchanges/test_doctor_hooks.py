"""What each exchange module gives ``keybroker doctor``: its clock query and its key shapes."""

from __future__ import annotations

import pytest

from keybroker.errors import InvalidInput
from keybroker.exchanges import PROFILES, get_profile


@pytest.mark.parametrize(
    ("exchange", "body", "expected_url"),
    [
        ("binance", b'{"serverTime": 1499827319559}', "https://testnet.binance.vision/api/v3/time"),
        ("okx", b'{"code":"0","msg":"","data":[{"ts":"1499827319559"}]}',
         "https://openapi.okx.com/api/v5/public/time"),
    ],
)  # fmt: skip
def test_server_time(exchange: str, body: bytes, expected_url: str) -> None:
    profile = get_profile(exchange)
    assert profile.time_request is not None and profile.parse_server_time is not None
    assert str(profile.time_request("testnet").url) == expected_url
    assert profile.parse_server_time(body) == 1499827319559
    for bad in (b"", b"[]", b'{"serverTime": "soon"}', b'{"data": []}', b"\xff"):
        with pytest.raises(InvalidInput):
            profile.parse_server_time(bad)


def test_the_issues_exchanges_declare_key_shapes() -> None:
    for name in ("binance", "okx", "kraken", "coinbase"):
        assert PROFILES[name].key_patterns, name
    names = {p.name for profile in PROFILES.values() for p in profile.key_patterns}
    assert {"binance api key or secret", "okx passphrase", "kraken private key",
            "coinbase cdp key name", "private key (pem)"} <= names  # fmt: skip


def test_context_bound_shapes_need_their_word() -> None:
    [okx_key, _, _] = get_profile("okx").key_patterns
    uuid = "0c4e9f2b-1a2b-4c3d-9e8f-0123456789ab"
    assert okx_key.find(f"trace_id = '{uuid}'") == []
    assert okx_key.find(f"OKX_API_KEY={uuid}") == [uuid]
