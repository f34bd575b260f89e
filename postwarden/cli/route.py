"""``postwarden route list | add NAME --host H ... | edit NAME ... | delete NAME``.

Routes are named servers that routing rules send mail to: a host name (MX lookup unless
``--no-mx``) or an ``[address]``, a port, and whether TLS is required (an ``encrypt`` TLS
policy for that next hop) or optional. A route pointing back at this server is refused
(it would loop; see :mod:`postwarden.postfix.loop_guard`). A route that a routing rule or
a gateway uses cannot be deleted: the error names the users. Edits apply to the next
message, queued mail included.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.postfix.loop_guard import RouteWouldLoop, refuse_loop
from postwarden.settings.model import Route, Settings


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    add("list", "list the routes and what uses them")
    adding = add("add", "add a route")
    editing = add("edit", "change a route")
    for sub, required in ((adding, True), (editing, False)):
        sub.add_argument("name", metavar="NAME")
        sub.add_argument("--host", required=required, metavar="H", help="host name, or [address]")
        sub.add_argument("--port", type=int, metavar="N", help="TCP port (default 25)")
        sub.add_argument(
            "--mx",
            dest="mx_lookup",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="look up MX records for the host name (default)",
        )
        sub.add_argument("--tls", choices=["required", "optional"])
        sub.add_argument(
            "--postfix-config-dir",
            metavar="DIR",
            help="the Postfix instance whose own addresses a route must not be"
            " (default: MAIL_CONFIG, else /etc/postfix)",
        )
    deleting = add("delete", "delete a route no rule uses")
    deleting.add_argument("name", metavar="NAME")


def users_of(settings: Settings, name: str) -> list[str]:
    """The rules and gateways that use route *name*, for messages."""
    users = []
    for domain, block in settings.domains.items():
        if block is None:
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


def _as_data(name: str, route: Route, settings: Settings) -> dict[str, Any]:
    return {
        "name": name,
        **asdict(route),
        "nexthop": route.nexthop,
        "used_by": users_of(settings, name),
    }


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        settings = _settings.load(env).settings
        rows = [_as_data(n, r, settings) for n, r in settings.routes.items()]
        env.emit(
            rows,
            lambda: (
                table(
                    [
                        [r["name"], r["nexthop"], r["tls"], ", ".join(r["used_by"]) or "-"]
                        for r in rows
                    ],
                    ["NAME", "NEXT HOP", "TLS", "USED BY"],
                )
                or "no routes"
            ),
        )
        return ExitStatus.OK
    result: list[dict[str, Any]] = []

    def change(settings: Settings) -> Settings:
        routes = dict(settings.routes)
        if args.action == "delete":
            if args.name not in routes:
                raise BadInput(f"no route named {args.name!r}")
            users = users_of(settings, args.name)
            if users:
                raise BadInput(
                    f"route {args.name!r} is used by {', '.join(users)};"
                    " change or delete those first"
                )
            del routes[args.name]
            result.append({"name": args.name, "deleted": True})
            return replace(settings, routes=routes)
        if args.action == "add" and args.name in routes:
            raise BadInput(f"a route named {args.name!r} exists already (use route edit)")
        if args.action == "edit" and args.name not in routes:
            raise BadInput(f"no route named {args.name!r}")
        given = {"host": args.host, "port": args.port, "mx_lookup": args.mx_lookup, "tls": args.tls}
        base = routes.get(args.name, Route())
        route = replace(base, **{k: v for k, v in given.items() if v is not None})
        try:
            refuse_loop(
                route,
                settings.domains,
                args.postfix_config_dir or env.environ.get("MAIL_CONFIG"),
            )
        except RouteWouldLoop as exc:
            raise BadInput(str(exc)) from None
        routes[args.name] = route
        new = replace(settings, routes=routes)
        result.append(_as_data(args.name, route, new))
        return new

    _settings.edit(env, change)
    data = result[-1]
    verb = {"add": "added", "edit": "changed", "delete": "deleted"}[args.action]
    env.emit(data, f"route {args.name!r} {verb}")
    return ExitStatus.OK


COMMAND = Command("route", "list, add, edit or delete routes", configure, run)
