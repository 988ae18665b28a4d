"""Plain aiohttp routes on Faust's web server (the web console's page and API), through the
aiohttp application of Faust's aiohttp driver (``Web.web_app``).

aiohttp answers with the first route that matches, and Faust adds its blueprints (its
"production index" at ``/`` among them) when the server starts: routes added before that,
as ``create_app`` does, come first. tests/test_faust_seam.py checks both."""

from __future__ import annotations

from collections.abc import Iterable

import faust
from aiohttp import web


def add_routes(app: faust.App, routes: Iterable[web.RouteDef]) -> None:
    """Before the app starts (a router is frozen once its server runs)."""
    app.web.web_app.router.add_routes(list(routes))
