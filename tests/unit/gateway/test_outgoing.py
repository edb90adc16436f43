"""``request_for`` builds exactly what the public httpx constructors build, or refuses alike."""

from __future__ import annotations

import itertools
import random

import httpx
import pytest

from keybroker.errors import InvalidInput
from keybroker.gateway import outgoing
from keybroker.gateway.outgoing import request_for

BASES = [
    "https://api.binance.com",
    "https://api.binance.com/",
    "http://127.0.0.1:8080",
    "https://api.coinbase.com/api/v3/brokerage",
    "https://www.okx.com/",
]
PATHS = [
    "/api/v3/order",
    "/API/v3/ORDER",
    "/sapi/v1/capital/withdraw/apply",
    "/sapi%2Fv1/capital/withdraw/apply",
    "/sapi/v1/capital/withdraw/apply/",
    "//sapi/v1/capital//withdraw/apply",
    "/sapi/./v1/capital/withdraw/apply",
    "/api/../sapi/v1/capital/withdraw/apply",
    "/sapi/v1/capital/withdraw/%2e%2e/apply",
    "/sapi/v1/capital/withdraw/%2E/apply",
    "/api/v3/order/.",
    "/api/v3/order/..",
    "/api/v3/order%ff",
    "/api/v3/ordér",
    "/api/v3/order\udcff",  # a raw byte >= 0x80, as the gateway decodes it
    "/api/v3/order%",
    "/api/v3/order%zz",
    "/api/v3/order with space",
    "/api/v3/order#fragment",
    "/api/v3/[order]",
    "/api/v3/order|x^y`z{w}",
    '/api/v3/"order"<x>',
    "/api/v3\\order",
    "/api/v5/trade/order",
    "/v2/auth/w/order/submit",
    "/api/v3/order;jsessionid=1",
    "/api/v3/ord:er@x",
    "/",
    "",
    "api/v3/order",
]
QUERIES = [
    "",
    "symbol=BTCUSDT&side=BUY",
    "symbol=BTCUSDT&symbol=ETHUSDT",
    "a=%C3%BC&b=/:@!$'()*+,;=?&c=%2F",
    "a=b c",
    "a=ü",
    "a=\udcfe",
    "a=%",
    "a=[1]&b={2}|^`",
    "a=b#frag",
    'a="x"<y>',
]
HEADERS = [
    [],
    [("content-type", "application/x-www-form-urlencoded")],
    [("X-MBX-APIKEY", "placeholder"), ("Accept", "*/*"), ("accept", "text/plain")],
    [("host", "api.binance.com")],
    [("Content-Length", "3")],
    [("transfer-encoding", "chunked")],
    [("x-odd", "caf\u00e9")],
]
BODIES = [b"", b"symbol=BTCUSDT&side=BUY", b'{"instId":"BTC-USDT"}']
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH"]


def outcome(
    build: object, method: str, base: str, path: str, query: str, headers: list, body: bytes
) -> tuple[object, ...]:
    try:
        request = build(method, base, path, query, headers, body)  # type: ignore[operator]
    except Exception as exc:  # the same refusal either way
        return ("raised", type(exc).__name__)
    return (
        request.method,
        request.url,
        str(request.url),
        request.url.raw_path,
        request.url.netloc,
        request.headers._list,
        request.headers.raw,
        request.content,
        b"".join(request.stream),
        request.extensions,
        type(request.stream),
    )


def check(method: str, base: str, path: str, query: str, headers: list, body: bytes) -> None:
    fast = outcome(request_for, method, base, path, query, headers, body)
    public = outcome(outgoing._public, method, base, path, query, headers, body)
    assert fast == public, (method, base, path, query, headers, body)


@pytest.mark.parametrize("path", PATHS)
def test_every_spelling_of_a_path_gives_the_same_request(path: str) -> None:
    for base, query, method in itertools.product(BASES, QUERIES, METHODS):
        check(method, base, path, query, [("accept", "*/*")], b"x=1")


@pytest.mark.parametrize("headers", HEADERS)
def test_headers_and_bodies_give_the_same_request(headers: list) -> None:
    for method, body, query in itertools.product(METHODS, BODIES, QUERIES[:3]):
        check(method, "https://api.binance.com", "/api/v3/order", query, headers, body)


def test_random_paths_and_queries_give_the_same_request() -> None:
    rng = random.Random(20261123)
    alphabet = "aZ09-._~!$&'()*+,;=:@/?%#[]|^`{}\"<> \\é\x7f" + "%2e%2E%2f%41%zz"
    for _ in range(3000):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        check(rng.choice(METHODS), rng.choice(BASES), path, query, [], b"")


def test_the_plain_path_is_the_fast_one() -> None:
    """The common request really skips the public constructors (else nothing was gained)."""
    calls = []
    original = outgoing._public
    try:
        outgoing._public = lambda *a: calls.append(a) or original(*a)  # type: ignore[assignment]
        request_for("POST", "https://api.binance.com", "/api/v3/order", "", [], b"a=1")
        assert calls == []
        request_for("POST", "https://api.binance.com", "/api/../v3/order", "", [], b"a=1")
        assert len(calls) == 1
    finally:
        outgoing._public = original  # type: ignore[assignment]


def test_an_invalid_url_is_refused_as_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not a valid URL"):
        request_for("GET", "https://api.binance.com", "/a" * 40_000, "", [], b"")


def test_a_request_built_fast_sends_like_any_other() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.headers.raw, request.content))
        return httpx.Response(200)

    request = request_for("POST", "https://api.binance.com", "/api/v3/order", "a=1", [], b"b=2")
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        assert client.send(request).status_code == 200
    assert seen == [
        (
            "POST",
            "https://api.binance.com/api/v3/order?a=1",
            [(b"Host", b"api.binance.com"), (b"Content-Length", b"3")],
            b"b=2",
        )
    ]
