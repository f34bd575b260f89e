"""``postwarden route list | add NAME --host H ... | edit NAME ... | delete NAME``.

Routes are named servers that routing rules send mail to: a host name (MX lookup unless
``--no-mx``) or an ``[address]``, a port, and whether TLS is required (an ``encrypt`` TLS
policy for that next hop) or optional. A route pointing back at this server is refused
(it would loop; see :mod:`postwarden.postfix.loop_guard`). A route that a routing rule or
a gateway uses cannot be deleted: the error names the users. Edits apply to the next
message, queued mail included. The work is :mod:`postwarden.admin.routes`'s, shared with
the web console.
"""

from __future__ import annotations

import argparse

from postwarden.admin import routes
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table


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
        _settings.add_dry_run(sub)
    deleting = add("delete", "delete a route no rule uses")
    deleting.add_argument("name", metavar="NAME")
    _settings.add_dry_run(deleting)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        rows = [view.as_data() for view in routes.listing(_settings.admin(env))]
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
    admin = _settings.admin(env, args)
    if args.action == "delete":
        change = routes.delete(admin, args.name)
        data: dict[str, object] = {"name": args.name, "deleted": True}
    else:
        change, view = routes.put(
            admin,
            args.name,
            create=args.action == "add",
            postfix_config_dir=args.postfix_config_dir or env.environ.get("MAIL_CONFIG"),
            host=args.host,
            port=args.port,
            mx_lookup=args.mx_lookup,
            tls=args.tls,
        )
        data = view.as_data()
    verb = {"add": "added", "edit": "changed", "delete": "deleted"}[args.action]
    _settings.report(env, change, data, f"route {args.name!r} {verb}")
    return ExitStatus.OK


COMMAND = Command("route", "list, add, edit or delete routes", configure, run)
