"""Check 9: the gateway listens on loopback or with TLS, and lets no browser page in by ``*``.

    >>> check_gateway_listen(inputs)    # fail: "0.0.0.0:8787 without TLS"

Both read what the last ``keybroker serve`` recorded in ``<home>/gateway.json``;
tokens without expiry are checked in ``vault_checks``.
"""

from __future__ import annotations

from keybroker.doctor.audit_checks import serve_record
from keybroker.doctor.inputs import Inputs
from keybroker.doctor.result import Result

WILDCARD_ORIGINS = frozenset({"*", "null"})
"""``*`` would be every page on the web; ``null`` is any sandboxed iframe or file:// page."""


def check_gateway_listen(inputs: Inputs) -> list[Result]:
    """Loopback, or TLS: bot tokens and orders must not cross a network in clear."""
    record, problem = serve_record(inputs)
    if problem is not None:
        return [Result("gateway", "gateway.listen", "warn", problem)]
    if record is None:
        return [
            Result("gateway", "gateway.listen", "pass", "no gateway has started from this home")
        ]
    where = f"{record.host}:{record.port}"
    if record.is_loopback:
        return [Result("gateway", "gateway.listen", "pass", f"listens on loopback ({where})")]
    if record.tls:
        return [Result("gateway", "gateway.listen", "pass", f"listens on {where} with TLS")]
    return [
        Result(
            "gateway",
            "gateway.listen",
            "fail",
            f"listens on {where} without TLS: tokens and orders cross the network in clear; "
            "restart with --tls-cert/--tls-key or on 127.0.0.1",
        )
    ]


def check_gateway_cors(inputs: Inputs) -> list[Result]:
    """A wildcard CORS origin lets any web page drive the bots' credentials."""
    record, problem = serve_record(inputs)
    if problem is not None:
        return [Result("gateway", "gateway.cors", "warn", problem)]
    if record is None or not record.cors_origins:
        return [Result("gateway", "gateway.cors", "pass", "no browser origin is allowed")]
    wild = sorted(WILDCARD_ORIGINS & {origin.strip().lower() for origin in record.cors_origins})
    if wild:
        return [
            Result(
                "gateway",
                "gateway.cors",
                "fail",
                "a wildcard --cors-origin lets any web page call the gateway: name the exact "
                "origin of your dashboard instead",
                tuple(wild),
            )
        ]
    return [
        Result(
            "gateway",
            "gateway.cors",
            "pass",
            f"browser origins allowed: {', '.join(record.cors_origins)}",
        )
    ]
