"""``postwarden spam-rule list | add NAME --field F --pattern RE | delete NAME``.

Regex rules tag a hosted domain's inbound external mail as spam (``X-Spam-Flag: YES`` and
``X-Postwarden-Spam: NAME``), gateway mail included — this is how a gateway's own verdict
header sends mail to the spam mailbox. Patterns are RE2 (linear time on any input); the
field is subject, from, to, body or header:NAME.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.settings.model import Settings, SpamRule


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    listing = add("list", "list the rules")
    adding = add("add", "add a rule")
    adding.add_argument("name", metavar="NAME")
    adding.add_argument("--field", required=True, help="subject, from, to, body or header:NAME")
    adding.add_argument("--pattern", required=True, metavar="RE", help="an RE2 pattern")
    deleting = add("delete", "delete a rule")
    deleting.add_argument("name", metavar="NAME")
    for sub in (listing, adding, deleting):
        sub.add_argument("--domain", metavar="D", help="the hosted domain (default: the primary)")


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        settings = _settings.load(env).settings
        domain = _settings.selected_domain(settings, args.domain)
        rules = _settings.own_block(settings, domain)[0].spam_rules
        rows = [{"name": r.name, "field": r.field, "pattern": r.pattern} for r in rules]
        env.emit(
            {"domain": domain, "rules": rows},
            lambda: (
                table(
                    [[r["name"], r["field"], r["pattern"]] for r in rows],
                    ["NAME", "FIELD", "PATTERN"],
                )
                or f"{domain}: no spam rules"
            ),
        )
        return ExitStatus.OK

    def change(settings: Settings) -> Settings:
        domain = _settings.selected_domain(settings, args.domain)
        block, _ = _settings.own_block(settings, domain)
        rules = list(block.spam_rules)
        names = [rule.name for rule in rules]
        if args.action == "add":
            if args.name in names:
                raise BadInput(f"{domain} already has a spam rule named {args.name!r}")
            rules.append(SpamRule(name=args.name, field=args.field, pattern=args.pattern))
        else:
            if args.name not in names:
                raise BadInput(f"{domain} has no spam rule named {args.name!r}")
            del rules[names.index(args.name)]
        return _settings.with_block(settings, domain, replace(block, spam_rules=tuple(rules)))

    _settings.edit(env, change)
    verb = "added" if args.action == "add" else "deleted"
    env.emit({"action": args.action, "name": args.name}, f"spam rule {args.name!r} {verb}")
    return ExitStatus.OK


COMMAND = Command("spam-rule", "list, add or delete regex spam rules", configure, run)
