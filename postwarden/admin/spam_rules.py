"""A hosted domain's regex spam rules: list, add, delete, switch on and off.

Description:
    A rule tags inbound external mail whose field (subject, from, to, body or header:NAME)
    matches an RE2 pattern. The field and the pattern are checked before anything is read
    or written, so a bad pattern is refused with RE2's own words (or the construct RE2
    cannot run — backreferences, lookarounds — by name), not a generic "invalid settings".
"""

from __future__ import annotations

from dataclasses import replace

from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain
from postwarden.admin.entries import UNCHANGED, setting_problem
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.settings.model import DomainBlock, Settings, SpamRule
from postwarden.util.linear_regex import check_pattern


def rules(admin: Admin, domain: str | None) -> tuple[scope.DomainView, tuple[SpamRule, ...]]:
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    return view, view.block.spam_rules


def _check(name: str, field: str, pattern: str) -> None:
    for setting, value in (("name", name), ("field", field)):
        problem = setting_problem(SpamRule, setting, value)
        if problem:
            raise BadInput(f"{setting}: {problem}; {UNCHANGED}")
    if not pattern:
        raise BadInput(f"the pattern is empty; {UNCHANGED}")
    problem = check_pattern(pattern)
    if problem:
        raise BadInput(f"pattern {pattern!r} is not a valid RE2 pattern: {problem}; {UNCHANGED}")


def add(admin: Admin, domain: str | None, name: str, field: str, pattern: str) -> Change:
    _check(name, field, pattern)

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        if any(rule.name == name for rule in block.spam_rules):
            raise BadInput(f"{where} already has a spam rule named {name!r}")
        new = SpamRule(name=name, field=field, pattern=pattern)
        return replace(block, spam_rules=(*block.spam_rules, new))

    return edit_domain(admin, domain, apply)


def delete(admin: Admin, domain: str | None, name: str) -> Change:
    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        kept = tuple(rule for rule in block.spam_rules if rule.name != name)
        if len(kept) == len(block.spam_rules):
            raise BadInput(f"{where} has no spam rule named {name!r}")
        return replace(block, spam_rules=kept)

    return edit_domain(admin, domain, apply)


def set_enabled(admin: Admin, domain: str | None, name: str | None, enabled: bool) -> Change:
    """The seed's "Use" switch: one rule (*name*) or, without a name, the domain's filter."""

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        if name is None:
            return replace(block, spam_rules_enabled=enabled)
        if not any(rule.name == name for rule in block.spam_rules):
            raise BadInput(f"{where} has no spam rule named {name!r}")
        return replace(
            block,
            spam_rules=tuple(
                replace(rule, enabled=enabled) if rule.name == name else rule
                for rule in block.spam_rules
            ),
        )

    return edit_domain(admin, domain, apply)
