"""Allowed and blocked IPs: a page of entries (sorted by recent blocks if asked), batch add
with a note, and deletion of selected entries after a confirmation page."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from postwarden.admin import iplists
from postwarden.errors import PostwardenError
from postwarden.settings.model import MAX_LISTED_IPS
from postwarden.web.pages._common import announce, back_to, domain_page, refusal
from postwarden.web.render import Ctx, handler

PAGE_SIZE = 100
FIELDS = {"allowed": ("allowed_ips", "allowed"), "blocked": ("blocked_ips", "blocked")}


def _list_page(ctx: Ctx, tab: str, *, error: str = "", status: int = 200) -> Response:
    field, noun = FIELDS[tab]
    query = ctx.request.query_params
    sort = "recent" if query.get("sort") == "recent" and tab == "blocked" else ""
    try:
        page_number = max(1, int(query.get("page", "1")))
    except ValueError:
        page_number = 1

    def one_page(number: int) -> iplists.Listing:
        return iplists.listing(
            ctx.admin(),
            ctx.request.path_params["domain"],
            field,
            sort=sort or None,
            offset=(number - 1) * PAGE_SIZE,
            limit=PAGE_SIZE,
        )

    listing = one_page(page_number)
    pages = max(1, -(-listing.total // PAGE_SIZE))
    if page_number > pages:  # past the end (entries were deleted): the last page
        page_number = pages
        listing = one_page(pages)
    return domain_page(
        ctx,
        tab,
        "iplist.html",
        status=status,
        error=error,
        heading=f"{noun.capitalize()} IPs",
        listing=listing,
        noun=noun,
        history=tab == "blocked",
        sort=sort,
        page_number=page_number,
        pages=pages,
        limit=f"{MAX_LISTED_IPS:,}",
        entries_text=ctx.field("entries"),
        note_text=ctx.field("note"),
    )


def _add(ctx: Ctx, tab: str) -> Response:
    field, _ = FIELDS[tab]
    domain = ctx.request.path_params["domain"]
    text, note = ctx.field("entries"), ctx.field("note").strip()
    tokens = text.split()
    command = f"{'allow' if tab == 'allowed' else 'block'} add {' '.join(tokens[:20])}"
    command += " ..." if len(tokens) > 20 else ""
    command += f" --note {note!r}" if note else ""
    try:
        done = iplists.add(
            ctx.admin(f"{command} --domain {domain}"), domain, field, [text], note or None
        )
    except PostwardenError as exc:
        return _list_page(ctx, tab, error=refusal(exc), status=400)
    summary = (
        f"{done.change.domain} {field}: {len(done.added)} added, {len(done.updated)} note(s)"
        f" updated, {len(done.unchanged)} already listed"
    )
    announce(ctx, done.change, summary)
    return back_to(ctx, tab)


def _confirm(ctx: Ctx, tab: str) -> Response:
    entries = ctx.fields("entry")
    if not entries:
        return _list_page(ctx, tab, error="Select the entries to delete first.", status=400)
    return domain_page(
        ctx, tab, "confirm_delete.html", heading="Delete", entries=entries, noun=FIELDS[tab][1]
    )


def _delete(ctx: Ctx, tab: str) -> Response:
    field, _ = FIELDS[tab]
    domain = ctx.request.path_params["domain"]
    entries = ctx.fields("entry")
    verb = "allow" if tab == "allowed" else "block"
    command = f"{verb} delete {' '.join(entries[:20])}{' ...' if len(entries) > 20 else ''}"
    try:
        done = iplists.delete(ctx.admin(f"{command} --domain {domain}"), domain, field, entries)
    except PostwardenError as exc:
        return _list_page(ctx, tab, error=refusal(exc), status=400)
    announce(ctx, done.change, f"{done.change.domain} {field}: {len(done.deleted)} deleted")
    return back_to(ctx, tab)


def _routes(tab: str) -> list[Route]:
    base = f"/d/{{domain}}/{tab}"
    return [
        Route(base, handler(lambda ctx: _list_page(ctx, tab))),
        Route(f"{base}/add", handler(lambda ctx: _add(ctx, tab)), methods=["POST"]),
        Route(f"{base}/confirm", handler(lambda ctx: _confirm(ctx, tab)), methods=["POST"]),
        Route(f"{base}/delete", handler(lambda ctx: _delete(ctx, tab)), methods=["POST"]),
    ]


ROUTES = [*_routes("allowed"), *_routes("blocked")]
