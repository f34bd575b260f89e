"""``postwarden routing inbound|outbound list | add NAME ... | delete NAME``.

Inbound rules send a hosted domain's incoming mail (condition internal, external or all) to
a route: ``change route`` (known recipients go to the route, not locally), with
``--unknown-recipients`` (recipients Postfix does not know go there too) and
``--keep-local-copy`` (known recipients are also delivered locally). Outbound rules act on
mail sent from the domain (condition internal or external, per recipient):
``change-route`` relays it through the route, ``send-additionally`` sends the sender a copy
there. The first matching rule of a list applies. Changes apply to the next message.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.settings.model import InboundRule, OutboundRule, Settings

FIELDS = {"inbound": "inbound_routing", "outbound": "outbound_routing"}


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
        for parser_ in (listing, adding, deleting):
            parser_.add_argument(
                "--domain", metavar="D", help="the hosted domain (default: the primary)"
            )


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


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    field = FIELDS[args.direction]
    if args.action == "list":
        settings = _settings.load(env).settings
        domain = _settings.selected_domain(settings, args.domain)
        rules = [asdict(r) for r in getattr(_settings.own_block(settings, domain)[0], field)]
        env.emit(
            {"domain": domain, "rules": rules},
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
                or f"{domain}: no {args.direction} rules"
            ),
        )
        return ExitStatus.OK

    def change(settings: Settings) -> Settings:
        domain = _settings.selected_domain(settings, args.domain)
        block, _ = _settings.own_block(settings, domain)
        rules = list(getattr(block, field))
        names = [rule.name for rule in rules]
        if args.action == "add":
            if args.name in names:
                raise BadInput(f"{domain} already has an {args.direction} rule {args.name!r}")
            rules.append(_new_rule(args))
        else:
            if args.name not in names:
                raise BadInput(f"{domain} has no {args.direction} rule {args.name!r}")
            del rules[names.index(args.name)]
        return _settings.with_block(settings, domain, replace(block, **{field: tuple(rules)}))

    _settings.edit(env, change)
    verb = "added" if args.action == "add" else "deleted"
    env.emit(
        {"direction": args.direction, "action": args.action, "name": args.name},
        f"{args.direction} rule {args.name!r} {verb}",
    )
    return ExitStatus.OK


COMMAND = Command("routing", "inbound and outbound routing rules", configure, run)
