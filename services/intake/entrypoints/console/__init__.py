"""The operator console: staff pages served by the intake at `/console`, behind staff login.

Each module of this package that defines `routes = web.RouteTableDef()` contributes its pages;
`add_console(app)` registers them all, with the dispatcher client the pages' actions use.
"""

from __future__ import annotations

import importlib
import pkgutil

from aiohttp import web

from services.intake.entrypoints.console.common import DISPATCHER, DispatcherClient, console_middleware
from shared.settings import Settings


def add_console(app: web.Application, settings: Settings) -> None:
    """Every console module's routes on `app`, and the client of the dispatcher they call."""
    client = DispatcherClient(settings.dispatcher_base_url, timeout_s=settings.dispatcher_timeout_s)
    app[DISPATCHER] = client
    app.cleanup_ctx.append(client.context)
    app.middlewares.append(console_middleware)
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        routes = getattr(module, "routes", None)
        if isinstance(routes, web.RouteTableDef):
            app.router.add_routes(routes)
