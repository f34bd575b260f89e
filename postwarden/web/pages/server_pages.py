"""Server-wide pages: routes (read-only for a domain administrator), history, status."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from postwarden.admin import history, routes, status
from postwarden.errors import PostwardenError
from postwarden.web.pages._common import refusal
from postwarden.web.render import Ctx, handler


def _routes(ctx: Ctx, *, error: str = "", status_code: int = 200) -> Response:
    values = {k: ctx.field(k) for k in ("name", "host", "port")}
    return ctx.page(
        "routes.html",
        status_code,
        routes=routes.listing(ctx.admin()),
        editable=ctx.web.user.actor().server_admin,
        values=values,
        error=error,
    )


def _route_save(ctx: Ctx) -> Response:
    name, host, port = ctx.field("name").strip(), ctx.field("host").strip(), ctx.field("port")
    exists = any(r.name == name for r in routes.listing(ctx.admin()))
    verb = "edit" if exists else "add"
    admin = ctx.admin(f"route {verb} {name} --host {host} --port {port}")
    try:
        if not port.strip().isdigit():
            raise routes.BadInput(f"port {port!r} is not a number from 1 to 65535")
        change, _ = routes.put(
            admin,
            name,
            create=not exists,
            postfix_config_dir=ctx.config.postfix_config_dir,
            host=host,
            port=int(port),
            mx_lookup=ctx.field("mx_lookup") == "on",
            tls=ctx.field("tls") or "optional",
        )
    except PostwardenError as exc:
        return _routes(ctx, error=refusal(exc), status_code=400)
    ctx.say("ok", f"route {name!r} {'changed' if exists else 'added'}")
    for note in change.notes():
        ctx.say("warning", note.removeprefix("warning: "))
    return ctx.redirect("/routes")


def _route_delete(ctx: Ctx) -> Response:
    name = ctx.field("name")
    try:
        routes.delete(ctx.admin(f"route delete {name}"), name)
    except PostwardenError as exc:
        return _routes(ctx, error=refusal(exc), status_code=400)
    ctx.say("ok", f"route {name!r} deleted")
    return ctx.redirect("/routes")


def _history(ctx: Ctx) -> Response:
    try:
        limit = min(max(int(ctx.request.query_params.get("limit", "50")), 1), 5000)
    except ValueError:
        limit = 50
    found = history.entries(ctx.admin(), limit + 1)
    shown = []
    for e in found[:limit]:
        is_diff = e.diff.startswith("---")
        shown.append(
            {
                "time": e.time,
                "user": e.user,
                "what": "the file was edited" if e.source == "file" else e.command,
                "summary": history.summary(e.diff),
                "diff": e.diff if is_diff and ctx.web.user.actor().server_admin else "",
            }
        )
    return ctx.page("history.html", entries=shown, more=len(found) > limit, limit=limit)


def _status(ctx: Ctx) -> Response:
    data, _ = status.gather(ctx.admin(), timeout=2.0)
    return ctx.page("status.html", data=data)


ROUTES = [
    Route("/routes", handler(_routes)),
    Route("/routes/add", handler(_route_save), methods=["POST"]),
    Route("/routes/delete", handler(_route_delete), methods=["POST"]),
    Route("/history", handler(_history)),
    Route("/status", handler(_status)),
]
