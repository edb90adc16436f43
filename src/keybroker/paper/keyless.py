"""A paper credential without any exchange key: public market data only.

    >>> vault.add("paper-bot", "binance", keyless_material(needs_passphrase=False))
    >>> is_keyless(vault.credential("paper-bot"))
    True

Paper trading needs no key: orders, cancels, order queries and balances are
answered by the paper venue, and market data is public. Such a credential is
stored like any other (so tokens, policies, halts and the audit log treat it
alike) with a marker in place of the API key and random filler for the
secret, which is never used: the gateway sends its requests unsigned, and
refuses (``PaperRefused``) any signed read the paper venue does not answer,
and switching it to live mode, rather than sending a request the exchange
would reject.
"""

from __future__ import annotations

import secrets

from keybroker.model import Credential
from keybroker.secret import Secret
from keybroker.vault import KeyMaterial

NO_KEY_API_KEY = "keybroker-paper-no-key"
"""The API key field of a keyless paper credential (no exchange issues such a key)."""


def keyless_material(*, needs_passphrase: bool) -> KeyMaterial:
    """Key material for a keyless paper credential; its secret is random and never used."""
    filler = Secret(secrets.token_hex(32))
    passphrase = Secret(secrets.token_hex(16)) if needs_passphrase else None
    return KeyMaterial(NO_KEY_API_KEY, filler, passphrase)


def is_keyless(credential: Credential) -> bool:
    """Whether ``credential`` is a keyless paper credential (nothing may be signed with it)."""
    return credential.api_key == NO_KEY_API_KEY
