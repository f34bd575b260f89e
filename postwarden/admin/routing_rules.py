"""A hosted domain's inbound and outbound routing rules: list, add, delete.

Description:
    Inbound rules send the domain's incoming mail (internal, external or all) to a route:
    known recipients go there instead of locally, ``unknown_recipients`` routes recipients
    Postfix does not know too, ``keep_local_copy`` also delivers known recipients locally.
    Outbound rules act on mail sent from the domain (internal or external, per recipient):
    ``change-route`` relays it through the route, ``send-additionally`` sends a copy there.
    A rule naming a route that does not exist is refused by the settings checks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.settings.model import DomainBlock, InboundRule, OutboundRule, Settings

FIELDS = {"inbound": "inbound_routing", "outbound": "outbound_routing"}
Rule = InboundRule | OutboundRule


def _field(direction: str) -> str:
    if direction not in FIELDS:
        raise BadInput(f"{direction!r} is not inbound or outbound")
    return FIELDS[direction]


def rules(
    admin: Admin, domain: str | None, direction: str
) -> tuple[scope.DomainView, tuple[Rule, ...]]:
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    return view, getattr(view.block, _field(direction))


def add(admin: Admin, domain: str | None, rule: Rule) -> Change:
    direction = "inbound" if isinstance(rule, InboundRule) else "outbound"
    field = _field(direction)

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        current = getattr(block, field)
        if any(r.name == rule.name for r in current):
            raise BadInput(f"{where} already has an {direction} rule {rule.name!r}")
        return replace(block, **_with(field, (*current, rule)))

    return edit_domain(admin, domain, apply)


def delete(admin: Admin, domain: str | None, direction: str, name: str) -> Change:
    field = _field(direction)

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        current = getattr(block, field)
        kept = tuple(r for r in current if r.name != name)
        if len(kept) == len(current):
            raise BadInput(f"{where} has no {direction} rule {name!r}")
        return replace(block, **_with(field, kept))

    return edit_domain(admin, domain, apply)


def _with(field: str, value: tuple[Any, ...]) -> dict[str, Any]:
    """The keyword arguments that set one list of a block (for ``dataclasses.replace``)."""
    return {field: value}
