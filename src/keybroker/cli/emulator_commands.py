"""``keybroker emulator binance|okx``: a local exchange for tests and offline bot CI.

    $ keybroker emulator binance --port 8901 --faults "error5xx=0.1,seed=7"
    {"api_key": "emulator-…", "secret": "emulator-secret-…"}
    http://127.0.0.1:8901

``register(app)`` adds the command to the root Typer app. Errors are one line
on stderr and exit 1, whatever app the command is registered on.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from keybroker.errors import KeybrokerError


class EmulatedExchange(StrEnum):
    BINANCE = "binance"
    OKX = "okx"


HELP = """Run a local emulator of an exchange's REST API (loopback by default).

It verifies signatures, timestamps and passphrases by the exchange's rules,
answers with the exchange's own error codes, applies its rate limits, trades
on a deterministic synthetic market, and journals every request at
GET /__emulator__/journal. binance serves spot (/api/v3), SAPI (/sapi/v1) and
USDⓈ-M futures (/fapi) on one host; okx serves /api/v5 spot as the demo
environment (send x-simulated-trading: 1). Withdrawals are recorded, never
executed.

Without --keys it makes up a test key and prints it as one JSON line. Once it
accepts connections it prints its base URL on a line of its own.

\b
--faults SPEC: comma-separated key=value pairs, e.g.
  "latency=50ms,error5xx=0.1,timeout=0.01,drop_after_process=0.05,seed=7"
  latency=DURATION        delay every request (50ms, 1.5s)
  error5xx=P              share P (0..1) answered 5xx, not processed
  timeout=P               share P held unanswered, then closed
  hang=DURATION           how long a timeout holds (default 30s)
  drop_after_process=P    share P processed (orders placed), then the
                          connection is closed without a response
  seed=N                  same seed, same faults (default 0)
  scope=all|private|orders  which requests faults hit (default all)
The shares must add up to at most 1; unknown keys are an error.

\b
--keys FILE: a JSON list of
  {"api_key", "secret", "passphrase"?, "key_type"?, "can_withdraw"?,
   "can_trade"?, "ip_restricted"?, "balances"?}
key_type is hmac (default), ed25519 or rsa; for ed25519/rsa the secret is
the PUBLIC key in PEM form. can_withdraw defaults to false, can_trade and
ip_restricted (bound to loopback) to true. OKX keys need a passphrase.
"""


def register(app: typer.Typer) -> None:
    """Add ``keybroker emulator`` to ``app``."""
    app.command("emulator", help=HELP)(emulator)


def emulator(
    exchange: Annotated[
        EmulatedExchange, typer.Argument(help="The exchange to emulate.", show_default=False)
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="Port to listen on; 0 picks a free one.", min=0, max=65535)
    ] = 0,
    keys: Annotated[
        Path | None,
        typer.Option("--keys", help="JSON file of the API keys to accept.", metavar="FILE"),
    ] = None,
    weight_limit: Annotated[
        int,
        typer.Option("--weight-limit", help="Binance REQUEST_WEIGHT per minute per IP.", min=1),
    ] = 1200,
    faults: Annotated[
        str | None,
        typer.Option("--faults", help="Faults to inject (syntax above).", metavar="SPEC"),
    ] = None,
) -> None:
    try:
        _serve(exchange.value, host, port, keys, weight_limit, faults)
    except KeybrokerError as error:
        typer.echo(f"keybroker: {error}", err=True)
        raise typer.Exit(error.exit_code) from None


def _serve(
    exchange: str,
    host: str,
    port: int,
    keys_file: Path | None,
    weight_limit: int,
    faults: str | None,
) -> None:
    # Imported here: Starlette and uvicorn would otherwise slow every keybroker command.
    from keybroker.emulator import server
    from keybroker.emulator.app import create_app
    from keybroker.emulator.config import EmulatorConfig
    from keybroker.emulator.faults import FaultSpec
    from keybroker.emulator.keys import describe_key, generate_key, load_keys

    config = EmulatorConfig(
        weight_limit=weight_limit,
        faults=FaultSpec.parse(faults) if faults else FaultSpec(),
    )
    keys = load_keys(keys_file, exchange) if keys_file else [generate_key(exchange)]
    app = create_app(exchange, keys, config)
    sock = server.bind(host, port)
    if keys_file is None:
        # A made-up test key for a made-up exchange: printing it is the point.
        typer.echo(json.dumps(describe_key(keys[0])))

    def announce(url: str) -> None:
        typer.echo(url)

    server.run(app, sock, announce)
