"""How one gateway behaves: a frozen value built once by ``keybroker serve`` or a test.

    >>> GatewayConfig(audit_path=home / "audit.db", cors_origins=("https://dash.example",))

Nothing here is secret but ``redis_url`` (it may carry a password), which is
a ``Secret`` so that no repr shows it. The vault itself is handed to ``create_app`` already
unlocked, so a wrong passphrase fails before any socket is bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keybroker.secret import Secret

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything ``create_app`` needs besides the vault.

    - ``host_names``: names (besides IP literals and ``localhost``) the Host
      header may carry: the bind name and this machine's names. A name not
      listed is refused, which defeats DNS rebinding: a page that rebinds its
      own domain to 127.0.0.1 still sends its own domain as the Host.
    - ``cors_origins``: browser origins allowed to call; none by default, and
      any request that carries another ``Origin`` header is refused.
    - ``poll_interval_s``: how often token revocations and halts are read from
      the vault (a halt is also read afresh for every order).
    - ``upstream_timeout_s``: per exchange request; ``read_retries`` for
      idempotent reads on a 5xx or a network failure, never for anything else.
    - ``rate_limit_deadline_s``: how long a request may queue for budget
      before the gateway answers 429 itself.
    - ``public_cache_ms``: how long a finished public GET's 2xx answer is
      shared with identical GETs arriving after it (0: only concurrent ones
      share); see ``public_cache.py`` for the trade-off.
    - ``openbao_timeout_s``: how long a signature from OpenBao may take
      before the request is refused with 503 (credentials whose key is there).
    - ``ws_keepalive_s``: how often the gateway renews the key of an account
      stream a bot listens to (Binance listen keys lapse after 60 minutes).
    - ``redis_url``: several gateways share budgets, halts, revocations,
      nonces, order counts and in-flight GETs through this Redis
      (``coordination.py``); None keeps everything in this process.
    - ``gateways``: how many gateways share the budgets; while Redis does not
      answer, reads spend from 1/``gateways`` of each limit.
    - ``paper_path``: the paper ledger (default ``paper.db`` beside the audit
      log, i.e. ``<home>/paper.db``); ``paper_poll_s``: how often the public
      trades of symbols with resting paper orders are fetched;
      ``paper_book_max_age_ms``: a book fetched this recently is walked again
      instead of fetched anew (0: a fresh book for every paper order).
    """

    audit_path: Path
    host_names: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    alert_webhook: str | None = None
    alert_command: str | None = None
    poll_interval_s: float = 0.25
    upstream_timeout_s: float = 30.0
    read_retries: int = 2
    retry_backoff_s: float = 0.2
    rate_limit_deadline_s: float = 10.0
    max_body_bytes: int = 1024 * 1024
    public_cache_ms: int = 1000
    price_max_age_ms: int = 2000
    lookup_attempts: int = 3
    lookup_pause_s: float = 0.3
    ws_keepalive_s: float = 30 * 60.0
    openbao_timeout_s: float = 5.0
    redis_url: Secret | None = None
    gateways: int = 1
    paper_path: Path | None = None
    paper_poll_s: float = 1.0
    paper_book_max_age_ms: int = 250
