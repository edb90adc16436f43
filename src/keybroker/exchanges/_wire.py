"""Exchange-neutral helpers for rebuilding requests without touching the bytes that were signed.

    >>> signed = replace_headers(request, {"signature": "..."}, remove=("x-old-signature",))
    >>> signed.url.raw_path == request.url.raw_path and signed.read() == request.read()
    True

Signers change only what authentication needs (headers, or a parameter) and
keep everything else byte for byte: the exchange verifies the signature over
the bytes it receives, so re-encoding a query or re-serialising a body after
signing would break it. Add functions here; do not change existing ones, other
exchange modules rely on their exact behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import httpx

from keybroker.errors import InvalidInput

# RFC 3986 section 2.3: the only characters that never need encoding.
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def quote_rfc3986(value: str) -> str:
    """Percent-encode UTF-8 ``value``, leaving only the RFC 3986 unreserved characters.

    Space becomes ``%20`` (never ``+``) and ``/`` is encoded, unlike
    ``urllib.parse.quote``'s default.
    """
    return quote(value, safe="-_.~")


def replace_headers(
    request: httpx.Request,
    headers: Mapping[str, str],
    *,
    remove: Iterable[str] = (),
) -> httpx.Request:
    """A copy of ``request`` with ``headers`` set, and ``remove`` plus any old copies of them gone.

    Method, URL (raw path and query bytes) and body bytes are kept exactly.
    Every existing header whose name (case-insensitive) is in ``headers`` or
    ``remove`` is dropped, duplicates included, so a request cannot smuggle a
    second copy of an auth header past the signer; the new headers go last, in
    the order given, so signing twice yields the same bytes.
    """
    dropped = {name.lower() for name in headers} | {name.lower() for name in remove}
    kept = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in dropped
    ]
    kept.extend(headers.items())
    body = request.read()
    return httpx.Request(request.method, request.url, headers=kept, content=body)


def replace_body(
    request: httpx.Request,
    body: bytes,
    headers: Mapping[str, str],
    *,
    remove: Iterable[str] = (),
) -> httpx.Request:
    """A copy of ``request`` with a new body and ``headers`` set as ``replace_headers`` sets them.

    For signers whose auth field lives in the body (a nonce parameter). The
    method and URL (raw path and query bytes) are kept exactly. Content-Length
    and Transfer-Encoding are dropped and recomputed from the new body: httpx
    keeps a Content-Length it is handed, so a stale one would announce the old
    body's length.
    """
    dropped = (
        {name.lower() for name in headers}
        | {name.lower() for name in remove}
        | {"content-length", "transfer-encoding"}
    )
    kept = [
        (name, value)
        for name, value in request.headers.multi_items()
        if name.lower() not in dropped
    ]
    kept.extend(headers.items())
    return httpx.Request(request.method, request.url, headers=kept, content=body)


def load_json(body: bytes) -> Any:
    """Parse a JSON body as a policy must read it: numbers as Decimal, duplicate keys refused.

    A key given twice would let a request say one thing to keybroker and
    another to an exchange whose parser keeps the other copy, so duplicates
    (at any depth) raise InvalidInput, as do invalid UTF-8, invalid JSON and
    NaN/Infinity. Messages name the problem, never the body.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("request body is not UTF-8") from None
    try:
        return json.loads(
            text,
            parse_float=_json_fraction,
            parse_int=Decimal,
            parse_constant=_refuse_json_constant,
            object_pairs_hook=_refuse_duplicate_keys,
        )
    except json.JSONDecodeError:
        raise InvalidInput("request body is not valid JSON") from None


class ScientificDecimal(Decimal):
    """A JSON number that was written with an exponent (``1e3``, ``2.5E-4``).

    It is a Decimal like any other for every caller of ``load_json``; only
    ``base.parse_amount`` tells it apart, because an order amount must be
    written plainly (an exchange's own reader may stop at the ``e``).
    """

    __slots__ = ()


def json_object(text: str, *, exact: bool = True) -> dict[str, Any] | None:
    """A WebSocket frame's JSON object, or None for anything else (not JSON, not an object).

    ``exact`` reads fractions as Decimal (amounts in order frames); without it
    floats are fine, for the per-frame checks on market data, which only look
    at keys and are on the relay's hot path.
    """
    try:
        frame = json.loads(text, parse_float=Decimal) if exact else json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def _json_fraction(text: str) -> Decimal:
    # json hands over the number exactly as written; keep whether it had an exponent.
    if "e" in text or "E" in text:
        return ScientificDecimal(text)
    return Decimal(text)


def _refuse_json_constant(name: str) -> Any:
    raise InvalidInput("request body holds NaN or Infinity")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput("request body repeats a JSON key")
        result[key] = value
    return result


