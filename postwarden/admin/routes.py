"""Routes: named servers that routing rules and gateways send mail to (server-wide).

Description:
    A route is a host name (MX lookup unless ``mx_lookup`` is off) or an ``[address]``, a
    port, and whether TLS is required. A route pointing back at this server is refused (it
    would loop; :mod:`postwarden.postfix.loop_guard`, which also refuses when it cannot
    check); a route a rule or gateway uses cannot be deleted (the error names them).
    Routes are shared by all domains: only a server administrator changes them, and a
    domain administrator sees only its own domains among their users.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from postwarden.admin.edit import Change, edit_server
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Actor, Admin
from postwarden.postfix.loop_guard import RouteWouldLoop, refuse_loop
from postwarden.settings.model import Route, Settings


@dataclass(frozen=True)
class RouteView:
    name: str
    route: Route
    used_by: list[str]

    def as_data(self) -> dict[str, Any]:
        route = self.route
        return {
            "name": self.name,
            "host": route.host,
            "port": route.port,
            "mx_lookup": route.mx_lookup,
            "tls": route.tls,
            "nexthop": route.nexthop,
            "used_by": self.used_by,
        }


def users_of(settings: Settings, name: str, actor: Actor | None = None) -> list[str]:
    """The rules and gateways that use route *name* (those *actor* may see), for messages."""
    users = []
    for domain, block in settings.domains.items():
        if block is None or (actor is not None and not actor.reaches(domain)):
            continue
        users += [
            f"{domain} inbound rule {r.name!r}" for r in block.inbound_routing if r.route == name
        ]
        users += [
            f"{domain} outbound rule {r.name!r}" for r in block.outbound_routing if r.route == name
        ]
        if block.gateway.route == name:
            users.append(f"{domain} gateway")
    return users


def listing(admin: Admin) -> list[RouteView]:
    settings = admin.read().settings
    return [
        RouteView(name, route, users_of(settings, name, admin.actor))
        for name, route in settings.routes.items()
    ]


def put(
    admin: Admin,
    name: str,
    *,
    create: bool,
    postfix_config_dir: str | None = None,
    **given: Any,
) -> tuple[Change, RouteView]:
    """Add (*create*) or edit route *name*; options given as None keep their value."""
    result: list[RouteView] = []

    def apply(settings: Settings) -> Settings:
        routes = dict(settings.routes)
        if create and name in routes:
            raise BadInput(f"a route named {name!r} exists already (use route edit)")
        if not create and name not in routes:
            raise BadInput(f"no route named {name!r}")
        base = routes.get(name, Route())
        route = replace(base, **{k: v for k, v in given.items() if v is not None})
        try:
            refuse_loop(route, settings.domains, postfix_config_dir)
        except RouteWouldLoop as exc:
            raise BadInput(str(exc)) from None
        routes[name] = route
        new = replace(settings, routes=routes)
        result[:] = [RouteView(name, route, users_of(new, name))]
        return new

    return edit_server(admin, "a route", apply), result[0]


def delete(admin: Admin, name: str) -> Change:
    def apply(settings: Settings) -> Settings:
        routes = dict(settings.routes)
        if name not in routes:
            raise BadInput(f"no route named {name!r}")
        users = users_of(settings, name)
        if users:
            raise BadInput(
                f"route {name!r} is used by {', '.join(users)}; change or delete those first"
            )
        del routes[name]
        return replace(settings, routes=routes)

    return edit_server(admin, "a route", apply)
