"""Venue adapters: one module per exchange the paper venue speaks, each with a ``VENUE``.

    >>> get_venue("binance").fees
    Fees(maker=Decimal('0.001'), taker=Decimal('0.001'))

An explicit dict, as ``exchanges.PROFILES`` is: adding an exchange is adding
its module and one line here.
"""

from __future__ import annotations

from keybroker.paper.venues import binance, okx
from keybroker.paper.venues.base import Answer, Operation, Venue

VENUES: dict[str, Venue] = {"binance": binance.VENUE, "okx": okx.VENUE}

__all__ = ["VENUES", "Answer", "Operation", "Venue", "get_venue"]


def get_venue(exchange: str) -> Venue | None:
    """The paper venue adapter of ``exchange``, or None where paper trading is not written."""
    return VENUES.get(exchange)
