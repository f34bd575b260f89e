"""The allowed and blocked IP lists of a hosted domain: add, delete, list.

Description:
    Adding an entry that is listed already changes nothing (a given note replaces its
    note), so configuration tools can repeat a command. Deleting names entries in any form
    of the same range; an entry that is not listed refuses the whole batch. At most
    10,000 entries per list (the settings schema's limit, with its message).

    Blocking an address inside ``trusted_networks`` is accepted but warned about: trusted
    clients are never judged by the lists, so such an entry can never apply.

    Listing pages through the entries and can sort the blocked list by the most recent
    block (from the block history the daemons keep in the state database).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from typing import Any

from postwarden.admin import entries as parse
from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.settings.model import BLOCKED_IP, LISTED_IP, DomainBlock, Settings
from postwarden.settings.schema import IpEntry, IpEntryKind
from postwarden.state.db import EntryActivity

LISTS: dict[str, IpEntryKind] = {"allowed_ips": LISTED_IP, "blocked_ips": BLOCKED_IP}


@dataclass(frozen=True)
class Added:
    change: Change
    added: list[str]
    updated: list[str]
    unchanged: list[str]


@dataclass(frozen=True)
class Deleted:
    change: Change
    deleted: list[str]


@dataclass(frozen=True)
class Row:
    entry: str
    note: str
    last_blocked: float | None = None
    blocks: int = 0
    clients: int = 0

    @property
    def last_blocked_text(self) -> str | None:
        if self.last_blocked is None:
            return None
        return (
            datetime.datetime.fromtimestamp(self.last_blocked)
            .astimezone()
            .isoformat(timespec="seconds")
        )


@dataclass(frozen=True)
class Listing:
    view: scope.DomainView
    field: str
    rows: list[Row]
    total: int  # entries in the list (rows may be one page of them)


def _kind(field: str) -> IpEntryKind:
    if field not in LISTS:
        raise BadInput(f"{field!r} is not one of: {', '.join(LISTS)}")
    return LISTS[field]


def add(admin: Admin, domain: str | None, field: str, texts: list[str], note: str | None) -> Added:
    """Add the entries of *texts* (all or nothing); *note* None keeps existing notes."""
    new_entries = parse.new_ip_entries(parse.require(parse.split(texts)), _kind(field), note or "")
    outcome: dict[str, list[str]] = {"added": [], "updated": [], "unchanged": []}

    def change(block: DomainBlock, _domain: str, _settings: Settings) -> DomainBlock:
        for values in outcome.values():
            values.clear()
        current = list(getattr(block, field))
        where = {entry.range: index for index, entry in enumerate(current)}
        for entry in new_entries:
            index = where.get(entry.range)
            if index is None:
                where[entry.range] = len(current)
                current.append(entry)
                outcome["added"].append(entry.text)
            elif note is not None and current[index].note != entry.note:
                current[index] = replace(current[index], note=entry.note)
                outcome["updated"].append(entry.text)
            else:
                outcome["unchanged"].append(current[index].text)
        return replace(block, **_with(field, tuple(current)))

    def warn(_block: DomainBlock, _domain: str, settings: Settings) -> list[str]:
        if field != "blocked_ips":
            return []
        return _trusted_warnings(new_entries, settings)

    result = edit_domain(admin, domain, change, warn=warn)
    return Added(result, outcome["added"], outcome["updated"], outcome["unchanged"])


def _trusted_warnings(new_entries: list[IpEntry], settings: Settings) -> list[str]:
    warnings = []
    for entry in new_entries:
        for trusted in settings.trusted_networks:
            if trusted.range.contains(entry.range):
                warnings.append(
                    f"{entry.text} is inside trusted_networks ({trusted.text}): trusted clients"
                    " are never judged by the IP lists, so this block can never apply"
                )
                break
            if trusted.range.overlaps(entry.range):
                warnings.append(
                    f"{entry.text} overlaps trusted_networks ({trusted.text}): the block does"
                    " not apply to the trusted part"
                )
                break
    return warnings


def delete(admin: Admin, domain: str | None, field: str, texts: list[str]) -> Deleted:
    doomed_ranges = parse.ranges(parse.require(parse.split(texts)))
    _kind(field)
    removed: list[str] = []

    def change(block: DomainBlock, name: str, _settings: Settings) -> DomainBlock:
        current = list(getattr(block, field))
        present = {entry.range for entry in current}
        missing = [r.to_text() for r in doomed_ranges if r not in present]
        if missing:
            raise BadInput(f"not in {field} of {name}: {', '.join(missing)}; {parse.UNCHANGED}")
        doomed = set(doomed_ranges)
        removed[:] = [e.text for e in current if e.range in doomed]
        kept = tuple(e for e in current if e.range not in doomed)
        return replace(block, **_with(field, kept))

    return Deleted(edit_domain(admin, domain, change), removed)


def activity(admin: Admin, governing: str) -> dict[str, EntryActivity]:
    """Block history per entry of *governing*'s blocked list; empty before any daemon ran."""
    with admin.state(create=False) as db:
        return db.entry_activity(governing) if db is not None else {}


def listing(
    admin: Admin,
    domain: str | None,
    field: str,
    *,
    sort: str | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> Listing:
    """The entries in force for *domain* (its parent's when it inherits), one page of them."""
    _kind(field)
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    current: list[IpEntry] = list(getattr(view.block, field))
    history = field == "blocked_ips"
    seen = activity(admin, view.governing) if history and view.governing else {}
    if sort == "recent":
        # Stable: entries that never blocked anything keep their file order, at the end.
        current.sort(key=lambda e: -(seen[e.text].last_seen if e.text in seen else 0))
    elif sort not in (None, ""):
        raise BadInput(f"sort {sort!r} is not one of: recent")
    page = current[offset : offset + limit if limit is not None else None]
    rows = []
    for entry in page:
        hit = seen.get(entry.text)
        rows.append(
            Row(entry.text, entry.note, hit.last_seen, hit.count, hit.clients)
            if hit
            else Row(entry.text, entry.note)
        )
    return Listing(view, field, rows, len(current))


def _with(field: str, value: tuple[Any, ...]) -> dict[str, Any]:
    """The keyword arguments that set one list of a block (for ``dataclasses.replace``)."""
    return {field: value}
