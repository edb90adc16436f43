"""Which public answers the gateway shares for ``public_cache_ms``, and how a bot sees their age.

    >>> Dedup(clock, config.public_cache_ms, keep=cacheable, aged=aged)

Forty-five bots polling one ticker every second should cost the exchange one
request per second, not forty-five (seed 001's shared weight budget). So a
finished public GET's answer is given to identical GETs (same environment,
URL and Accept-Encoding) for ``public_cache_ms``, 1000 by default. The price
is staleness: such an answer can be up to that old. A bot can see it: an
answer given from the cache carries ``Age`` (whole seconds, RFC 9111) and
``X-Keybroker-Cache-Age-Ms``; a fresh one carries neither.

Only 2xx answers are kept. An error (a 429, a 5xx, a 4xx for a bad symbol), a
network failure or a refusal of the gateway's own is given to the requests
that were waiting on the same fetch and then forgotten, so the next poll asks
again. Signed requests never come here (the pipeline sends only ``public``
GETs through the cache), so one bot's private answer is never another's.
"""

from __future__ import annotations

import dataclasses

from starlette.responses import Response

from keybroker.gateway.upstream import Failure, Received

AGE_MS_HEADER = "x-keybroker-cache-age-ms"


def cacheable(outcome: Received | Failure | Response) -> bool:
    """Only an exchange's 2xx answer is worth sharing after it finished."""
    return isinstance(outcome, Received) and 200 <= outcome.status < 300


def aged(outcome: Received | Failure | Response, age_ms: int) -> Received | Failure | Response:
    """``outcome`` with ``Age`` and ``X-Keybroker-Cache-Age-Ms`` saying how old it is."""
    if not isinstance(outcome, Received):
        return outcome
    headers = tuple(
        (name, value)
        for name, value in outcome.headers
        if name.lower() not in ("age", AGE_MS_HEADER)
    )
    age = max(0, age_ms)
    headers += (("age", str(age // 1000)), (AGE_MS_HEADER, str(age)))
    return dataclasses.replace(outcome, headers=headers)
