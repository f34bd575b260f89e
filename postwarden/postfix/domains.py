"""Compare postwarden's settings with the Postfix configuration they depend on.

Description:
    Postfix decides which domains it receives for through its address classes
    (``mydestination``, ``virtual_alias_domains``, ``virtual_mailbox_domains``,
    ``relay_domains``); postwarden's settings apply only to the domains listed as hosted.
    When the two disagree, either mail postwarden should judge reaches Postfix under no
    postwarden settings, or postwarden holds settings Postfix never uses. Both are warnings,
    as is a route that relays outbound mail without a hand-back listener to return it to.
"""

from __future__ import annotations

from postwarden.postfix.postconf import (
    ADDRESS_CLASSES,
    parameters,
    service_overrides,
    split_list,
    table_has,
)
from postwarden.routing import HANDBACK_DAEMON_NAME
from postwarden.settings.model import Settings


def _is_table(item: str) -> bool:
    return ":" in item and not item.startswith("[")


def compare_hosted(hosted: list[str], config_dir: str | None = None) -> list[str]:
    """Warnings where *hosted* and Postfix's address classes disagree."""
    values = parameters([*ADDRESS_CLASSES, "myhostname"], config_dir)
    literal: dict[str, str] = {}
    tables: list[tuple[str, str]] = []
    for name in ADDRESS_CLASSES:
        for item in split_list(values[name]):
            if _is_table(item):
                tables.append((name, item))
            else:
                literal.setdefault(item.lower().rstrip("."), name)
    warnings: list[str] = []
    unreadable: set[str] = set()
    for domain in hosted:
        if domain in literal:
            continue
        found = False
        for _, table in tables:
            answer = table_has(table, domain, config_dir)
            if answer is None:
                unreadable.add(table)
            found = found or bool(answer)
        if not found:
            warnings.append(
                f"{domain} is hosted in postwarden but Postfix does not receive mail for it"
                f" (not in {', '.join(ADDRESS_CLASSES)})"
            )
    own_names = {values["myhostname"].lower(), "localhost", "localhost.localdomain"}
    for domain, parameter in literal.items():
        if domain not in hosted and domain not in own_names and "." in domain:
            warnings.append(
                f"Postfix receives mail for {domain} ({parameter}) but postwarden does not host"
                " it: no postwarden settings apply to its mail"
            )
    warnings.extend(f"could not read Postfix table {table}" for table in sorted(unreadable))
    return warnings


def relay_bypass(has_outgoing_policies: bool, config_dir: str | None = None) -> list[str]:
    """Warnings where Postfix sends all mail through one next hop, past domain-keyed policies."""
    if not has_outgoing_policies:
        return []
    values = parameters(["relayhost", "default_transport"], config_dir)
    warnings = []
    if values["relayhost"]:
        warnings.append(
            f"relayhost = {values['relayhost']}: outgoing mail goes through it, and Postfix"
            " looks up the TLS policy of that next hop, not of the partner domains; the"
            " outgoing TLS policies do not apply"
        )
    _, _, nexthop = values["default_transport"].partition(":")
    if nexthop:
        warnings.append(
            f"default_transport = {values['default_transport']}: outgoing mail goes to"
            f" {nexthop}; the outgoing TLS policies of partner domains do not apply"
        )
    return warnings


def handback_listener_missing(settings: Settings, config_dir: str | None = None) -> list[str]:
    """A warning when routes relay mail that may come back but no hand-back listener exists.

    A route that relays outbound mail (a DLP gateway) hands it back; arriving on port 25
    from a trusted address it would be routed again. The hand-back listener is recognised
    by its ``milter_macro_daemon_name``, which Postfix sets and the client cannot.
    """
    relaying = sorted(
        {
            rule.route
            for block in settings.domains.values()
            if block is not None
            for rule in block.outbound_routing
            if rule.action == "change-route"
        }
    )
    if not relaying:
        return []
    marks = service_overrides(config_dir)
    if any(
        name.endswith("/milter_macro_daemon_name") and value == HANDBACK_DAEMON_NAME
        for name, value in marks.items()
    ):
        return []
    return [
        f"route(s) {', '.join(relaying)} relay outbound mail, but master.cf has no hand-back"
        " listener (postwarden postfix-config --apply adds it): mail such a route hands back"
        " to port 25 cannot be told from new mail and may be routed again"
    ]
