"""The unsigned request for the exchange, built from the bot's bytes: ``request_for``.

    >>> request = request_for("POST", "https://api.binance.com", "/api/v3/order", "",
    ...                       [("content-type", "application/x-www-form-urlencoded")], body)

Why this is its own module: every request through the gateway starts here,
and ``httpx.URL(text)`` plus ``httpx.Request(...)`` re-parse the URL and
re-normalise every header in pure Python, about a tenth of the gateway's
CPU per order. When the path and query are already in the form httpx's
parser would produce (plain characters and valid ``%XX`` escapes, no dot
segments), the parsed base URL is reused and the request is built directly
(``exchanges._wire.build_request``). Anything else takes the public
constructors, which quote, normalise or refuse exactly as before. A unit test
holds the two equal, object for object, over a corpus that includes every
spelling of the bypass corpus.
"""

from __future__ import annotations

import re
from functools import lru_cache

import httpx

from keybroker.errors import InvalidInput
from keybroker.exchanges._wire import (
    HTTPX_INTERNALS_MATCH,
    HeaderTriple,
    build_request,
    prepared_headers,
)

# What httpx's parser leaves as it is: unreserved and sub-delimiter characters, ":@/"
# (and "?" in a query), valid escapes. A subset of its own safe sets, so anything it
# would change takes the slow way.
_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_PLAIN_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")
_MAX_URL_LENGTH = 65_536  # httpx refuses longer URLs; the slow way says so


def request_for(
    method: str, base: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> httpx.Request:
    """``httpx.Request(method, httpx.URL(base.rstrip("/") + path + "?" + query), headers=headers,
    content=body)``: the same object, faster when the parts are plain.

    ``path`` is the raw path as the bot sent it (starting with "/"), ``query`` the raw
    query without "?" ("" for none). InvalidInput when they do not make a valid URL.
    """
    if HTTPX_INTERNALS_MATCH and _plain(base, path, query):
        url = _join(_parsed_base(base.rstrip("/")), path, query)
        if url is not None:
            try:
                triples = _header_triples(method, url, headers, body)
            except UnicodeEncodeError:
                pass  # the public constructor raises what it raises for such a header
            else:
                return build_request(method, url, triples, body)
    return _public(method, base, path, query, headers, body)


def _public(
    method: str, base: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes
) -> httpx.Request:
    target = base.rstrip("/") + path
    if query:
        target += "?" + query
    try:
        url = httpx.URL(target)
    except (httpx.InvalidURL, UnicodeError):
        raise InvalidInput("the request's path or query is not a valid URL") from None
    return httpx.Request(method, url, headers=headers, content=body)


def _plain(base: str, path: str, query: str) -> bool:
    if not path.startswith("/") or len(base) + len(path) + len(query) + 1 >= _MAX_URL_LENGTH:
        return False
    if _PLAIN_PATH.fullmatch(path) is None or _PLAIN_QUERY.fullmatch(query) is None:
        return False
    # httpx resolves "." and ".." segments in an absolute URL's path.
    return "." not in path or not any(part in (".", "..") for part in path.split("/"))


@lru_cache(maxsize=64)
def _parsed_base(base: str) -> httpx.URL | None:
    """The base URL parsed once; None when it has a query or fragment of its own (or does
    not parse), which the slow way handles."""
    try:
        url = httpx.URL(base)
    except (httpx.InvalidURL, UnicodeError):
        return None
    reference = url._uri_reference
    if reference.query is not None or reference.fragment is not None or not reference.host:
        return None
    return url


def _join(base: httpx.URL | None, path: str, query: str) -> httpx.URL | None:
    if base is None:
        return None
    reference = base._uri_reference  # its path has no dot segments: httpx resolved them
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = reference._replace(path=reference.path + path, query=query or None)
    return url


def _header_triples(
    method: str, url: httpx.URL, headers: list[tuple[str, str]], body: bytes
) -> list[HeaderTriple]:
    """``headers`` as httpx's triples (UnicodeEncodeError for a non-ASCII one, which the
    public constructor refuses too), with what ``httpx.Request`` adds."""
    triples: list[HeaderTriple] = []
    for name, value in headers:
        raw = name.encode("ascii")
        triples.append((raw, raw.lower(), value.encode("ascii")))
    return prepared_headers(method, url, triples, body)
