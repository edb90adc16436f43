"""keybroker: trading bots use exchange API keys without ever holding them.

    >>> from keybroker import Credential, Secret
    >>> Credential("bot1", "binance", "public-key-id", Secret("not-a-real-secret"))

The few names here are the public Python surface; everything else is reached
through its package (``keybroker.vault``, ``keybroker.exchanges``).
"""

from keybroker.errors import KeybrokerError
from keybroker.model import Credential
from keybroker.secret import Secret

__version__ = "0.1.0"

__all__ = ["Credential", "KeybrokerError", "Secret"]
