"""What a change would alter: the policy decisions that differ before and after it.

Description:
    ``--dry-run`` shows the change and then asks the one decision module
    (:func:`postwarden.decision.decide_recipient`) the same questions against the settings
    before and after: for every hosted domain whose settings differ, a client from each IP
    list entry that appears on one side only (its first address), a client no list names,
    and senders from the partner domains of incoming TLS policies that differ. Each
    question whose answer differs is reported. Routing and DKIM are not RCPT decisions;
    their change is the diff itself.

    The questions are bounded (:data:`MAX_PROBES` clients per domain), so a dry run of a
    10,000-entry import still answers at once; the report says when it stopped early.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from postwarden.decision import Decision, Facts, decide_recipient
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import IpEntry
from postwarden.settings.snapshot import Snapshot, compile_settings
from postwarden.util.iptable import IpRange

MAX_PROBES = 2_000
PLAIN_SENDER = "someone@elsewhere.invalid"
# Clients from the documentation ranges, tried in turn until one no list names.
UNLISTED = ("192.0.2.254", "198.51.100.254", "203.0.113.254", "2001:db8::fe")


@dataclass(frozen=True)
class DecisionChange:
    """One question whose answer the change alters."""

    client_ip: str
    sender: str
    recipient: str
    before: str
    after: str

    def __str__(self) -> str:
        return (
            f"client {self.client_ip}, from <{self.sender}> to <{self.recipient}>:"
            f" {self.before} -> {self.after}"
        )


@dataclass(frozen=True)
class Preview:
    changes: list[DecisionChange]
    truncated: bool


def _describe(decision: Decision) -> str:
    return f"{decision.verdict.value} ({decision.rule.value})"


def _first_address(ip_range: IpRange) -> str:
    kind = ipaddress.IPv4Address if ip_range.version == 4 else ipaddress.IPv6Address
    return str(kind(ip_range.first))


def _entries(block: DomainBlock | None) -> set[IpRange]:
    if block is None:
        return set()
    lists: Iterable[IpEntry] = itertools.chain(
        block.allowed_ips, block.blocked_ips, block.gateway.ips
    )
    return {entry.range for entry in lists}


def _partners(block: DomainBlock | None) -> set[str]:
    if block is None:
        return set()
    return {
        partner
        for policy in block.tls_policies
        if policy.target == "incoming"
        for partner in policy.partners
    }


def _sender(partner: str) -> str:
    return f"someone@{'mail' + partner if partner.startswith('.') else partner}"


def _clients(before: Snapshot, after: Snapshot, domain: str, trusted: set[IpRange]) -> list[str]:
    old, new = before.policy_for(domain), after.policy_for(domain)
    ranges = _entries(old.block if old else None) ^ _entries(new.block if new else None)
    ranges |= trusted
    clients = [_first_address(r) for r in sorted(ranges, key=lambda r: (r.version, r.first))]
    for candidate in UNLISTED:
        if all(
            s.trusted.lookup_text(candidate) is None
            and (p := s.policy_for(domain)) is not None
            and p.allowed.lookup_text(candidate) is None
            and p.blocked.lookup_text(candidate) is None
            for s in (before, after)
        ):
            clients.append(candidate)
            break
    return clients


def _questions(before: Snapshot, after: Snapshot) -> Iterator[tuple[str, list[str], list[str]]]:
    """(domain, clients, senders) for each hosted domain whose settings differ."""
    old_trusted = {e.range for e in before.settings.trusted_networks}
    new_trusted = {e.range for e in after.settings.trusted_networks}
    trusted = old_trusted ^ new_trusted
    for domain in sorted(set(before.policies) | set(after.policies)):
        old, new = before.policy_for(domain), after.policy_for(domain)
        if old is not None and new is not None and old.block == new.block and not trusted:
            continue
        partners = _partners(old.block if old else None) ^ _partners(new.block if new else None)
        senders = [PLAIN_SENDER, *(_sender(p) for p in sorted(partners))]
        yield domain, _clients(before, after, domain, trusted), senders


def compare(before: Settings, after: Settings) -> Preview:
    """The decisions that differ between *before* and *after*."""
    old, new = compile_settings(before), compile_settings(after)
    changes: list[DecisionChange] = []
    truncated = False
    for domain, clients, senders in _questions(old, new):
        if len(clients) > MAX_PROBES:
            truncated = True
        recipient = f"postmaster@{domain}"
        for client, sender in itertools.product(clients[:MAX_PROBES], senders):
            facts = Facts(client, sender, recipient)
            was, will = decide_recipient(old, facts), decide_recipient(new, facts)
            if (was.verdict, was.rule, was.action) != (will.verdict, will.rule, will.action):
                changes.append(
                    DecisionChange(client, sender, recipient, _describe(was), _describe(will))
                )
    return Preview(changes, truncated)
