"""Templates, one-time messages, and the request context every page handler receives.

Description:
    :func:`handler` wraps a page function: it finds the session (else sends the browser to the
    login page), checks the CSRF token of every POST (403 and nothing done when it is missing
    or wrong), and turns the service layer's refusals into pages: ``NotFound`` is 404 (a
    domain another administrator owns looks like one that does not exist), ``Forbidden``
    403. Bad input is the page's own business: it shows the form again with the message.

    Messages after a change ("3 added", warnings) survive the redirect that follows every
    successful POST (post/redirect/get) in a small per-session store in memory.
"""

from __future__ import annotations

import datetime
import functools
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from postwarden import __version__
from postwarden.admin import scope
from postwarden.admin.errors import Forbidden, NotFound
from postwarden.admin.session import Actor, Admin
from postwarden.admin.web_users import WebSession, session
from postwarden.errors import PostwardenError
from postwarden.store import Store
from postwarden.web import security

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_FORM_FIELDS = 20_000  # a 10,000-entry deletion is one field per entry
_jinja = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_jinja.filters["when"] = lambda t: (
    datetime.datetime.fromtimestamp(t).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if t else "—"
)


@dataclass(frozen=True)
class WebConfig:
    """What the console serves and how."""

    store: Store
    dkim_nameserver: str | None = None
    dkim_timeout: float = 5.0
    postfix_config_dir: str | None = None  # the instance a route must not point back at
    login_limit: int = 20


@dataclass
class Flash:
    """One-time messages per session, kept in memory until the next page shows them."""

    messages: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, kind: str, text: str) -> None:
        with self.lock:
            if len(self.messages) > 10_000:
                self.messages.clear()
            self.messages.setdefault(key, []).append((kind, text))

    def take(self, key: str) -> list[tuple[str, str]]:
        with self.lock:
            return self.messages.pop(key, [])


@dataclass
class Ctx:
    """One request to one page: who, where, and the form if it was a POST."""

    request: Request
    config: WebConfig
    web: WebSession
    form: FormData | None
    flash: Flash

    @property
    def user(self) -> str:
        return self.web.user.name

    def admin(self, command: str = "") -> Admin:
        """The service layer's session for this user; *command* is what the audit shows."""
        actor = self.web.user.actor(f"web: {command}" if command else "")
        return Admin(self.config.store, actor)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name) if self.form is not None else None
        return value if isinstance(value, str) else default

    def fields(self, name: str) -> list[str]:
        if self.form is None:
            return []
        return [v for v in self.form.getlist(name) if isinstance(v, str)]

    def say(self, kind: str, text: str) -> None:
        self.flash.add(self.web.csrf, kind, text)

    def page(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return page(self.request, template, status, web=self.web, flash=self.flash, **values)

    def redirect(self, path: str) -> RedirectResponse:
        return RedirectResponse(path, status_code=303)


def page(
    request: Request,
    template: str,
    status: int = 200,
    *,
    web: WebSession | None = None,
    flash: Flash | None = None,
    **values: Any,
) -> HTMLResponse:
    """Render *template* with the navigation the user may see."""
    nav: list[str] = []
    if web is not None:
        try:
            settings = Admin(request.app.state.config.store, web.user.actor()).read()
            nav = scope.visible_domains(settings.settings, web.user.actor())
        except (PostwardenError, OSError):  # the navigation never stops an error page
            nav = []
    html = _jinja.get_template(template).render(
        request=request,
        user=web.user if web else None,
        csrf=web.csrf if web else "",
        nav_domains=nav,
        messages=flash.take(web.csrf) if (flash and web) else [],
        version=__version__,
        quote=quote,
        **values,
    )
    return HTMLResponse(html, status_code=status)


Page = Callable[[Ctx], Response]


def handler(function: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page that needs a logged-in user (see the module description)."""

    @functools.wraps(function)
    async def endpoint(request: Request) -> Response:
        config: WebConfig = request.app.state.config
        flash: Flash = request.app.state.flash
        admin = Admin(config.store, Actor("-", "web"))
        token = security.session_token(request)
        web = await run_in_threadpool(session, admin, token) if token else None
        if web is None:
            if request.method != "GET":
                return page(request, "error.html", 403, message="Your session has ended.")
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/login?next={target}", status_code=303)
        form = None
        if request.method == "POST":
            form = await request.form(max_fields=MAX_FORM_FIELDS, max_files=0)
            if not security.tokens_match(web.csrf, form.get("csrf")):
                return page(
                    request,
                    "error.html",
                    403,
                    web=web,
                    message="The form's security token is missing or wrong; nothing was changed."
                    " Reload the page and try again.",
                )
        ctx = Ctx(request, config, web, form, flash)
        try:
            return await run_in_threadpool(function, ctx)
        except NotFound as exc:
            return ctx.page("error.html", 404, message=str(exc))
        except Forbidden as exc:
            return ctx.page("error.html", 403, message=str(exc))

    return endpoint
