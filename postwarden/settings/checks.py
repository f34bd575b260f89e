"""Rules that span several settings: uniqueness, references, overlaps.

Description:
    The schema checks each value on its own (types, bounds, limits); this module checks how
    values relate: unique rule names and policy titles, routes that rules refer to, gateway
    options that need one another, and overlaps within an IP list (warnings only: an IP in both
    the allowed and the blocked list is valid and means "received").

Errors:
    Findings go to a :class:`~postwarden.settings.schema.Report` with the path of the setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import IpEntry, Path, Report
from postwarden.util.iptable import IpTable, find_overlaps
from postwarden.util.labels import route_label


def check_settings(settings: Settings, report: Report) -> None:
    """Report every cross-setting problem of *settings*."""
    for domain, block in settings.domains.items():
        if block is not None:
            _check_block(block, ("domains", domain), settings, report)
    _check_ip_list(settings.trusted_networks, ("trusted_networks",), report)
    _check_tls_bypass(settings, report)
    _check_route_labels(settings, report)
    _check_trusted_relaying_routes(settings, report)


def _check_trusted_relaying_routes(settings: Settings, report: Report) -> None:
    """A relaying route in trusted_networks that hands mail back to port 25 would loop."""
    trusted = IpTable((entry.range, entry) for entry in settings.trusted_networks)
    for domain, block in settings.domains.items():
        for index, rule in enumerate(block.outbound_routing if block else ()):
            route = settings.routes.get(rule.route)
            address = route.address if route else None
            if rule.action != "change-route" or not address:
                continue
            if trusted.lookup_text(address) is not None:
                report.warn(
                    ("domains", domain, "outbound_routing", index),
                    f"route {rule.route!r} ({address}) is in trusted_networks: mail it hands"
                    " back on port 25 looks like new outbound mail and would be routed again;"
                    " let it hand mail back to the postwarden-handback listener",
                )


def _check_route_labels(settings: Settings, report: Report) -> None:
    """Routes are told apart in tagged addresses by a DNS label made from their names."""
    seen: dict[str, str] = {}
    for name in settings.routes:
        label = route_label(name)
        if label in seen:
            report.error(
                ("routes", name),
                f"too similar to route {seen[label]!r}: the two"
                f" would share the address tag {label!r}; rename one",
            )
        seen.setdefault(label, name)


def _check_tls_bypass(settings: Settings, report: Report) -> None:
    """Outgoing TLS policies are keyed by next hop: a changed route is a different next hop."""
    if not any(settings.outgoing_tls_policies()):
        return
    for domain, block in settings.domains.items():
        for index, rule in enumerate(block.outbound_routing if block else ()):
            if rule.action == "change-route":
                report.warn(
                    ("domains", domain, "outbound_routing", index),
                    f"mail sent through route {rule.route!r} is not subject to the outgoing TLS"
                    " policies of partner domains (Postfix applies the route's own next-hop"
                    " policy: set tls: required on the route)",
                )


def _check_block(block: DomainBlock, path: Path, settings: Settings, report: Report) -> None:
    for name in ("allowed_ips", "blocked_ips"):
        _check_ip_list(getattr(block, name), (*path, name), report)
    _check_ip_list(block.gateway.ips, (*path, "gateway", "ips"), report)
    _check_unique((r.name for r in block.spam_rules), (*path, "spam_rules"), "name", report)
    _check_unique((p.title for p in block.tls_policies), (*path, "tls_policies"), "title", report)
    for list_name in ("inbound_routing", "outbound_routing"):
        rules = getattr(block, list_name)
        _check_unique((r.name for r in rules), (*path, list_name), "name", report)
        for index, rule in enumerate(rules):
            _check_route(rule.route, (*path, list_name, index, "route"), settings, report)
    _check_gateway(block, (*path, "gateway"), settings, report)
    for index, policy in enumerate(block.tls_policies):
        at = (*path, "tls_policies", index)
        if policy.target == "incoming" and (policy.trusted_ca or policy.hostname_match):
            report.error(at, "trusted_ca and hostname_match apply to outgoing policies only")
        if not policy.partners and not report.has_errors_under((*at, "partners")):
            report.error((*at, "partners"), "name at least one partner domain")
        _check_unique(policy.partners, (*at, "partners"), "partner", report, warn=True)


def _check_gateway(block: DomainBlock, path: Path, settings: Settings, report: Report) -> None:
    gateway = block.gateway
    if gateway.route:
        _check_route(gateway.route, (*path, "route"), settings, report)
    if not gateway.enabled or report.has_errors_under(path):
        return
    if gateway.only_from_gateway and not gateway.ips:
        report.error(
            (*path, "ips"),
            "only_from_gateway is on but no gateway IPs are listed: all external mail"
            " would be rejected",
        )
    if gateway.internal_via_gateway and not gateway.route:
        report.error((*path, "route"), "internal_via_gateway needs the route to the gateway")


def _check_route(name: str, path: Path, settings: Settings, report: Report) -> None:
    if name and name not in settings.routes:
        known = ", ".join(sorted(settings.routes)) or "none defined"
        report.error(path, f"route {name!r} does not exist (routes: {known})")


def _check_unique(
    values: Iterable[str], path: Path, noun: str, report: Report, *, warn: bool = False
) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            message = f"{noun} {value!r} is used twice"
            if warn:
                report.warn((*path, index), message)
            else:
                report.error((*path, index), message)
        seen.add(value)


def _check_ip_list(entries: Sequence[IpEntry], path: Path, report: Report) -> None:
    """Warn about duplicates and overlaps within one list."""
    first_at: dict[object, int] = {}
    for index, entry in enumerate(entries):
        if entry.range in first_at:
            report.warn(
                (*path, index), f"{entry.text} is listed twice (also at [{first_at[entry.range]}])"
            )
        else:
            first_at[entry.range] = index
    unique = list(first_at.values())
    for i, j in find_overlaps(entries[index].range for index in unique):
        first, second = unique[i], unique[j]
        a, b = entries[first], entries[second]
        if a.range.contains(b.range):
            message = f"{b.text} is inside {a.text} (at [{first}])"
        elif b.range.contains(a.range):
            message = f"{b.text} contains {a.text} (at [{first}])"
        else:
            message = f"{b.text} overlaps {a.text} (at [{first}])"
        report.warn((*path, second), message)
