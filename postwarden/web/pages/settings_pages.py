"""A domain's gateway, spam rules, routing rules and TLS policies: show, add, change, delete."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from postwarden.admin import gateway, routes, routing_rules, spam_rules, tls_policies
from postwarden.errors import PostwardenError
from postwarden.settings.model import InboundRule, OutboundRule
from postwarden.web.pages._common import announce, back_to, domain_page, refusal
from postwarden.web.render import Ctx, handler


def _route_names(ctx: Ctx) -> list[str]:
    return [r.name for r in routes.listing(ctx.admin())]


def _domain(ctx: Ctx) -> str:
    return str(ctx.request.path_params["domain"])


def _gateway(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    _, gw = gateway.show(ctx.admin(), _domain(ctx))
    ips = "\n".join(e.text for e in gw.ips)
    if ctx.form is not None:  # a refused save: show what was submitted, to correct it
        submitted: dict[str, Any] = {
            name: ctx.field(name) == "on" for name in ("enabled", *gateway.SWITCHES)
        }
        gw = replace(gw, route=ctx.field("route"), **submitted)
        ips = ctx.field("ips")
    return domain_page(
        ctx,
        "gateway",
        "gateway.html",
        status=status,
        error=error,
        heading="Inbound gateway",
        gw=gw,
        ips_text=ips,
        routes=_route_names(ctx),
    )


def _gateway_save(ctx: Ctx) -> Response:
    domain = _domain(ctx)
    switches = {name: ctx.field(name) == "on" for name in ("enabled", *gateway.SWITCHES)}
    described = " ".join(f"{k}={'on' if v else 'off'}" for k, v in switches.items())
    try:
        done = gateway.change(
            ctx.admin(f"gateway set {described} --domain {domain}"),
            domain,
            ips=ctx.field("ips"),
            route=ctx.field("route"),
            **switches,
        )
    except PostwardenError as exc:
        return _gateway(ctx, error=refusal(exc), status=400)
    announce(ctx, done.change, f"{done.change.domain}: inbound gateway saved")
    return back_to(ctx, "gateway")


def _spam(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    _, rules = spam_rules.rules(ctx.admin(), _domain(ctx))
    values = {k: ctx.field(k) for k in ("name", "field", "pattern")}
    return domain_page(
        ctx,
        "spam",
        "spam.html",
        status=status,
        error=error,
        heading="Spam filter",
        rules=rules,
        values=values,
    )


def _spam_add(ctx: Ctx) -> Response:
    domain, name = _domain(ctx), ctx.field("name").strip()
    field, pattern = ctx.field("field").strip(), ctx.field("pattern")
    admin = ctx.admin(
        f"spam-rule add {name} --field {field} --pattern {pattern!r} --domain {domain}"
    )
    try:
        change = spam_rules.add(admin, domain, name, field, pattern)
    except PostwardenError as exc:
        return _spam(ctx, error=refusal(exc), status=400)
    announce(ctx, change, f"{change.domain}: spam rule {name!r} added")
    return back_to(ctx, "spam")


def _spam_delete(ctx: Ctx) -> Response:
    domain, name = _domain(ctx), ctx.field("name")
    try:
        change = spam_rules.delete(
            ctx.admin(f"spam-rule delete {name} --domain {domain}"), domain, name
        )
    except PostwardenError as exc:
        return _spam(ctx, error=refusal(exc), status=400)
    announce(ctx, change, f"{change.domain}: spam rule {name!r} deleted")
    return back_to(ctx, "spam")


def _routing(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    domain = _domain(ctx)
    _, inbound = routing_rules.rules(ctx.admin(), domain, "inbound")
    _, outbound = routing_rules.rules(ctx.admin(), domain, "outbound")
    return domain_page(
        ctx,
        "routing",
        "routing.html",
        status=status,
        error=error,
        heading="Routing",
        inbound=inbound,
        outbound=outbound,
        routes=_route_names(ctx),
    )


def _routing_add(ctx: Ctx) -> Response:
    domain, direction = _domain(ctx), ctx.field("direction")
    name, route, condition = ctx.field("name").strip(), ctx.field("route"), ctx.field("condition")
    rule: InboundRule | OutboundRule
    if direction == "inbound":
        rule = InboundRule(
            name=name,
            route=route,
            condition=condition,
            unknown_recipients=ctx.field("unknown_recipients") == "on",
            keep_local_copy=ctx.field("keep_local_copy") == "on",
        )
    else:
        rule = OutboundRule(name=name, route=route, condition=condition, action=ctx.field("action"))
    command = f"routing {direction} add {name} --route {route} --condition {condition}"
    try:
        change = routing_rules.add(ctx.admin(f"{command} --domain {domain}"), domain, rule)
    except PostwardenError as exc:
        return _routing(ctx, error=refusal(exc), status=400)
    announce(ctx, change, f"{change.domain}: {direction} rule {name!r} added")
    return back_to(ctx, "routing")


def _routing_delete(ctx: Ctx) -> Response:
    domain, direction, name = _domain(ctx), ctx.field("direction"), ctx.field("name")
    admin = ctx.admin(f"routing {direction} delete {name} --domain {domain}")
    try:
        change = routing_rules.delete(admin, domain, direction, name)
    except PostwardenError as exc:
        return _routing(ctx, error=refusal(exc), status=400)
    announce(ctx, change, f"{change.domain}: {direction} rule {name!r} deleted")
    return back_to(ctx, "routing")


def _tls(ctx: Ctx, *, error: str = "", status: int = 200) -> Response:
    _, found = tls_policies.policies(ctx.admin(), _domain(ctx))
    values = {k: ctx.field(k) for k in ("title", "target", "partners")}
    return domain_page(
        ctx,
        "tls",
        "tls.html",
        status=status,
        error=error,
        heading="TLS policies",
        policies=[tls_policies.as_data(p) for p in found],
        values=values,
    )


def _tls_add(ctx: Ctx) -> Response:
    domain, title, target = _domain(ctx), ctx.field("title").strip(), ctx.field("target")
    partners = ctx.field("partners")
    command = f"tls add --title {title!r} --target {target} {' '.join(partners.split())}"
    try:
        change, policy = tls_policies.add(
            ctx.admin(f"{command} --domain {domain}"),
            domain,
            title=title,
            target=target,
            partners=[partners],
            trusted_ca=ctx.field("trusted_ca") == "on",
            hostname_match=ctx.field("hostname_match") == "on",
        )
    except PostwardenError as exc:
        return _tls(ctx, error=refusal(exc), status=400)
    announce(ctx, change, f"{change.domain}: TLS policy {policy.title!r} added")
    return back_to(ctx, "tls")


def _tls_delete(ctx: Ctx) -> Response:
    domain, title = _domain(ctx), ctx.field("title")
    try:
        change, _ = tls_policies.delete(
            ctx.admin(f"tls delete {title!r} --domain {domain}"), domain, title
        )
    except PostwardenError as exc:
        return _tls(ctx, error=refusal(exc), status=400)
    announce(ctx, change, f"{change.domain}: TLS policy {title!r} deleted")
    return back_to(ctx, "tls")


ROUTES = [
    Route("/d/{domain}/gateway", handler(_gateway)),
    Route("/d/{domain}/gateway", handler(_gateway_save), methods=["POST"]),
    Route("/d/{domain}/spam", handler(_spam)),
    Route("/d/{domain}/spam/add", handler(_spam_add), methods=["POST"]),
    Route("/d/{domain}/spam/delete", handler(_spam_delete), methods=["POST"]),
    Route("/d/{domain}/routing", handler(_routing)),
    Route("/d/{domain}/routing/add", handler(_routing_add), methods=["POST"]),
    Route("/d/{domain}/routing/delete", handler(_routing_delete), methods=["POST"]),
    Route("/d/{domain}/tls", handler(_tls)),
    Route("/d/{domain}/tls/add", handler(_tls_add), methods=["POST"]),
    Route("/d/{domain}/tls/delete", handler(_tls_delete), methods=["POST"]),
]
