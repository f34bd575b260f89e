"""``postwarden web-user add|list|delete|passwd``: users of the web console.

Description:
    ``add NAME --role admin|domain-admin [--domain D]`` creates a user; a server administrator
    (``admin``) sees and changes everything, a domain administrator only its domain and its
    subdomains. The password is read from a prompt (twice, not echoed) or from the first
    line of ``--password-file F`` (``-`` for standard input); at least 10 characters. It is
    kept as an Argon2id hash in the state database. ``passwd NAME`` sets a new password
    (ending the user's sessions, lifting a lockout). The work is
    :mod:`postwarden.admin.web_users`'s.

Security:
    Passwords are never echoed, logged or recorded; the audit trail records that a user was
    added, deleted or given a new password, and by whom.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
from pathlib import Path
from typing import Any

from postwarden.admin import web_users
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    adding = add("add", "add a web console user")
    adding.add_argument("name", metavar="NAME")
    adding.add_argument("--role", required=True, choices=web_users.ROLES)
    adding.add_argument("--domain", metavar="D", help="the domain of a domain administrator")
    add("list", "list the web console users")
    deleting = add("delete", "delete a web console user (ends its sessions)")
    deleting.add_argument("name", metavar="NAME")
    passwd = add("passwd", "set a user's password (ends its sessions)")
    passwd.add_argument("name", metavar="NAME")
    for sub in (adding, passwd):
        sub.add_argument(
            "--password-file",
            metavar="F",
            help="read the password from the first line of F ('-': standard input)",
        )


def _password(env: Environment, args: argparse.Namespace) -> str:
    source = args.password_file
    if source == "-":
        return env.stdin.readline().rstrip("\r\n")
    if source:
        lines = Path(source).read_text().splitlines()
        return lines[0] if lines else ""
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise BadInput("the two passwords differ; nothing was changed")
    return first


def _when(timestamp: float | None) -> str | None:
    if not timestamp:
        return None
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    admin = _settings.admin(env)
    if args.action == "list":
        users = web_users.listing(admin)
        rows: list[dict[str, Any]] = [
            {
                "name": u.name,
                "role": u.role,
                "domain": u.domain,
                "last_login": _when(u.last_login),
                "locked_until": _when(u.locked_until),
            }
            for u in users
        ]
        env.emit(
            rows,
            lambda: (
                table(
                    [
                        [r["name"], r["role"], r["domain"] or "-", r["last_login"] or "-"]
                        for r in rows
                    ],
                    ["NAME", "ROLE", "DOMAIN", "LAST LOGIN"],
                )
                or "no web users (add one with `postwarden web-user add NAME --role admin`)"
            ),
        )
        return ExitStatus.OK
    if args.action == "add":
        user = web_users.add(admin, args.name, args.role, args.domain, _password(env, args))
        where = f" of {user.domain}" if user.domain else ""
        env.emit(
            {"name": user.name, "role": user.role, "domain": user.domain},
            f"web user {user.name!r} added ({user.role}{where})",
        )
    elif args.action == "delete":
        web_users.delete(admin, args.name)
        env.emit({"name": args.name, "deleted": True}, f"web user {args.name!r} deleted")
    else:
        web_users.set_password(admin, args.name, _password(env, args))
        env.emit(
            {"name": args.name, "password_changed": True},
            f"web user {args.name!r}: password changed; its sessions ended",
        )
    return ExitStatus.OK


COMMAND = Command(
    "web-user",
    "add, list, delete web console users or set their passwords",
    configure,
    run,
    description="Users of postwarden-web: --role admin (everything) or domain-admin --domain D"
    " (that domain and its subdomains only). Passwords: a prompt or --password-file.",
)
