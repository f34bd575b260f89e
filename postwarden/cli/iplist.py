"""``postwarden allow|block list | add ENTRY... [--note T] | delete ENTRY...``: the IP lists.

Description:
    Entries are addresses, CIDR networks or ``first-last`` ranges, IPv4 or IPv6; many can be
    given at once, separated by spaces, commas or line breaks (``-`` reads them from standard
    input). A batch is all or nothing: one bad entry names itself and nothing is saved.
    Adding an entry that is already listed changes nothing (``--note`` updates its note), so
    commands are safe to repeat. ``block list --sort recent`` puts the entries that blocked
    something most recently first, from the block history in the state database.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import replace
from functools import partial

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.settings.model import BLOCKED_IP, LISTED_IP, Settings
from postwarden.settings.schema import IpEntry, IpEntryKind, Report
from postwarden.settings.snapshot import governing_domain
from postwarden.settings.state import FILENAME, EntryActivity, StateDB
from postwarden.util.iptable import BadIpEntry, IpRange, parse_range
from postwarden.util.privileges import as_owner_of


def _parse_new(tokens: list[str], kind: IpEntryKind, note: str) -> list[IpEntry]:
    """Entries from *tokens* with the list's width rules; all bad ones named at once."""
    entries: dict[IpRange, IpEntry] = {}
    problems: list[str] = []
    for token in tokens:
        report = Report()
        try:
            entry = kind.make(token, note, (), report)
        except BadIpEntry as exc:
            problems.append(str(exc))
            continue
        problems.extend(p.message for p in report.errors)
        if not report.errors:
            entries.setdefault(entry.range, entry)
    if problems:
        raise BadInput("; ".join(problems) + "; nothing was changed")
    return list(entries.values())


def _parse_existing(tokens: list[str]) -> list[IpRange]:
    ranges, problems = [], []
    for token in tokens:
        try:
            ranges.append(parse_range(token))
        except BadIpEntry as exc:
            problems.append(str(exc))
    if problems:
        raise BadInput("; ".join(problems) + "; nothing was changed")
    return ranges


def _add(env: Environment, args: argparse.Namespace, field: str, kind: IpEntryKind) -> ExitStatus:
    new_entries = _parse_new(_settings.tokens(args.entries, env), kind, args.note or "")
    outcome: dict[str, list[str]] = {"added": [], "updated": [], "unchanged": []}
    copied: list[str | None] = [None]

    def change(settings: Settings) -> Settings:
        domain = _settings.selected_domain(settings, args.domain)
        block, copied[0] = _settings.own_block(settings, domain)
        entries = list(getattr(block, field))
        where = {entry.range: index for index, entry in enumerate(entries)}
        for entry in new_entries:
            index = where.get(entry.range)
            if index is None:
                where[entry.range] = len(entries)
                entries.append(entry)
                outcome["added"].append(entry.text)
            elif args.note is not None and entries[index].note != entry.note:
                entries[index] = replace(entries[index], note=entry.note)
                outcome["updated"].append(entry.text)
            else:
                outcome["unchanged"].append(entries[index].text)
        return _settings.with_block(settings, domain, replace(block, **{field: tuple(entries)}))

    result = _settings.edit(env, change)
    domain = _settings.selected_domain(result.after.settings, args.domain)
    if copied[0] and result.changed:
        env.note(f"{domain} now has its own settings, copied from {copied[0]}")
    env.emit(
        {
            "domain": domain,
            "list": field,
            **outcome,
            "copied_from": copied[0] if result.changed else None,
            "changed": result.changed,
        },
        f"{domain} {field}: {len(outcome['added'])} added, {len(outcome['updated'])} note(s)"
        f" updated, {len(outcome['unchanged'])} already listed",
    )
    return ExitStatus.OK


def _delete(env: Environment, args: argparse.Namespace, field: str) -> ExitStatus:
    ranges = _parse_existing(_settings.tokens(args.entries, env))
    removed: list[str] = []
    copied: list[str | None] = [None]

    def change(settings: Settings) -> Settings:
        domain = _settings.selected_domain(settings, args.domain)
        block, copied[0] = _settings.own_block(settings, domain)
        entries = list(getattr(block, field))
        present = {entry.range for entry in entries}
        missing = [r.to_text() for r in ranges if r not in present]
        if missing:
            raise BadInput(f"not in {field} of {domain}: {', '.join(missing)}; nothing was changed")
        doomed = set(ranges)
        removed.extend(e.text for e in entries if e.range in doomed)
        kept = tuple(e for e in entries if e.range not in doomed)
        return _settings.with_block(settings, domain, replace(block, **{field: kept}))

    result = _settings.edit(env, change)
    domain = _settings.selected_domain(result.after.settings, args.domain)
    if copied[0]:
        env.note(f"{domain} now has its own settings, copied from {copied[0]}")
    env.emit(
        {"domain": domain, "list": field, "deleted": removed, "changed": result.changed},
        f"{domain} {field}: {len(removed)} deleted",
    )
    return ExitStatus.OK


def _activity(env: Environment, domain: str) -> dict[str, EntryActivity]:
    """Block history per entry; empty when no daemon has written a state database yet."""
    if not (env.state_dir / FILENAME).exists():
        return {}
    with as_owner_of(env.state_dir), StateDB.open(env.state_dir) as db:
        return db.entry_activity(domain)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _list(env: Environment, args: argparse.Namespace, field: str) -> ExitStatus:
    settings = _settings.load(env).settings
    domain = _settings.selected_domain(settings, args.domain)
    governing = governing_domain(settings, domain)
    block = settings.domains.get(governing) if governing else None
    entries: list[IpEntry] = list(getattr(block, field)) if block else []
    history = field == "blocked_ips"
    activity = _activity(env, governing) if history and governing else {}
    if getattr(args, "sort", None) == "recent":
        # Stable sort: entries that never blocked anything keep their file order, at the end.
        entries.sort(key=lambda e: -(activity[e.text].last_seen if e.text in activity else 0))
    rows = []
    for entry in entries:
        row: dict[str, object] = {"entry": entry.text, "note": entry.note}
        if history:
            seen = activity.get(entry.text)
            row.update(
                last_blocked=_when(seen.last_seen) if seen else None,
                blocks=seen.count if seen else 0,
                clients=seen.clients if seen else 0,
            )
        rows.append(row)
    headers = ["ENTRY", "NOTE", *(["LAST BLOCKED", "BLOCKS"] if history else [])]
    env.emit(
        {"domain": domain, "settings_from": governing or "", "list": field, "entries": rows},
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
        parsers.append(sub)
    for sub in parsers:
        sub.add_argument("--domain", metavar="D", help="the hosted domain (default: the primary)")


def _runner(field: str, kind: IpEntryKind) -> partial[ExitStatus]:
    return partial(_run, field=field, kind=kind)


def _run(
    env: Environment, args: argparse.Namespace, *, field: str, kind: IpEntryKind
) -> ExitStatus:
    if args.action == "add":
        return _add(env, args, field, kind)
    if args.action == "delete":
        return _delete(env, args, field)
    return _list(env, args, field)


ALLOW = Command(
    "allow",
    "list, add or delete allowed IPs (always received)",
    _configure("allowed_ips", "allowed"),
    _runner("allowed_ips", LISTED_IP),
)
BLOCK = Command(
    "block",
    "list, add or delete blocked IPs (rejected with 5.7.1)",
    _configure("blocked_ips", "blocked"),
    _runner("blocked_ips", BLOCKED_IP),
)
