"""OKX's hand-built header list equals what the generic replace_headers helper gives."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker import Credential, Secret
from keybroker.crypto.signing import hmac_sha256_b64
from keybroker.exchanges import okx
from keybroker.exchanges._wire import replace_headers

HEADER_NAMES = st.sampled_from(
    ["Content-Type", "OK-ACCESS-SIGN", "ok-access-key", "X-Trace", "x-simulated-trading", "Accept"]
)


def reference_sign(request: httpx.Request, credential: Credential, now_ms: int) -> httpx.Request:
    # The signer as first written: generic helper, nothing hand-built.
    assert credential.passphrase is not None
    stamp = okx.timestamp(now_ms)
    signature = hmac_sha256_b64(credential.secret.reveal(), okx.prehash(request, stamp))
    headers = {
        okx.HEADER_KEY: credential.api_key,
        okx.HEADER_SIGN: signature,
        okx.HEADER_TIMESTAMP: stamp,
        okx.HEADER_PASSPHRASE: credential.passphrase.reveal_text(),
    }
    if request.method.upper() != "GET":
        headers["Content-Type"] = request.headers.get("Content-Type", "application/json")
    remove: tuple[str, ...] = ()
    if credential.environment == "testnet":
        headers[okx.HEADER_DEMO] = "1"
    else:
        remove = (okx.HEADER_DEMO,)
    return replace_headers(request, headers, remove=remove)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST"]),
    extra=st.lists(st.tuples(HEADER_NAMES, st.text("abc/;=1", min_size=1, max_size=8)), max_size=4),
    environment=st.sampled_from(["testnet", "production"]),
    body=st.binary(max_size=40),
)
def test_fast_path_matches_the_generic_helper(
    method: str, extra: list[tuple[str, str]], environment: str, body: bytes
) -> None:
    credential = Credential(
        "o",
        "okx",
        "FAKE-okx-key-0001",
        Secret("FAKE-okx-secret-0001"),
        Secret("FAKE-pass-0001"),
        environment=environment,  # type: ignore[arg-type]
    )
    content = body if method == "POST" else None
    request = httpx.Request(
        method, "https://www.okx.com/api/v5/trade/order?x=%2C1", headers=extra, content=content
    )
    fast = okx.sign(request, credential, 1_700_000_000_123, None)
    slow = reference_sign(request, credential, 1_700_000_000_123)
    assert fast.headers.raw == slow.headers.raw
    assert fast.url.raw_path == slow.url.raw_path
    assert fast.read() == slow.read()


def test_requires_a_passphrase() -> None:
    credential = Credential("o", "okx", "FAKE-okx-key-0001", Secret("FAKE-okx-secret-0001"))
    with pytest.raises(Exception, match="passphrase"):
        okx.sign(httpx.Request("GET", "https://www.okx.com/api/v5/x"), credential, 1, None)
