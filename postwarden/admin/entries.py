"""Reading lists typed by an administrator: IP entries, partner domains, free text.

Description:
    Entries are separated by spaces, commas or line breaks (a pasted column, a CSV line).
    A batch is all or nothing: every bad token is named at once, nothing is changed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from postwarden.admin.errors import BadInput
from postwarden.settings.schema import Domain, IpEntry, IpEntryKind, Report
from postwarden.util.iptable import BadIpEntry, IpRange, parse_range

_SEPARATORS = re.compile(r"[\s,]+")
UNCHANGED = "nothing was changed"


def split(texts: Iterable[str]) -> list[str]:
    """The tokens of *texts*, separated by spaces, commas or line breaks."""
    return [t for text in texts for t in _SEPARATORS.split(text) if t]


def refuse(problems: list[str]) -> None:
    if problems:
        raise BadInput("; ".join(problems) + f"; {UNCHANGED}")


def require(tokens: list[str]) -> list[str]:
    if not tokens:
        raise BadInput("no entries given")
    return tokens


def new_ip_entries(tokens: list[str], kind: IpEntryKind, note: str) -> list[IpEntry]:
    """Entries from *tokens* with the list's width rules, duplicates dropped."""
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
    refuse(problems)
    return list(entries.values())


def ranges(tokens: list[str]) -> list[IpRange]:
    """Existing entries named in any form (``192.0.2.7`` is ``192.0.2.7/32``)."""
    found, problems = [], []
    for token in tokens:
        try:
            found.append(parse_range(token))
        except BadIpEntry as exc:
            problems.append(str(exc))
    refuse(problems)
    return found


def partner_domains(tokens: list[str]) -> tuple[str, ...]:
    kind, found, problems = Domain(allow_dot=True), [], []
    for token in tokens:
        try:
            found.append(kind.from_text(token))
        except ValueError as exc:
            problems.append(str(exc))
    refuse(problems)
    return tuple(dict.fromkeys(found))


def setting_problem(record: type, name: str, text: str) -> str | None:
    """What the settings schema says is wrong with *text* as *record*'s setting *name*."""
    declared = {f.name: f for f in dataclasses.fields(record)}[name]
    report = Report()
    declared.metadata["kind"].convert(text, (), report)
    return report.errors[0].message if report.errors else None
