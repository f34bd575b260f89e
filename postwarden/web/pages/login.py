"""Logging in and out: the only pages without a session."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from postwarden.admin import web_users
from postwarden.admin.session import Actor, Admin
from postwarden.web import security
from postwarden.web.render import Ctx, WebConfig, handler, page


def _safe_next(target: str) -> str:
    """Only a path on this console: never an absolute URL elsewhere (open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _form(
    request: Request, *, name: str = "", error: str = "", status: int = 200, target: str = ""
) -> Response:
    token = security.login_token(request)
    response = page(
        request,
        "login.html",
        status,
        login_token=token,
        next=_safe_next(target or request.query_params.get("next", "/")),
        name=name,
        error=error,
    )
    security.set_login_cookie(response, request, token)
    return response


async def login_page(request: Request) -> Response:
    return _form(request)


async def login(request: Request) -> Response:
    config: WebConfig = request.app.state.config
    form = await request.form(max_fields=10, max_files=0)
    client = request.client.host if request.client else "unknown"
    expected = request.cookies.get(security.LOGIN_COOKIE, "")
    if not security.tokens_match(expected, form.get("login_token")):
        return page(
            request,
            "error.html",
            403,
            message="The login form's security token is missing or wrong. Reload the page.",
        )
    name, password = str(form.get("name", ""))[:200], str(form.get("password", ""))
    target = str(form.get("next", "/"))
    if not request.app.state.throttle.allow(client):
        return _form(
            request,
            name=name,
            error="Too many login attempts from this address; wait a minute.",
            status=429,
            target=target,
        )
    admin = Admin(config.store, Actor(name[:64], "web"))
    old = security.session_token(request)
    try:
        web = await run_in_threadpool(web_users.login, admin, name, password, client)
    except web_users.LoginRefused as exc:
        return _form(request, name=name, error=str(exc), status=401, target=target)
    if old:  # the session token is new at every login; the old one ends
        await run_in_threadpool(web_users.logout, admin, old)
    response = RedirectResponse(_safe_next(target), status_code=303)
    security.set_session_cookie(response, request, web.token)
    response.delete_cookie(security.LOGIN_COOKIE, path="/login")
    return response


def _logout(ctx: Ctx) -> Response:
    web_users.logout(ctx.admin(), security.session_token(ctx.request))
    response = RedirectResponse("/login", status_code=303)
    security.clear_session_cookie(response, ctx.request)
    return response


ROUTES = [
    Route("/login", login_page),
    Route("/login", login, methods=["POST"]),
    Route("/logout", handler(_logout), methods=["POST"]),
]
