"""Paper trading: a paper venue that answers a credential's orders on real market data.

    keybroker policy set bot --mode paper              # orders now go to the paper venue
    keybroker paper reset bot --balance USDT=10000     # its starting balances
    keybroker paper report bot --plot equity.png

A credential in paper mode keeps talking to the real exchange for public
market data (and for signed reads where it has a key); its orders, cancels,
order queries and balances are answered by the gateway in the exchange's own
wire format (``venues/``), filled against the book and the public trades of
that moment (``fills.py``), and kept in ``<home>/paper.db`` (``ledger.py``).
``report.summarize`` reads the ledger for the CLI and the dashboard.
"""

from __future__ import annotations

from keybroker.paper.desk import Desk, MarketData, MarketDataUnavailable, PaperCall
from keybroker.paper.keyless import NO_KEY_API_KEY, is_keyless, keyless_material
from keybroker.paper.ledger import Account, Ledger
from keybroker.paper.model import Fees
from keybroker.paper.report import PaperSummary, summarize
from keybroker.paper.venues import VENUES, Venue, get_venue

__all__ = [
    "NO_KEY_API_KEY",
    "VENUES",
    "Account",
    "Desk",
    "Fees",
    "Ledger",
    "MarketData",
    "MarketDataUnavailable",
    "PaperCall",
    "PaperSummary",
    "Venue",
    "get_venue",
    "is_keyless",
    "keyless_material",
    "summarize",
]
