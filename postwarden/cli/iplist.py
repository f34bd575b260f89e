"""``postwarden allow|block list | add ENTRY... [--note T] | delete ENTRY...``: the IP lists.

Description:
    Entries are addresses, CIDR networks or ``first-last`` ranges, IPv4 or IPv6; many can be
    given at once, separated by spaces, commas or line breaks (``-`` reads them from standard
    input). A batch is all or nothing: one bad entry names itself and nothing is saved.
    Adding an entry that is already listed changes nothing (``--note`` updates its note), so
    commands are safe to repeat. ``block list --sort recent`` puts the entries that blocked
    something most recently first, from the block history in the state database. The work
    is :mod:`postwarden.admin.iplists`'s, shared with the web console.
"""

from __future__ import annotations

import argparse
from functools import partial

from postwarden.admin import iplists
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table


def _add(env: Environment, args: argparse.Namespace, field: str) -> ExitStatus:
    tokens = _settings.tokens(args.entries, env)
    done = iplists.add(_settings.admin(env, args), args.domain, field, tokens, args.note)
    change = done.change
    _settings.report(
        env,
        change,
        {
            "domain": change.domain,
            "list": field,
            "added": done.added,
            "updated": done.updated,
            "unchanged": done.unchanged,
            "copied_from": change.copied_from if change.changed else None,
            "changed": change.changed,
        },
        f"{change.domain} {field}: {len(done.added)} added, {len(done.updated)} note(s)"
        f" updated, {len(done.unchanged)} already listed",
    )
    return ExitStatus.OK


def _delete(env: Environment, args: argparse.Namespace, field: str) -> ExitStatus:
    tokens = _settings.tokens(args.entries, env)
    done = iplists.delete(_settings.admin(env, args), args.domain, field, tokens)
    change = done.change
    _settings.report(
        env,
        change,
        {
            "domain": change.domain,
            "list": field,
            "deleted": done.deleted,
            "changed": change.changed,
        },
        f"{change.domain} {field}: {len(done.deleted)} deleted",
    )
    return ExitStatus.OK


def _list(env: Environment, args: argparse.Namespace, field: str) -> ExitStatus:
    found = iplists.listing(
        _settings.admin(env), args.domain, field, sort=getattr(args, "sort", None)
    )
    domain = found.view.domain
    history = field == "blocked_ips"
    rows: list[dict[str, object]] = []
    for row in found.rows:
        data: dict[str, object] = {"entry": row.entry, "note": row.note}
        if history:
            data.update(last_blocked=row.last_blocked_text, blocks=row.blocks, clients=row.clients)
        rows.append(data)
    headers = ["ENTRY", "NOTE", *(["LAST BLOCKED", "BLOCKS"] if history else [])]
    env.emit(
        {"domain": domain, "settings_from": found.view.governing, "list": field, "entries": rows},
        lambda: (
            table(
                [
                    [
                        str(r["entry"]),
                        str(r["note"]),
                        *([str(r["last_blocked"] or "-"), str(r["blocks"])] if history else []),
                    ]
                    for r in rows
                ],
                headers,
            )
            or f"{domain}: {field} is empty"
        ),
    )
    return ExitStatus.OK


def _configure(field: str, noun: str) -> partial[None]:
    return partial(_configure_list, field=field, noun=noun)


def _configure_list(
    parser: argparse.ArgumentParser, common: argparse.ArgumentParser, *, field: str, noun: str
) -> None:
    add = actions(parser, common)
    listing = add("list", f"list the {noun} IPs")
    if field == "blocked_ips":
        listing.add_argument(
            "--sort", choices=["recent"], help="most recently blocking entries first"
        )
    parsers = [listing]
    for name, help_text in (("add", f"add {noun} IPs"), ("delete", f"delete {noun} IPs")):
        sub = add(name, help_text)
        sub.add_argument(
            "entries",
            metavar="ENTRY",
            nargs="+",
            help="address, CIDR or first-last range; '-' reads standard input",
        )
        if name == "add":
            sub.add_argument("--note", metavar="T", help="a note kept with the entries")
        _settings.add_dry_run(sub)
        parsers.append(sub)
    for sub in parsers:
        _settings.add_domain_option(sub)


def _runner(field: str) -> partial[ExitStatus]:
    return partial(_run, field=field)


def _run(env: Environment, args: argparse.Namespace, *, field: str) -> ExitStatus:
    if args.action == "add":
        return _add(env, args, field)
    if args.action == "delete":
        return _delete(env, args, field)
    return _list(env, args, field)


ALLOW = Command(
    "allow",
    "list, add or delete allowed IPs (always received)",
    _configure("allowed_ips", "allowed"),
    _runner("allowed_ips"),
)
BLOCK = Command(
    "block",
    "list, add or delete blocked IPs (rejected with 5.7.1)",
    _configure("blocked_ips", "blocked"),
    _runner("blocked_ips"),
)
