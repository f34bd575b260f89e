"""``postwarden route list | add NAME --host H ... | edit NAME ... | delete NAME``.

Routes are named servers that routing rules send mail to: a host name (MX lookup unless
``--no-mx``) or an ``[address]``, a port, and whether TLS is required (an ``encrypt`` TLS
policy for that next hop) or optional. A route pointing back at this server is refused
(it would loop). A route that a routing rule or a gateway uses cannot be deleted: the error
names the users. Edits apply to the next message, queued mail included.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from dataclasses import asdict, replace
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.postfix.postconf import (
    PostfixUnavailable,
    inet_listeners,
    parameters,
    split_list,
)
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
            help="the Postfix instance whose own addresses a route must not be",
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


def _own_endpoints(config_dir: str | None) -> tuple[set[str], set[tuple[str, int]]]:
    """This server's names and (address, port) listeners, from its Postfix configuration."""
    try:
        values = parameters(["myhostname", "mydestination", "inet_interfaces"], config_dir)
        services = inet_listeners(config_dir)
    except PostfixUnavailable:
        return set(), set()
    names = {values["myhostname"].lower(), "localhost"}
    names.update(d.lower() for d in split_list(values["mydestination"]) if ":" not in d)
    return names, services


def _refuse_loop(route: Route, config_dir: str | None) -> None:
    names, listeners = _own_endpoints(config_dir)
    host = route.host.strip("[]").rstrip(".").lower()
    if host in names and not route.address:
        raise BadInput(f"route host {route.host} is this server: mail sent there would loop")
    address = route.address
    if address and any(
        port == route.port and (_same_ip(own, address) or (own == "*" and _is_local(address)))
        for own, port in listeners
    ):
        raise BadInput(
            f"route [{address}]:{route.port} is one of this server's own listeners:"
            " mail sent there would loop"
        )


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _is_local(address: str) -> bool:
    """Whether *address* is one of this host's addresses (it can be bound to)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else (socket.AF_INET)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except (OSError, ValueError):
        return False
    return True


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
        _refuse_loop(route, args.postfix_config_dir)
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
