"""The dashboard at ``/_/dashboard``: credentials, limits, audit, alerts, tokens and paper P&L.

    $ keybroker tokens create-admin alice          # once; paste it into the login page
    $ open http://127.0.0.1:8787/_/dashboard/

Served by ``keybroker serve`` on the gateway's own listeners (``app.py``
mounts ``dashboard_routes``), with every asset in the package: no CDN, no
Node build. ``routes.py`` holds who may do what; ``security.py`` the
headers and cross-site checks; ``sessions.py`` the login sessions;
``data.py`` what each page shows; ``pages.py`` the HTML shells;
``paper.py`` the seam the paper page reads through; ``static/`` the
hand-written script and style sheet.
"""

from keybroker.gateway.dashboard.pages import PREFIX
from keybroker.gateway.dashboard.paper import PaperSummary, PaperView
from keybroker.gateway.dashboard.routes import dashboard_routes

__all__ = ["PREFIX", "PaperSummary", "PaperView", "dashboard_routes"]
