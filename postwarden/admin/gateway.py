"""A hosted domain's inbound gateway: show and change.

Description:
    The gateway's addresses (at most 50, none wider than /20 or /116; the list is replaced
    whole), the switches ``enabled``, ``only_from_gateway``, ``internal_via_gateway``,
    ``skip_spam_filter`` and the route to the gateway. Options left out keep their value.
    Cross-setting rules (a gateway-only domain needs gateway IPs, internal mail via the
    gateway needs a route that exists) are the settings checks' and refuse the change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from postwarden.admin import entries as parse
from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.settings.model import GATEWAY_IP, DomainBlock, Gateway, Settings

SWITCHES = ("only_from_gateway", "internal_via_gateway", "skip_spam_filter")
CHANGEABLE = ("enabled", "ips", *SWITCHES, "route")


@dataclass(frozen=True)
class GatewayChange:
    change: Change
    gateway: Gateway


def show(admin: Admin, domain: str | None) -> tuple[scope.DomainView, Gateway]:
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    return view, view.block.gateway


def as_data(gateway: Gateway) -> dict[str, Any]:
    data = {f.name: getattr(gateway, f.name) for f in fields(gateway)}
    data["ips"] = [entry.text for entry in gateway.ips]
    return data


def change(admin: Admin, domain: str | None, **given: Any) -> GatewayChange:
    """Set the options given (None: keep); ``ips`` is text of entries, '' for none."""
    unknown = set(given) - set(CHANGEABLE)
    if unknown:
        raise BadInput(f"not a gateway setting: {', '.join(sorted(unknown))}")
    changes = {name: value for name, value in given.items() if value is not None}
    if "ips" in changes:
        tokens = parse.split([changes["ips"]])
        changes["ips"] = tuple(parse.new_ip_entries(tokens, GATEWAY_IP, "")) if tokens else ()
    if not changes:
        raise BadInput("nothing to change (see postwarden gateway set --help)")
    result: list[Gateway] = []

    def apply(block: DomainBlock, _domain: str, _settings: Settings) -> DomainBlock:
        gateway = replace(block.gateway, **changes)
        result[:] = [gateway]
        return replace(block, gateway=gateway)

    return GatewayChange(edit_domain(admin, domain, apply), result[0])
