"""``postwarden spam-rule list | add NAME --field F --pattern RE | delete NAME
| enable|disable [NAME] | test FILE``.

Regex rules tag a hosted domain's inbound external mail as spam (``X-Spam-Flag: YES`` and
``X-Postwarden-Spam: NAME``), gateway mail included — this is how a gateway's own verdict
header sends mail to the spam mailbox. Patterns are RE2 (linear time on any input); the
field is subject, from, to, body or header:NAME. A pattern RE2 refuses is named with RE2's
reason. The work is :mod:`postwarden.admin.spam_rules`'s, shared with the web console.

``enable|disable`` is the seed's "Use" switch: with NAME for one rule, without for the
domain's whole filter (``spam_rules_enabled``). ``test FILE`` runs the domain's rules on a
message file with the milter's own code and shows which rule matched which part; a rule
that is switched off is tested too and shown as off.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from postwarden.admin import spam_rules
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table
from postwarden.milter.message_file import parse_message
from postwarden.milter.spam_rules import CompiledRule, MessageText, explain_matches
from postwarden.util.linear_regex import compile_pattern


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    listing = add("list", "list the rules")
    adding = add("add", "add a rule")
    adding.add_argument("name", metavar="NAME")
    adding.add_argument("--field", required=True, help="subject, from, to, body or header:NAME")
    adding.add_argument("--pattern", required=True, metavar="RE", help="an RE2 pattern")
    deleting = add("delete", "delete a rule")
    deleting.add_argument("name", metavar="NAME")
    switches = []
    for verb in ("enable", "disable"):
        switch = add(verb, f"{verb} one rule (NAME) or the domain's whole spam filter")
        switch.add_argument("name", metavar="NAME", nargs="?")
        switches.append(switch)
    testing = add("test", "show which rules match which part of a message file")
    testing.add_argument("file", metavar="FILE", help="the message ('-' reads standard input)")
    for sub in (adding, deleting, *switches):
        _settings.add_dry_run(sub)
    for sub in (listing, adding, deleting, testing, *switches):
        _settings.add_domain_option(sub)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        return _list(env, args)
    if args.action in ("enable", "disable"):
        return _switch(env, args)
    if args.action == "test":
        return _test(env, args)
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


def _list(env: Environment, args: argparse.Namespace) -> ExitStatus:
    view, rules = spam_rules.rules(_settings.admin(env), args.domain)
    rows: list[dict[str, Any]] = [
        {"name": r.name, "field": r.field, "pattern": r.pattern, "enabled": r.enabled}
        for r in rules
    ]
    enabled = view.block.spam_rules_enabled

    def text() -> str:
        state = "on" if enabled else "OFF (no rule runs)"
        listing = table(
            [[r["name"], "on" if r["enabled"] else "off", r["field"], r["pattern"]] for r in rows],
            ["NAME", "USE", "FIELD", "PATTERN"],
        )
        return f"{view.domain}: spam filter {state}\n{listing or 'no spam rules'}"

    env.emit(
        {
            "domain": view.domain,
            "settings_from": view.governing,
            "enabled": enabled,
            "rules": rows,
        },
        text,
    )
    return ExitStatus.OK


# --- enable | disable: the "Use" switch --------------------------------------------------


def _switch(env: Environment, args: argparse.Namespace) -> ExitStatus:
    on = args.action == "enable"
    change = spam_rules.set_enabled(_settings.admin(env, args), args.domain, args.name, on)
    what = f"spam rule {args.name!r}" if args.name else f"the spam filter of {change.domain}"
    _settings.report(
        env,
        change,
        {"domain": change.domain, "name": args.name, "enabled": on, "changed": change.changed},
        f"{what} {args.action}d" + ("" if change.changed else " (it was already)"),
    )
    return ExitStatus.OK


# --- test FILE: the milter's own matching on a message file -------------------------------


def _test(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.file == "-":
        data = env.stdin.read().encode("utf-8", "surrogateescape")
    else:
        data = Path(args.file).read_bytes()
    message = parse_message(data)
    admin = _settings.admin(env)
    view, rules = spam_rules.rules(admin, args.domain)
    block = view.block
    compiled = [CompiledRule(r.name, r.field, compile_pattern(r.pattern)) for r in rules]
    body_limit = admin.read().settings.spam_filter.body_limit
    text = MessageText(message.headers, message.body, body_limit)
    in_use = {r.name for r in rules if r.enabled and block.spam_rules_enabled}
    matches: list[dict[str, Any]] = [
        {
            "rule": m.rule,
            "field": m.field,
            "instance": m.instance,
            "start": m.start,
            "end": m.end,
            "excerpt": m.excerpt,
            "in_use": m.rule in in_use,
        }
        for m in explain_matches(compiled, text)
    ]
    tagged = sorted({m["rule"] for m in matches if m["in_use"]})

    def text_out() -> str:
        lines = [
            f"{m['rule']}{'' if m['in_use'] else ' (off)'}: {m['field']}"
            + (f" #{m['instance'] + 1}" if m["instance"] else "")
            + f" matches at {m['start']}-{m['end']}: ...{m['excerpt']}..."
            for m in matches
        ]
        verdict = (
            f"tagged: X-Spam-Flag: YES, X-Postwarden-Spam: {', '.join(tagged)}"
            if tagged
            else "not tagged"
        )
        return "\n".join([*lines, f"{view.domain}: {len(compiled)} rule(s); {verdict}"])

    env.emit(
        {
            "domain": view.domain,
            "spam_filter_enabled": block.spam_rules_enabled,
            "rules": len(compiled),
            "matches": matches,
            "tagged": bool(tagged),
            "x_postwarden_spam": ", ".join(tagged) or None,
        },
        text_out,
    )
    return ExitStatus.OK


COMMAND = Command(
    "spam-rule",
    "list, add, delete, enable, disable or test regex spam rules",
    configure,
    run,
)
