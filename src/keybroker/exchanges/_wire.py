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
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_refuse_json_constant,
            object_pairs_hook=_refuse_duplicate_keys,
        )
    except json.JSONDecodeError:
        raise InvalidInput("request body is not valid JSON") from None


def _refuse_json_constant(name: str) -> Any:
    raise InvalidInput("request body holds NaN or Infinity")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput("request body repeats a JSON key")
        result[key] = value
    return result
