"""The list of hosted domains, a domain's overview, and "give it its own settings"."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from postwarden.admin import dkim, domains, scope
from postwarden.errors import PostwardenError
from postwarden.web.pages._common import announce, domain_page, refusal, view
from postwarden.web.render import Ctx, handler

TABS = ("", "allowed", "blocked", "gateway", "spam", "routing", "dkim", "tls")


def _domains(ctx: Ctx, error: str = "", status: int = 200) -> Response:
    rows = domains.listing(ctx.admin())
    return ctx.page("domains.html", status, rows=rows, error=error)


def _add_domain(ctx: Ctx) -> Response:
    name = ctx.field("domain").strip()
    try:
        change = domains.add(ctx.admin(f"domain add {name}"), name)
    except PostwardenError as exc:
        return _domains(ctx, refusal(exc), 400)
    announce(ctx, change, f"{change.domain}: added")
    return ctx.redirect("/")


def _go(ctx: Ctx) -> Response:
    """The domain switcher (a GET form, so it works without JavaScript)."""
    domain = ctx.request.query_params.get("domain", "")
    tab = ctx.request.query_params.get("page", "")
    target = view(ctx, domain).domain
    return ctx.redirect(f"/d/{target}/{tab if tab in TABS else ''}")


def _overview(ctx: Ctx) -> Response:
    shown = view(ctx, ctx.request.path_params["domain"])
    name, _block, keys = dkim.show(ctx.admin(), shown.domain)
    active = next((k.row.selector for k in keys if k.row.status.value == "active"), None)
    state = f"signs with selector {active}" if active else "no active key"
    settings = ctx.admin().read().settings
    subdomains = [d for d in scope.inheriting(settings, name) if ctx.web.user.actor().reaches(d)]
    return domain_page(ctx, "", "overview.html", dkim_state=state, subdomains=subdomains)


def _own(ctx: Ctx) -> Response:
    domain = ctx.request.path_params["domain"]
    back = ctx.field("back")
    change = domains.give_own_settings(ctx.admin(f"give {domain} its own settings"), domain)
    if change.copied_from:
        ctx.say("ok", f"{domain} now has its own settings, copied from {change.copied_from}")
    else:
        ctx.say("info", f"{domain} has its own settings already")
    return ctx.redirect(f"/d/{domain}/{back if back in TABS else ''}")


ROUTES = [
    Route("/", handler(_domains)),
    Route("/domains/add", handler(_add_domain), methods=["POST"]),
    Route("/go", handler(_go)),
    Route("/d/{domain}/", handler(_overview)),
    Route("/d/{domain}/own", handler(_own), methods=["POST"]),
]