# -- fast rebuilding (the signers' hot path) -------------------------------------
# httpx.Request(..., content=...) re-parses the URL and re-normalises every
# header: several times the cost of the HMAC it wraps. The functions below
# build the same objects from parts already in httpx's own form. They rely on
# httpx internals (URL._uri_reference, Headers._list, Request._content), so
# HTTPX_INTERNALS_MATCH checks once, at import, that they give exactly what
# the public constructors give; if an httpx release changes, they fall back
# to the public constructors.

HeaderTriple = tuple[bytes, bytes, bytes]
"""(name as sent, lower-cased name, value): httpx's own form of one header."""


def header_triples(headers: httpx.Headers) -> list[HeaderTriple]:
    """A new list of ``headers`` as (name, lower-cased name, value) byte triples, in order."""
    if HTTPX_INTERNALS_MATCH:
        return list(headers._list)
    return [(name, name.lower(), value) for name, value in headers.raw]  # pragma: no cover


def with_query(url: httpx.URL, query: bytes) -> httpx.URL:
    """``url`` with its query replaced by ``query``, which must already be percent-encoded.

    Only bytes RFC 3986 allows raw in a query and valid ``%XX`` escapes: that
    is the form httpx's parser produces, so swapping it into the parsed URL
    gives what ``url.copy_with(query=query)`` gives, without re-parsing.
    """
    if not HTTPX_INTERNALS_MATCH:  # pragma: no cover - only on an httpx that changed
        return url.copy_with(query=query or None)
    new = httpx.URL.__new__(httpx.URL)
    new._uri_reference = url._uri_reference._replace(query=query.decode("ascii") or None)
    return new


def build_request(
    method: str,
    url: httpx.URL,
    headers: list[HeaderTriple],
    body: bytes,
    extensions: Mapping[str, Any] | None = None,
    *,
    like: httpx.Request | None = None,
) -> httpx.Request:
    """The request ``httpx.Request(method, url, headers=..., stream=ByteStream(body))`` and
    ``read()`` give, built directly.

    ``headers`` are sent exactly as given (Host and Content-Length included:
    nothing is added), and the list is owned by the new request afterwards.
    ``like``: a request read into memory whose body is ``body``; its stream
    (immutable bytes) is shared rather than built again.
    """
    if not HTTPX_INTERNALS_MATCH:  # pragma: no cover - only on an httpx that changed
        public = httpx.Request(
            method,
            url,
            headers=[(name, value) for name, _, value in headers],
            stream=httpx.ByteStream(body),
            extensions=extensions,
        )
        public.read()
        return public
    built_headers = httpx.Headers.__new__(httpx.Headers)
    built_headers._list = headers
    built_headers._encoding = None
    request = httpx.Request.__new__(httpx.Request)
    request.method = method
    request.url = url
    request.headers = built_headers
    request.extensions = dict(extensions) if extensions else {}
    shared = like.stream if like is not None and getattr(like, "_content", None) is body else None
    request.stream = shared if type(shared) is httpx.ByteStream else httpx.ByteStream(body)
    request._content = body
    return request


def replace_headers_fast(
    request: httpx.Request,
    headers: Mapping[str, str],
    *,
    remove: Iterable[str] = (),
) -> httpx.Request:
    """``replace_headers``, with the same result byte for byte, built without re-parsing.

    For signers on the hot path; a unit test holds the two equal. As there,
    kept headers go out with lower-cased names.
    """
    dropped = {_name_bytes(name)[1] for name in headers} | {_name_bytes(name)[1] for name in remove}
    triples = [
        (lower, lower, value)
        for _, lower, value in header_triples(request.headers)
        if lower not in dropped
    ]
    for name, value in headers.items():
        raw_name, lower_name = _name_bytes(name)
        triples.append((raw_name, lower_name, value.encode("utf-8")))
    return build_request(request.method, request.url, triples, request.read(), request.extensions)


@lru_cache(maxsize=256)
def _name_bytes(name: str) -> tuple[bytes, bytes]:
    # Signers use a handful of fixed header names; encode each once.
    raw = name.encode("ascii")
    return raw, raw.lower()


