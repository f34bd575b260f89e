"""``postwarden routing inbound|outbound list | add NAME ... | delete NAME``.

Inbound rules send a hosted domain's incoming mail (condition internal, external or all) to
a route: ``change route`` (known recipients go to the route, not locally), with
``--unknown-recipients`` (recipients Postfix does not know go there too) and
``--keep-local-copy`` (known recipients are also delivered locally). Outbound rules act on
mail sent from the domain (condition internal or external, per recipient):
``change-route`` relays it through the route, ``send-additionally`` sends the sender a copy
there. The first matching rule of a list applies. Changes apply to the next message. The
work is :mod:`postwarden.admin.routing_rules`'s, shared with the web console.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from postwarden.admin import routing_rules
from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import Environment, ExitStatus, table
from postwarden.settings.model import InboundRule, OutboundRule

FIELDS = routing_rules.FIELDS


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    directions = parser.add_subparsers(dest="direction", metavar="inbound|outbound", required=True)
    for direction in FIELDS:
        sub = directions.add_parser(direction, help=f"{direction} routing rules")
        actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)

        def add(name: str, help_text: str, sub_actions: Any = actions) -> Any:
            return sub_actions.add_parser(
                name, help=help_text, description=help_text, parents=[common]
            )

        listing = add("list", f"list the {direction} rules")
        adding = add("add", f"add an {direction} rule")
        adding.add_argument("name", metavar="NAME")
        adding.add_argument("--route", required=True, metavar="R")
        if direction == "inbound":
            adding.add_argument(
                "--condition", required=True, choices=["internal", "external", "all"]
            )
            adding.add_argument(
                "--unknown-recipients",
                action="store_true",
                help="also route recipients Postfix does not know",
            )
            adding.add_argument(
                "--keep-local-copy",
                action="store_true",
                help="also deliver known recipients locally",
            )
        else:
            adding.add_argument("--condition", required=True, choices=["internal", "external"])
            adding.add_argument(
                "--action",
                dest="rule_action",
                required=True,
                choices=["change-route", "send-additionally"],
            )
        deleting = add("delete", f"delete an {direction} rule")
        deleting.add_argument("name", metavar="NAME")
        for parser_ in (adding, deleting):
            _settings.add_dry_run(parser_)
        for parser_ in (listing, adding, deleting):
            _settings.add_domain_option(parser_)


def _new_rule(args: argparse.Namespace) -> InboundRule | OutboundRule:
    if args.direction == "inbound":
        return InboundRule(
            name=args.name,
            route=args.route,
            condition=args.condition,
            unknown_recipients=args.unknown_recipients,
            keep_local_copy=args.keep_local_copy,
        )
    return OutboundRule(
        name=args.name, route=args.route, condition=args.condition, action=args.rule_action
    )


def _list(env: Environment, args: argparse.Namespace) -> ExitStatus:
    view, found = routing_rules.rules(_settings.admin(env), args.domain, args.direction)
    rules = [asdict(r) for r in found]
    env.emit(
        {"domain": view.domain, "settings_from": view.governing, "rules": rules},
        lambda: (
            table(
                [
                    [
                        str(r["name"]),
                        str(r["route"]),
                        str(r["condition"]),
                        ", ".join(k for k, v in r.items() if v is True)
                        or str(r.get("action", "change route")),
                    ]
                    for r in rules
                ],
                ["NAME", "ROUTE", "CONDITION", "OPTIONS"],
            )
            or f"{view.domain}: no {args.direction} rules"
        ),
    )
    return ExitStatus.OK


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        return _list(env, args)
    admin = _settings.admin(env, args)
    if args.action == "add":
        change = routing_rules.add(admin, args.domain, _new_rule(args))
    else:
        change = routing_rules.delete(admin, args.domain, args.direction, args.name)
    verb = "added" if args.action == "add" else "deleted"
    _settings.report(
        env,
        change,
        {
            "domain": change.domain,
            "direction": args.direction,
            "action": args.action,
            "name": args.name,
        },
        f"{change.domain}: {args.direction} rule {args.name!r} {verb}",
    )
    return ExitStatus.OK


COMMAND = Command("routing", "inbound and outbound routing rules", configure, run)
