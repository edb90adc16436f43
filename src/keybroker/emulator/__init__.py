"""A local exchange emulator (Binance spot/USDⓈ-M, OKX) for tests and offline bot CI.

    >>> from keybroker.emulator import create_app, serve_in_thread, generate_key
    >>> key = generate_key("binance")
    >>> base_url, stop = serve_in_thread(create_app("binance", [key]))

It verifies every signature with its own code (``signatures.py``), never with
``keybroker.exchanges`` or ``keybroker.crypto``, so that a bug in our signers
is caught instead of mirrored; a layer test holds this. It answers with the
exchanges' own error codes, bodies and HTTP statuses, applies their rate
limits, runs a deterministic synthetic market, injects faults on request and
journals every request it receives. Start it with ``keybroker emulator``.
"""

from keybroker.emulator.app import create_app
from keybroker.emulator.config import EmulatorConfig
from keybroker.emulator.faults import FaultSpec
from keybroker.emulator.journal import Entry, Journal
from keybroker.emulator.keys import ApiKey, generate_key, load_keys
from keybroker.emulator.server import serve_in_thread

__all__ = [
    "ApiKey",
    "EmulatorConfig",
    "Entry",
    "FaultSpec",
    "Journal",
    "create_app",
    "generate_key",
    "load_keys",
    "serve_in_thread",
]