def _httpx_internals_match() -> bool:
    try:
        query = b"a=%C3%BC&b=/:@!$'()*+,;=?&c=%2F"
        url = httpx.URL("https://api.example.com/v1/order?x=1")
        public = httpx.Request(
            "POST",
            url.copy_with(query=query),
            headers=[(b"Host", b"api.example.com"), (b"X-Test", b"1")],
            stream=httpx.ByteStream(b"k=v"),
        )
        public.read()
        new_url = httpx.URL.__new__(httpx.URL)
        new_url._uri_reference = url._uri_reference._replace(query=query.decode("ascii"))
        fast = httpx.Request.__new__(httpx.Request)
        fast.method = "POST"
        fast.url = new_url
        fast.headers = httpx.Headers.__new__(httpx.Headers)
        fast.headers._list = [(b"Host", b"host", b"api.example.com"), (b"X-Test", b"x-test", b"1")]
        fast.headers._encoding = None
        fast.extensions = {}
        fast.stream = httpx.ByteStream(b"k=v")
        fast._content = b"k=v"
        return (
            set(vars(public)) == set(vars(fast))
            and set(vars(public.headers)) == set(vars(fast.headers))
            and set(vars(public.url)) == set(vars(fast.url))
            and public.headers._list == fast.headers._list
            and fast.url == public.url
            and fast.url.raw_path == public.url.raw_path
            and fast.headers.raw == public.headers.raw
            and fast.content == public.content
            and b"".join(fast.stream) == b"".join(public.stream)  # type: ignore[arg-type]
        )
    except Exception:  # pragma: no cover - any surprise means: use the public constructors
        return False


HTTPX_INTERNALS_MATCH = _httpx_internals_match()


# -- adding a field (client order ids) -------------------------------------------------
# The gateway adds a client order id to an order that has none, before it is
# signed. Only the new field's bytes are added: numbers keep the spelling the
# bot gave them, keys their order.


def insert_json_member(body: bytes, name: str, value_json: str) -> bytes:
    """``body`` (one JSON object) with ``"name": value_json`` as its first member.

    ``value_json`` is already JSON text (``'"abc"'`` or ``'123'``). The caller
    has parsed ``body`` with ``load_json`` (so it is one strict JSON object);
    every byte of it is kept, the member is put right after the opening brace.
    """
    text = body.decode("utf-8")
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        raise InvalidInput("request body is not a JSON object")
    rest = text[start + 1 :]
    separator = "" if rest.lstrip().startswith("}") else ","
    member = json.dumps(name) + ":" + value_json + separator
    return (text[: start + 1] + member + rest).encode("utf-8")


def append_form_field(body: bytes, field: bytes) -> bytes:
    """``body`` (form-encoded) with ``field`` (``name=value``, already encoded) last."""
    return body + b"&" + field if body else field


def with_body(
    request: httpx.Request, body: bytes, *, url: httpx.URL | None = None
) -> httpx.Request:
    """A copy of ``request`` with a new body and its length recomputed; URL (or ``url``)
    and headers kept.

    Built directly (``build_request``) when the headers are ASCII, which is what
    the public constructor, used otherwise, would build; a unit test holds the two
    equal.
    """
    kept = [  # lower-cased names, as the public way (through ``multi_items``) gives them
        (lower, lower, value)
        for _, lower, value in header_triples(request.headers)
        if lower not in (b"content-length", b"transfer-encoding")
    ]
    if HTTPX_INTERNALS_MATCH and all(name.isascii() and value.isascii() for name, _, value in kept):
        target = request.url if url is None else url
        return build_request(
            request.method, target, prepared_headers(request.method, target, kept, body), body
        )
    public = [(name, value) for name, _, value in kept]
    return httpx.Request(request.method, url or request.url, headers=public, content=body)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def prepared_headers(
    method: str, url: httpx.URL, headers: list[HeaderTriple], body: bytes
) -> list[HeaderTriple]:
    """What ``httpx.Request(method, url, headers=..., content=body)`` makes of ``headers``
    (ASCII triples, owned by the result): Host first unless given, then the headers
    as given, then Content-Length for a body; for an empty POST, PUT or PATCH a
    ``Content-Length: 0`` up front, unless a length or transfer coding was given."""
    has_host = has_length = has_coding = False
    for _, lower, _ in headers:
        if lower == b"host":
            has_host = True
        elif lower == b"content-length":
            has_length = True
        elif lower == b"transfer-encoding":
            has_coding = True
    front: list[HeaderTriple] = []
    if not has_host and url.host:
        front.append((b"Host", b"host", url.netloc))
    if body:
        if not has_length:
            headers.append((b"Content-Length", b"content-length", str(len(body)).encode("ascii")))
    elif not has_length and not has_coding and method in _BODY_METHODS:
        front.append((b"Content-Length", b"content-length", b"0"))
    return front + headers if front else headers


def frame_args_body(value: Any) -> bytes:
    """A WebSocket frame's arguments (read with ``parse_float=Decimal``) as a REST twin's
    JSON body; fractional numbers are written as strings of their own digits.

    ``json.dumps`` cannot write a Decimal, and writing it as a float could change the
    digits; the exchanges that take WebSocket orders (OKX, Bybit) document their amounts
    as strings, so the twin carries the bot's digits as one, and the policy reads the same
    text the exchange is sent (an exponent such as ``1E+3`` is then refused as an amount).
    """
    return json.dumps(value, separators=(",", ":"), default=_decimal_text).encode()


def _decimal_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")
