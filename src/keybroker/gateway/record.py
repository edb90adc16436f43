"""What the last ``keybroker serve`` listened on, kept in ``<home>/gateway.json`` for the doctor.

    >>> write_record(home / "gateway.json", ServeRecord(host="127.0.0.1", port=8787, tls=False))
    >>> read_record(home / "gateway.json").is_loopback
    True

The gateway's settings are command-line flags, gone when the process ends;
``keybroker doctor`` still has to say whether the gateway listens beyond
loopback without TLS, allows a browser origin ``*``, or sends alerts
nowhere. So ``serve`` writes them here at every start (mode 0600). Nothing
in it is secret: a webhook URL often carries its key in the path (Slack,
Discord), so only its scheme and host are kept, and of an alert command only
that there is one.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from keybroker.errors import InvalidInput

RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class ServeRecord:
    """The listening and alerting settings of one ``keybroker serve`` start."""

    host: str
    port: int
    tls: bool
    cors_origins: tuple[str, ...] = ()
    alert_webhook_host: str | None = None
    """Scheme and host of ``--alert-webhook`` only; the path may hold its key."""
    has_alert_command: bool = False
    started_at: str = ""
    pid: int = field(default_factory=os.getpid)

    @property
    def is_loopback(self) -> bool:
        """Whether the TCP listener stays on this machine."""
        host = self.host.strip("[]").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def alerts_configured(self) -> bool:
        """A webhook or a command gets alerts (besides the log line every alert writes)."""
        return self.alert_webhook_host is not None or self.has_alert_command


def webhook_host(url: str | None) -> str | None:
    """``https://hooks.example.com`` from a webhook URL: never its path or query."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def write_record(path: Path, record: ServeRecord) -> None:
    """Replace the record at ``path`` atomically, mode 0600; best effort (never stops a start)."""
    document = {"version": RECORD_VERSION, **asdict(record)}
    document["cors_origins"] = list(record.cors_origins)
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(OSError):
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True, indent=2)
        os.replace(temporary, path)


def read_record(path: Path) -> ServeRecord | None:
    """The record at ``path``; None when no gateway has written one. InvalidInput if unreadable."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the gateway record {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != RECORD_VERSION:
        raise InvalidInput(f"the gateway record {path} is not version {RECORD_VERSION}")
    try:
        return ServeRecord(
            host=str(document["host"]),
            port=int(document["port"]),
            tls=bool(document["tls"]),
            cors_origins=tuple(str(origin) for origin in document.get("cors_origins", [])),
            alert_webhook_host=document.get("alert_webhook_host"),
            has_alert_command=bool(document.get("has_alert_command", False)),
            started_at=str(document.get("started_at", "")),
            pid=int(document.get("pid", 0)),
        )
    except (KeyError, TypeError, ValueError):
        raise InvalidInput(f"the gateway record {path} is missing a field") from None
