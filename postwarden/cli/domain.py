"""``postwarden domain list | add DOMAIN | delete DOMAIN [--force]``: the hosted domains.

A domain added here has no settings block of its own: it uses its nearest parent's block
(``sales.example.com`` uses ``example.com``'s). Changing one of its settings with ``--domain``
gives it its own block, starting as a copy of the parent's.

``delete`` refuses while the domain has its own settings, DKIM keys, or subdomains that
inherit its settings, and lists what would be lost and which subdomains would change
parent; ``--force`` deletes it anyway (DKIM keys stay until ``postwarden dkim delete``).
"""

from __future__ import annotations

import argparse

from postwarden.admin import domains
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    add("list", "list the hosted domains and whose settings each uses")
    adding = add("add", "host a domain")
    deleting = add("delete", "stop hosting a domain (refused while it would lose settings)")
    deleting.add_argument(
        "--force",
        action="store_true",
        help="delete even though its own settings, keys or subdomains' settings are lost",
    )
    for sub in (adding, deleting):
        sub.add_argument("domain", metavar="DOMAIN")
        _settings.add_dry_run(sub)


def _list(env: Environment) -> ExitStatus:
    rows = [
        {
            "domain": r.domain,
            "primary": r.primary,
            "settings_from": r.governing,
            "own_settings": r.own_settings,
        }
        for r in domains.listing(_settings.admin(env))
    ]
    env.emit(
        rows,
        lambda: table(
            [
                [
                    str(r["domain"]) + (" (primary)" if r["primary"] else ""),
                    "own"
                    if r["own_settings"]
                    else (f"from {r['settings_from']}" if r["settings_from"] else "defaults"),
                ]
                for r in rows
            ],
            ["DOMAIN", "SETTINGS"],
        ),
    )
    return ExitStatus.OK


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        return _list(env)
    admin = _settings.admin(env, args)
    if args.action == "add":
        change = domains.add(admin, args.domain)
        text = f"{change.domain}: added" if change.changed else f"{change.domain}: already hosted"
        lost: list[str] = []
    else:
        change, lost = domains.delete(admin, args.domain, force=args.force)
        text = f"{change.domain}: deleted"
        if lost:
            text += "; lost: " + "; ".join(lost)
    _settings.report(
        env,
        change,
        {"domain": change.domain, "action": args.action, "changed": change.changed, "lost": lost},
        text,
    )
    return ExitStatus.OK


COMMAND = Command("domain", "list, add or delete hosted domains", configure, run)
