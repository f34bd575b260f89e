"""What the page modules share: the domain a page is about, refusals and messages in words."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from postwarden.admin import scope
from postwarden.admin.edit import Change
from postwarden.admin.errors import Forbidden, NotFound
from postwarden.errors import PostwardenError
from postwarden.settings.load import SettingsInvalid
from postwarden.web.render import Ctx


def refusal(exc: PostwardenError) -> str:
    """The text of a refused change, as the command line would print it.

    Not for a domain the user may not reach or a setting it may only read: those are raised
    again, for the handler's 404 and 403 pages.
    """
    if isinstance(exc, NotFound | Forbidden):
        raise exc
    if isinstance(exc, SettingsInvalid):
        problems = [str(f) for f in exc.findings if not f.warning]
        return "\n".join(["The change was refused; nothing was changed:", *problems])
    return str(exc)


def announce(ctx: Ctx, change: Change, summary: str) -> None:
    """The outcome of an edit for the next page: what was done, then copies and warnings."""
    ctx.say(
        "ok" if change.changed else "info", summary if change.changed else summary + " (no change)"
    )
    for note in change.notes():
        ctx.say("warning", note.removeprefix("warning: "))


def view(ctx: Ctx, domain: str) -> scope.DomainView:
    """The domain of the URL, if this user may see it (else NotFound: a 404 page)."""
    settings = ctx.admin().read().settings
    return scope.view(settings, scope.select(settings, ctx.web.user.actor(), domain))


def domain_page(
    ctx: Ctx, tab: str, template: str, *, status: int = 200, error: str = "", **values: Any
) -> Response:
    domain = ctx.request.path_params["domain"]
    return ctx.page(template, status, view=view(ctx, domain), tab=tab, error=error, **values)


def back_to(ctx: Ctx, tab: str) -> Response:
    return ctx.redirect(f"/d/{ctx.request.path_params['domain']}/{tab}")
