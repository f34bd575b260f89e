"""The console's application: routes, static files, security headers, shared state.

Description:
    :func:`create_app` builds a Starlette application for one settings file and state
    directory. Every page comes from :mod:`postwarden.web.pages`; ``/static`` serves the
    stylesheet and the progressive-enhancement script; any unknown path is a 404 page.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from postwarden.web import security
from postwarden.web.pages import dkim, iplists, login, overview, server_pages, settings_pages
from postwarden.web.render import Flash, WebConfig, page

STATIC = Path(__file__).resolve().parent / "static"


async def _http_error(request: Request, exc: Exception) -> Response:
    code = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {404: "No such page.", 405: "Not allowed here."}.get(code, "Something went wrong.")
    return page(request, "error.html", code, message=message, status_code=code)


def create_app(config: WebConfig) -> Starlette:
    routes = [
        *login.ROUTES,
        *overview.ROUTES,
        *iplists.ROUTES,
        *settings_pages.ROUTES,
        *dkim.ROUTES,
        *server_pages.ROUTES,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(security.SecurityHeaders)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.config = config
    app.state.flash = Flash()
    app.state.throttle = security.LoginThrottle(limit=config.login_limit)
    return app
