"""_wire's fast request builders give exactly what httpx's public constructors give."""

from __future__ import annotations

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from keybroker.exchanges._wire import (
    HTTPX_INTERNALS_MATCH,
    build_request,
    header_triples,
    replace_headers,
    replace_headers_fast,
    with_body,
    with_query,
)

URL = "https://api.example.com/v1/order"


def wire(request: httpx.Request) -> tuple[object, ...]:
    return (
        request.method,
        str(request.url),
        request.url.raw_path,
        request.headers.raw,
        request.read(),
        b"".join(request.stream),  # type: ignore[arg-type]
        request.extensions,
        sorted(vars(request)),
    )


def test_the_installed_httpx_takes_the_fast_path() -> None:
    assert HTTPX_INTERNALS_MATCH


_QUERY_PIECE = st.sampled_from(
    [*"abcXYZ019-._~!$'()*+,;=:@/?", "%2F", "%C3%A9", "%25", "%41", "&", "="]
)


@settings(max_examples=200, deadline=None)
@given(query=st.lists(_QUERY_PIECE, max_size=30).map("".join))
def test_with_query_equals_url_copy_with(query: str) -> None:
    url = httpx.URL(f"{URL}?old=1")
    fast = with_query(url, query.encode("ascii"))
    public = url.copy_with(query=query.encode("ascii") or None)
    assert fast == public
    assert (fast.raw_path, fast.query, str(fast)) == (public.raw_path, public.query, str(public))


def test_build_request_equals_the_public_constructor() -> None:
    original = httpx.Request(
        "POST",
        f"{URL}?a=1",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Extra": "1"},
        content=b"k=v",
        extensions={"timeout": {"connect": 1.0}},
    )
    fast = build_request("POST", original.url, header_triples(original.headers), b"k=v", {"x": 1})
    public = httpx.Request(
        "POST",
        original.url,
        headers=original.headers.raw,
        stream=httpx.ByteStream(b"k=v"),
        extensions={"x": 1},
    )
    public.read()
    assert wire(fast) == wire(public)


_HEADER_NAME = st.sampled_from(["X-A", "x-a", "X-B", "Content-Type", "OK-ACCESS-SIGN", "X-C"])


@settings(max_examples=200, deadline=None)
@given(
    existing=st.lists(st.tuples(_HEADER_NAME, st.text("abc ", max_size=4)), max_size=5),
    new=st.dictionaries(_HEADER_NAME, st.text("xyz", max_size=4), max_size=3),
    remove=st.lists(_HEADER_NAME, max_size=2),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    body=st.binary(max_size=8),
)
def test_replace_headers_fast_equals_replace_headers(
    existing: list[tuple[str, str]],
    new: dict[str, str],
    remove: list[str],
    method: str,
    body: bytes,
) -> None:
    request = httpx.Request(method, f"{URL}?q=%20x", headers=existing, content=body)
    fast = replace_headers_fast(request, new, remove=remove)
    public = replace_headers(request, new, remove=remove)
    assert wire(fast) == wire(public)
    assert wire(replace_headers_fast(fast, new, remove=remove)) == wire(fast)


def _public_with_body(request: httpx.Request, body: bytes) -> httpx.Request:
    """What ``with_body`` built before it was fast: the public constructor."""
    headers = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in ("content-length", "transfer-encoding")
    ]
    return httpx.Request(request.method, request.url, headers=headers, content=body)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    old_body=st.sampled_from([b"", b"a=1", b'{"x":1}']),
    new_body=st.sampled_from([b"", b"a=1&newClientOrderId=kb1", b'{"cid":1,"x":1}']),
    extra=st.lists(
        st.sampled_from(
            [
                ("Content-Type", "application/json"),
                ("host", "other.example.com"),
                ("Transfer-Encoding", "chunked"),
                ("X-MBX-APIKEY", "placeholder"),
                ("accept", "*/*"),
            ]
        ),
        max_size=4,
    ),
)
def test_with_body_equals_the_public_constructor(
    method: str, old_body: bytes, new_body: bytes, extra: list[tuple[str, str]]
) -> None:
    request = httpx.Request(method, f"{URL}?a=1", headers=extra, content=old_body)
    assert wire(with_body(request, new_body)) == wire(_public_with_body(request, new_body))
