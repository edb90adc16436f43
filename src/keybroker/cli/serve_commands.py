"""``keybroker serve``: the signing gateway, on 127.0.0.1:8787 and ``<home>/gateway.sock``.

    $ keybroker serve
    http://127.0.0.1:8787
    unix:/home/me/.local/share/keybroker/gateway.sock
    $ curl -H "X-Keybroker-Token: $TOKEN" http://127.0.0.1:8787/binance-main/api/v3/account

Start order, and why: harden the process first (core dumps off, not
dumpable, memory locked where permitted) so that no key is ever decrypted in
a process that could be dumped; then unlock the vault (passphrase from
--passphrase-file, $KEYBROKER_PASSPHRASE or a prompt), so a wrong passphrase
fails before any socket is bound; then listen. stdout carries only the
listener lines (for scripts); everything else goes to stderr.

A non-loopback --host needs --tls-cert and --tls-key: bot tokens and order
flow would otherwise cross the network in clear. --insecure-plaintext-remote
allows it anyway and says so at every start.

Several gateways (several hosts) share their budgets, halts, revocations,
nonces, order counts and in-flight GETs through ``--redis URL`` (or
$KEYBROKER_REDIS_URL, which keeps a password out of ``ps``); ``--gateways N``
says how many share, for the 1/N local share reads fall back to while Redis
does not answer. docs/deployment.md shows the whole arrangement.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from keybroker.cli.context import CliState, open_vault, unlock
from keybroker.cli.output import note, say, warn
from keybroker.cli.passphrase import FILE_HELP
from keybroker.errors import UsageError
from keybroker.secret import Secret
from keybroker.settings import REDIS_URL_VARIABLE

if TYPE_CHECKING:
    from keybroker.gateway import GatewayConfig

SOCKET_NAME = "gateway.sock"


def register(app: typer.Typer) -> None:
    """Add ``keybroker serve`` to ``app``."""
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", help="TCP port; 0 picks a free one.", min=0, max=65535)
    ] = 8787,
    uds: Annotated[
        Path | None,
        typer.Option(
            "--uds",
            help=f"Unix socket path (mode 0600) \\[default: <home>/{SOCKET_NAME}].",
            metavar="PATH",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="TLS certificate (PEM) for the TCP listener.", metavar="F"),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="TLS private key (PEM) for the TCP listener.", metavar="F"),
    ] = None,
    insecure_plaintext_remote: Annotated[
        bool,
        typer.Option(
            "--insecure-plaintext-remote",
            help="Allow a non-loopback --host without TLS (tokens cross the network in clear).",
        ),
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="A browser origin allowed to call (repeatable); none by default.",
            metavar="ORIGIN",
        ),
    ] = None,
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            "--alert-webhook",
            help="POST alerts as JSON here (https). The same alert goes out at most once a "
            "minute; the next one says how many were held back (repeated=N).",
            metavar="URL",
        ),
    ] = None,
    alert_command: Annotated[
        str | None,
        typer.Option(
            "--alert-command", help="Run this with each alert's JSON on stdin.", metavar="CMD"
        ),
    ] = None,
    public_cache_ms: Annotated[
        int,
        typer.Option(
            "--public-cache-ms",
            help=(
                "Share a finished public GET's 2xx answer with identical GETs for this long: "
                "45 bots polling one ticker every second cost one upstream request per second, "
                "and such an answer may be up to this old (it then carries Age and "
                "X-Keybroker-Cache-Age-Ms). 0 shares only concurrent GETs. Errors and signed "
                "requests are never shared."
            ),
            min=0,
            max=60_000,
            metavar="MS",
        ),
    ] = 1000,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help=(
                "Share rate limits, halts, revocations, nonces and order counts with other "
                "gateways through this Redis: redis://[:PASSWORD@]HOST:PORT/DB, or rediss:// "
                f"for TLS \\[default: ${REDIS_URL_VARIABLE}, else nothing is shared]."
            ),
            metavar="URL",
        ),
    ] = None,
    gateways: Annotated[
        int,
        typer.Option(
            "--gateways",
            help=(
                "How many gateways share the budgets; while Redis does not answer, reads "
                "spend from 1/N of each limit and new orders are refused (503)."
            ),
            min=1,
            max=1000,
            metavar="N",
        ),
    ] = 1,
    passphrase_file: Annotated[
        Path | None, typer.Option("--passphrase-file", help=FILE_HELP, metavar="FILE")
    ] = None,
) -> None:
    """Run the signing gateway: bots send requests with a bot token, keybroker signs them.

    Requests go to /{credential}/{exchange path} with X-Keybroker-Token (or
    Authorization: Bearer kb_…); the gateway checks the token and the
    credential's policy, waits for rate-limit budget, writes the audit log,
    signs and forwards. Its own endpoints: /_/health, /_/status, /_/metrics,
    /_/credentials (the calling token's credentials and their exchanges).

    Public market data (tickers, order books) is shared between bots for
    --public-cache-ms (1000 by default): fewer requests against the shared
    weight budget, at the price of answers up to that old. Use 0 when a bot
    needs every poll fresh from the exchange.
    """
    # Imported here: Starlette, uvicorn and httpx would otherwise slow every command.
    from keybroker.gateway import GatewayConfig, create_app, harden
    from keybroker.gateway.server import (
        GatewayServer,
        bind_tcp,
        bind_uds,
        is_loopback,
        make_config,
        url_of,
    )
    from keybroker.openbao import load as load_openbao

    state = CliState.of(ctx)
    assert state.settings is not None
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("give --tls-cert and --tls-key together")
    tls = tls_cert is not None
    if tls_cert is not None and tls_key is not None:
        _check_tls(tls_cert, tls_key)
    remote = not is_loopback(host)
    if remote and not tls and not insecure_plaintext_remote:
        raise UsageError(
            f"--host {host} is not a loopback address: give --tls-cert and --tls-key, "
            "or accept plaintext with --insecure-plaintext-remote"
        )
    if remote and not tls:
        warn(
            f"--insecure-plaintext-remote: listening on {host} without TLS; bot tokens and "
            "every request and answer cross the network in clear, readable and replayable"
        )
    redis_url = redis or state.environ.get(REDIS_URL_VARIABLE, "").strip() or None
    if gateways > 1 and redis_url is None:
        raise UsageError("--gateways N shares budgets through Redis: give --redis URL too")
    _log_to_stderr(state.debug)

    steps = harden()
    for step in steps:
        note(f"hardening: {step.line()}")
    vault = open_vault(state)
    try:
        unlock(vault, state, passphrase_file)
        config = GatewayConfig(
            audit_path=state.settings.audit_path,
            paper_path=state.settings.paper_path,
            host_names=_host_names(host, remote),
            cors_origins=tuple(cors_origin or ()),
            alert_webhook=alert_webhook,
            alert_command=alert_command,
            public_cache_ms=public_cache_ms,
            redis_url=Secret(redis_url) if redis_url else None,
            gateways=gateways,
        )
        openbao = load_openbao(state.settings.home)  # <home>/openbao.json, from openbao setup
        if openbao is not None:
            note(f"keybroker: OpenBao at {openbao.addr} signs for its keys (role {openbao.role})")
        app = create_app(vault, config, hardening=steps, openbao=openbao)
        if redis_url:
            from keybroker.gateway.coordination_redis import shown_url

            note(f"sharing state with other gateways through {shown_url(redis_url)}")
        uds_path = (uds or state.settings.home / SOCKET_NAME).expanduser()
        tcp = bind_tcp(host, port)
        unix = bind_uds(uds_path)

        _write_record(state.settings.gateway_record_path, host, tcp, tls, config)

        def ready() -> None:
            say(url_of(tcp, tls=tls))
            say(f"unix:{uds_path}")
            sys.stdout.flush()
            note("keybroker: gateway ready; Ctrl-C stops it")

        server = GatewayServer(
            make_config(app, tls_cert=tls_cert, tls_key=tls_key), [tcp], [unix], on_ready=ready
        )
        try:
            server.run()
        finally:
            tcp.close()
            unix.close()
            uds_path.unlink(missing_ok=True)
    finally:
        vault.close()
    note("keybroker: gateway stopped")


def _write_record(
    path: Path, host: str, tcp: socket.socket, tls: bool, config: GatewayConfig
) -> None:
    """Leave the settings (no secret in them) where ``keybroker doctor`` can check them."""
    from datetime import UTC, datetime

    from keybroker.gateway.record import ServeRecord, webhook_host, write_record

    write_record(
        path,
        ServeRecord(
            host=host,
            port=int(tcp.getsockname()[1]),
            tls=tls,
            cors_origins=config.cors_origins,
            alert_webhook_host=webhook_host(config.alert_webhook),
            has_alert_command=bool(config.alert_command),
            started_at=datetime.now(UTC).isoformat(),
        ),
    )


def _check_tls(cert: Path, key: Path) -> None:
    """Load the certificate and key once, before the vault is unlocked or a port bound.

    uvicorn loads them only inside ``server.run()``, after the sockets are bound and
    ``gateway.json`` says a TLS gateway started: a missing, unreadable or mismatched
    file then surfaced as "unexpected FileNotFoundError" (or SSLError) instead of a
    line naming the file, and ``keybroker doctor`` read the settings of a gateway
    that never served.
    """
    import ssl

    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.expanduser().is_file():
            raise UsageError(f"{option} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert.expanduser(), key.expanduser())
    except OSError as error:  # ssl.SSLError is an OSError; so is a permission error
        reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
        raise UsageError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {reason} "
            "(both PEM files, readable by you, the key matching the certificate)"
        ) from None


def _host_names(host: str, remote: bool) -> tuple[str, ...]:
    """Names the Host header may carry besides IP literals and localhost."""
    names = {host.lower()}
    if remote:
        names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
    return tuple(sorted(names))


def _log_to_stderr(debug: bool) -> None:
    # Alerts are a log line first (seed 000 §8); a gateway without a handler
    # would drop them. --debug has installed its own handler already.
    if debug:
        return
    logger = logging.getLogger("keybroker")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
