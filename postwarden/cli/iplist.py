"""``postwarden allow|block list | add ENTRY... [--note T] | delete ENTRY...``: the IP lists.

Description:
    Entries are addresses, CIDR networks or ``first-last`` ranges, IPv4 or IPv6; many can be
    given at once, separated by spaces, commas or line breaks (``-`` reads them from standard
    input). A batch is all or nothing: one bad entry names itself and nothing is saved.
    Adding an entry that is already listed changes nothing (``--note`` updates its note), so
    commands are safe to repeat. ``block list --sort recent`` puts the entries that blocked
    something most recently first, from the block history in the state database. The work
    is :mod:`postwarden.admin.iplists`'s, shared with the web console.

    ``block history [--since 24h] [--client IP] [--limit N]`` lists each refused attempt
    (time, client, sender, recipient, the entry that matched; bounded by
    ``block_history.retention_days`` and ``max_attempts``). ``block prune --unused-for DAYS
    [--dry-run]`` deletes the entries that blocked nothing for DAYS — only where the history
    can tell (:mod:`postwarden.state.prune`); the others are kept and the reason given.
    Both are :mod:`postwarden.admin.block_tools`'s.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import time
from collections.abc import Callable
from functools import partial

from postwarden.admin import block_tools, iplists
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.util.duration import BadDuration, parse_duration
from postwarden.util.iptable import parse_client_address


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
    if field == "blocked_ips":
        parsers += _configure_block_tools(add)
    for sub in parsers:
        _settings.add_domain_option(sub)


def _runner(field: str) -> partial[ExitStatus]:
    return partial(_run, field=field)


def _run(env: Environment, args: argparse.Namespace, *, field: str) -> ExitStatus:
    if args.action == "history":
        return _history(env, args)
    if args.action == "prune":
        return _prune(env, args)
    if args.action == "add":
        return _add(env, args, field)
    if args.action == "delete":
        return _delete(env, args, field)
    return _list(env, args, field)


# --- block history | prune: the single refused attempts, and entries that block nothing -----


def _configure_block_tools(
    add: Callable[[str, str], argparse.ArgumentParser],
) -> list[argparse.ArgumentParser]:
    history = add("history", "each refused attempt: time, client, sender, recipient, entry")
    history.add_argument("--since", default="24h", metavar="DURATION", help="default 24h")
    history.add_argument("--client", metavar="IP", help="only attempts from this client")
    history.add_argument("--limit", type=int, default=100, metavar="N", help="default 100")
    history.add_argument(
        "--all-domains", action="store_true", help="every domain's attempts, not one domain's"
    )
    prune = add("prune", "delete entries that blocked nothing for DAYS")
    prune.add_argument("--unused-for", type=int, required=True, metavar="DAYS")
    _settings.add_dry_run(prune)
    return [history, prune]


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _history(env: Environment, args: argparse.Namespace) -> ExitStatus:
    try:
        since = time.time() - parse_duration(args.since)
    except BadDuration as exc:
        raise BadInput(f"--since: {exc}") from None
    client = None
    if args.client is not None:
        if parse_client_address(args.client) is None:
            raise BadInput(f"--client: {args.client!r} is not an IP address")
        client = str(ipaddress.ip_address(args.client.removeprefix("IPv6:")))
    if not 1 <= args.limit <= 100_000:
        raise BadInput(f"--limit: {args.limit} is not between 1 and 100,000")
    governing, found = block_tools.history(
        _settings.admin(env),
        args.domain,
        since=since,
        client=client,
        limit=args.limit,
        all_domains=args.all_domains,
    )
    rows = [
        {
            "time": _when(a.time),
            "client": a.client_ip,
            "sender": a.sender,
            "recipient": a.recipient,
            "entry": a.entry,
            "domain": a.domain,
            "refused_by": a.source,
        }
        for a in found
    ]
    env.emit(
        {"domain": governing, "since": _when(since), "attempts": rows},
        lambda: (
            table(
                [
                    [r["time"], r["client"], f"<{r['sender']}>", f"<{r['recipient']}>", r["entry"]]
                    for r in rows
                ],
                ["TIME", "CLIENT", "SENDER", "RECIPIENT", "ENTRY"],
            )
            or f"no refused attempts since {_when(since)}"
        ),
    )
    return ExitStatus.OK


def _prune(env: Environment, args: argparse.Namespace) -> ExitStatus:
    done = block_tools.prune(_settings.admin(env, args), args.domain, args.unused_for)
    doomed, days = done.doomed, args.unused_for
    dry = bool(getattr(args, "dry_run", False))
    data = {
        "domain": done.domain,
        "unused_for_days": days,
        "dry_run": dry,
        "would_delete" if dry else "deleted": doomed,
        "kept": [{"entry": v.entry, "why": v.reason} for v in done.verdicts if not v.unused],
    }
    verb = "would delete" if dry else "deleted"
    text = "\n".join(
        [
            *(f"{verb} {e}" for e in doomed),
            f"{done.domain} blocked_ips: {len(doomed)} {verb} (no block for {days} days),"
            f" {len(done.verdicts) - len(doomed)} kept",
        ]
    )
    if done.change is None:
        env.emit(data, text)
    else:
        _settings.report(env, done.change, data, text)
    return ExitStatus.OK


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
