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

from collections.abc import Iterable, Mapping
from urllib.parse import quote

import httpx

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
