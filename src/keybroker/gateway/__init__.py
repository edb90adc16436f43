"""The signing gateway: bots send unsigned requests with a bot token; keys never leave this process.

    >>> app = create_app(vault, GatewayConfig(audit_path=home / "audit.db"))
    >>> running = serve_in_thread(app)          # or `keybroker serve`
    >>> httpx.get(f"{running.url}/binance-main/api/v3/account",
    ...           headers={"X-Keybroker-Token": token})

``app.py`` composes the parts; ``pipeline.py`` is the request's way (steps
2-9 of ARCHITECTURE.md); ``auth.py`` the Host, origin and token checks;
``upstream.py`` the exchange side; ``dedup.py`` shared public GETs;
``nonces.py`` nonce leases; ``responses.py`` the gateway's own JSON answers;
``status.py`` the ``/_/`` endpoints; ``hardening.py`` what the process does
to keep keys out of dumps; ``server.py`` the listeners.
"""

from keybroker.gateway.app import create_app
from keybroker.gateway.config import GatewayConfig
from keybroker.gateway.hardening import Step, harden
from keybroker.gateway.server import Running, serve_in_thread

__all__ = ["GatewayConfig", "Running", "Step", "create_app", "harden", "serve_in_thread"]
