"""``postwarden spam-rule list | add NAME --field F --pattern RE | delete NAME``.

Regex rules tag a hosted domain's inbound external mail as spam (``X-Spam-Flag: YES`` and
``X-Postwarden-Spam: NAME``), gateway mail included — this is how a gateway's own verdict
header sends mail to the spam mailbox. Patterns are RE2 (linear time on any input); the
field is subject, from, to, body or header:NAME. A pattern RE2 refuses is named with RE2's
reason. The work is :mod:`postwarden.admin.spam_rules`'s, shared with the web console.
"""

from __future__ import annotations

import argparse

from postwarden.admin import spam_rules
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    listing = add("list", "list the rules")
    adding = add("add", "add a rule")
    adding.add_argument("name", metavar="NAME")
    adding.add_argument("--field", required=True, help="subject, from, to, body or header:NAME")
    adding.add_argument("--pattern", required=True, metavar="RE", help="an RE2 pattern")
    deleting = add("delete", "delete a rule")
    deleting.add_argument("name", metavar="NAME")
    for sub in (adding, deleting):
        _settings.add_dry_run(sub)
    for sub in (listing, adding, deleting):
        _settings.add_domain_option(sub)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        view, rules = spam_rules.rules(_settings.admin(env), args.domain)
        rows = [{"name": r.name, "field": r.field, "pattern": r.pattern} for r in rules]
        env.emit(
            {"domain": view.domain, "settings_from": view.governing, "rules": rows},
            lambda: (
                table(
                    [[r["name"], r["field"], r["pattern"]] for r in rows],
                    ["NAME", "FIELD", "PATTERN"],
                )
                or f"{view.domain}: no spam rules"
            ),
        )
        return ExitStatus.OK
    admin = _settings.admin(env, args)
    if args.action == "add":
        change = spam_rules.add(admin, args.domain, args.name, args.field, args.pattern)
    else:
        change = spam_rules.delete(admin, args.domain, args.name)
    verb = "added" if args.action == "add" else "deleted"
    _settings.report(
        env,
        change,
        {"domain": change.domain, "action": args.action, "name": args.name},
        f"{change.domain}: spam rule {args.name!r} {verb}",
    )
    return ExitStatus.OK


COMMAND = Command("spam-rule", "list, add or delete regex spam rules", configure, run)
