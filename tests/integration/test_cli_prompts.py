"""The hidden prompts on a real pseudo-terminal: what is typed as a secret is never echoed."""

from __future__ import annotations

import json

from cli_harness import PASSPHRASE, SMALL_KDF, Kb, StartTerminal

API_KEY = "FAKEptyApiKey000000000000000000000000000000000000000000000000001"
API_SECRET = "FAKEptyApiSecret0000000000000000000000000000000000000000000001"


def test_init_and_add_through_a_terminal(kb: Kb, terminal: StartTerminal) -> None:
    no_env = {"KEYBROKER_PASSPHRASE": None}
    init = terminal("init", *SMALL_KDF, env=no_env)
    # The space after the colon is written by getpass once echo is off; sending
    # earlier would race it (and TCSAFLUSH would throw the early input away).
    init.expect("New vault passphrase (at least 12 characters): ")
    init.send(PASSPHRASE)
    init.expect("Repeat for confirmation: ")
    init.send(PASSPHRASE)
    assert init.finish() == 0, bytes(init.transcript)
    assert PASSPHRASE.encode() not in init.transcript
    assert b"Created vault" in init.transcript

    add = terminal("keys", "add", "b1", "--exchange", "binance", env=no_env)
    add.expect("Vault passphrase: ")
    add.send(PASSPHRASE)
    add.expect("binance API key:")
    add.send(API_KEY)
    add.expect("binance API secret (not shown): ")
    add.send(API_SECRET)
    assert add.finish() == 0, bytes(add.transcript)
    assert API_KEY.encode() in add.transcript  # the API key is echoed, on purpose
    assert API_SECRET.encode() not in add.transcript
    assert PASSPHRASE.encode() not in add.transcript
    assert json.loads(kb("keys", "list", "--json").stdout)[0]["key_id"] == "FAKE…0001"
