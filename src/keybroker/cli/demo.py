"""``keybroker demo``: the signing gateway end to end, in a throwaway home, in about twenty seconds.

    $ keybroker demo               # the gateway: a bot trades and never holds the key
    $ keybroker demo --vault-only  # the vault alone: init, add, list, rotate, catch tampering

On a fresh machine with no setup: a temporary home, the local exchange
emulator (Binance's API on 127.0.0.1), a vault holding the emulator's testnet
key, a trading policy, a bot token, and the gateway (``create_app`` on
uvicorn, the code ``keybroker serve`` runs). Then a short bot trades through
it twice, with ccxt (``keybroker.connect_ccxt``) and with the adapter
(``keybroker.gateway_config``): orders placed and cancelled, a withdrawal,
an oversized and a fat-fingered order denied, a rate-limit wait, the kill
switch; a summary table and ``keybroker audit verify`` close it. Every
``$ keybroker …`` step runs the real command (the same code as typing it).
Nothing outside the temporary directory is touched, everything started is
stopped, and the directory is deleted at the end. The key derivation is
turned down to its floor (64 MiB, one pass) so the demo is quick, which the
output says.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import typer

from keybroker.cli.output import say
from keybroker.errors import KeybrokerError

DEMO_PASSPHRASE = "demo passphrase, not for real use"  # noqa: S105 - a throwaway demo vault
DEMO_KDF = ("--kdf-memory-mib", "64", "--kdf-iterations", "1", "--kdf-lanes", "1")

_BINANCE = {
    "BINANCE_API_KEY": "DEMOfakeBinanceTestnetKey0000000000000000000000000000000000000001",
    "BINANCE_API_SECRET": "DEMOfakeBinanceTestnetSecret000000000000000000000000000000000001",
}
_BINANCE_ROTATED = {
    "BINANCE_API_KEY": "DEMOfakeBinanceTestnetKey0000000000000000000000000000000000000002",
    "BINANCE_API_SECRET": "DEMOfakeBinanceTestnetSecret000000000000000000000000000000000002",
}
_OKX = {
    "OKX_API_KEY": "00000000-demo-fake-okx0-000000000001",
    "OKX_API_SECRET": "DEMOFAKEOKXSECRET00000000000000001",
    "OKX_PASSPHRASE": "DemoFakePass1!",
}
_TAMPER_SQL = "UPDATE credentials SET exchange = 'okx' WHERE name = 'demo-binance'"


class _Walkthrough:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.passphrase_file = home / "demo-passphrase"
        self.step = 0

    def write_passphrase(self) -> None:
        """The passphrase in a 0600 file, for ``--passphrase-file`` (never on a command line)."""
        fd = os.open(self.passphrase_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(DEMO_PASSPHRASE + "\n")
        say(f"(The passphrase comes from {self.passphrase_file}, mode 600, via --passphrase-file.)")

    def run(
        self,
        title: str,
        *args: str,
        expect: int = 0,
        environ: Mapping[str, str] | None = None,
        passphrase: bool = False,
    ) -> None:
        """Show the command, run it in-process, and stop the demo if it ends unexpectedly."""
        from keybroker.cli import app  # the app imports this module

        self.step += 1
        shown = ["keybroker", *args]
        if passphrase:
            args = (*args, "--passphrase-file", str(self.passphrase_file))
        say()
        say(f"── {self.step}. {title}")
        say(f"$ {shlex.join(shown)}")
        with _environment(environ or {}):
            code = typer.main.get_command(app).main(
                ["--home", str(self.home), *args], standalone_mode=False
            )
        if code != expect:
            raise KeybrokerError(
                f"the demo stopped at step {self.step}: exit code {code}, expected {expect}"
            )


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def demo(
    vault_only: bool = typer.Option(
        False, "--vault-only", help="Only the vault walkthrough (init, add, rotate, tamper)."
    ),
) -> None:
    """The signing gateway end to end in a throwaway home: a bot trades and never holds the key.

    Starts the local exchange emulator and the gateway, stores the emulator's
    fake testnet key, sets a policy, makes a bot token, and runs a short bot
    through ccxt and through the adapter: orders placed and cancelled, a
    withdrawal and oversized orders denied, a rate-limit wait, the kill switch;
    then a summary and the audit log's verification. About twenty seconds; your
    own vault is not touched. --vault-only shows the vault alone. Example:
    keybroker demo
    """
    home = Path(tempfile.mkdtemp(prefix="keybroker-demo-"))
    walkthrough = _Walkthrough(home)
    try:
        if vault_only:
            _walk(walkthrough)
            went_well = True
        else:
            from keybroker.cli.gateway_demo import run_gateway_demo

            went_well = run_gateway_demo(walkthrough)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    say()
    say(f"Done. The throwaway home {home} is deleted; your own vault was not touched.")
    if not went_well:
        raise KeybrokerError("the demo did not go as expected: see the rows marked UNEXPECTED")
    say("Start for real with: keybroker init (then keys add, policy set, tokens create, serve)")


def _walk(demo: _Walkthrough) -> None:
    say(f"keybroker demo: a throwaway vault in {demo.home} (deleted at the end).")
    say(
        "Key derivation is set to its floor here (Argon2id, 64 MiB, 1 pass, 1 lane) so the "
        "demo is quick; `keybroker init` calibrates to about 0.5 s per unlock instead."
    )
    say("The keys below are fake testnet keys; no exchange is contacted.")
    demo.write_passphrase()

    demo.run("Create the vault", "init", *DEMO_KDF, passphrase=True)
    demo.run(
        "Store a Binance testnet key from BINANCE_API_KEY / BINANCE_API_SECRET",
        *("keys", "add", "demo-binance", "--exchange", "binance", "--from-env"),
        environ=_BINANCE,
        passphrase=True,
    )
    demo.run(
        "Store an OKX key (OKX also needs its API passphrase), allowed to trade",
        *("keys", "add", "demo-okx", "--exchange", "okx", "--scope", "read,trade"),
        "--from-env",
        environ=_OKX,
        passphrase=True,
    )
    demo.run("List the keys: no passphrase needed, and no secret shown", "keys", "list")
    demo.run(
        "Rotate the Binance key: the vault forgets the old secret",
        *("keys", "rotate", "demo-binance", "--from-env"),
        environ=_BINANCE_ROTATED,
        passphrase=True,
    )
    demo.run("Show one key, with the id of the key it replaced", "keys", "show", "demo-binance")
    demo.run("Verify: every record decrypts and is unchanged", "vault", "verify", passphrase=True)

    say()
    say(
        f"── {demo.step + 1}. Tamper with the file: relabel demo-binance as an OKX key with sqlite3"
    )
    say(f'$ sqlite3 {demo.home / "vault.db"} "{_TAMPER_SQL}"')
    with contextlib.closing(sqlite3.connect(demo.home / "vault.db")) as conn, conn:
        conn.execute(_TAMPER_SQL)
    demo.step += 1
    demo.run(
        "Verify again: the edit is caught (exit code 2, as in CI)",
        *("vault", "verify"),
        expect=2,
        passphrase=True,
    )
    say("Caught: each record is bound to every one of its columns, so editing any of them")
    say("outside keybroker makes it fail authentication instead of silently changing meaning.")
