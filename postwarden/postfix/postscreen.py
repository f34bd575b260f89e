"""The IP lists as a ``postscreen_access_list`` cidr table.

Description:
    postscreen(8) judges a client before any recipient is known, so only what holds for
    every hosted domain may go there: ``permit`` for every allowed entry of any domain
    (permit only skips postscreen's own tests; the policy daemon still judges per
    recipient), and ``reject`` only for ranges that every hosted domain blocks and no
    domain allows. All ``permit`` lines come first: the first match wins, so an address in
    both lists is permitted, as everywhere in postwarden. cidr tables know no ``first-last``
    ranges; those become the CIDR networks that cover them exactly.
"""

from __future__ import annotations

from postwarden.settings.schema import IpEntry
from postwarden.settings.snapshot import Snapshot
from postwarden.util.iptable import range_to_networks as _networks


def cidr_table(snapshot: Snapshot) -> str:
    policies = {id(p): p for p in snapshot.policies.values()}.values()
    allowed: list[IpEntry] = [e for p in policies for e in p.block.allowed_ips]
    blocked_everywhere = (
        set.intersection(*({e.range for e in p.block.blocked_ips} for p in policies))
        if policies
        else set()
    )
    lines = [
        "# postscreen_access_list table written by `postwarden postfix-config`.",
        "# Regenerate it after changing IP lists, then: postfix reload",
        "",
    ]
    seen: set[str] = set()
    for entry in allowed:
        for network in _networks(entry.range):
            if network not in seen:
                seen.add(network)
                lines.append(f"{network}\tpermit")
    for ip_range in sorted(blocked_everywhere, key=lambda r: (r.version, r.first)):
        if any(a.range.overlaps(ip_range) for a in allowed):
            continue
        for network in _networks(ip_range):
            if network not in seen:
                seen.add(network)
                lines.append(f"{network}\treject")
    return "\n".join(lines) + "\n"
