"""The one decision module: what postwarden answers for one recipient of one transaction.

Description:
    Pure functions over a :class:`~postwarden.settings.snapshot.Snapshot` and the facts of a
    request. ``postwarden explain``, the policy daemon and the milter all call
    :func:`decide_recipient`; nothing else re-implements the order of decisions, so what
    ``explain`` says is what the daemons do.

    Order of decisions at RCPT for a hosted recipient (DESIGN.md), after two exemptions:
    a recipient domain that is not hosted is left to Postfix's relay control, and trusted
    clients (SASL-authenticated, or in ``trusted_networks``) are never judged by the lists.

    1. an incoming TLS policy names the sender's domain and the session is plaintext: reject
    2. client IP in ``allowed_ips``: accept (``OK``), which beats the blocked list and gateway
    3. client IP in ``blocked_ips``: reject 5.7.1 (recorded in the block history)
    4. gateway on with only_from_gateway and the client is not a gateway: reject 5.7.1
    5. otherwise: no opinion (``DUNNO``), Postfix's other restrictions decide

    A recipient's own domain block decides (nearest parent's block when it has none), so one
    transaction with recipients in several hosted domains gets each recipient's own answer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from postwarden.address import domain_of
from postwarden.settings.schema import IpEntry
from postwarden.settings.snapshot import DomainPolicy, Snapshot
from postwarden.util.iptable import parse_client_address


class Verdict(enum.Enum):
    """The outcome for the sender, as ``explain`` reports it."""

    ACCEPT = "accept"  # OK, or DUNNO: nothing of ours stands in the way
    REJECT = "reject"
    DEFER = "defer"


class Rule(enum.Enum):
    """Which setting decided; the values appear in logs, metrics and ``--json``."""

    NOT_HOSTED = "not-hosted"
    TRUSTED_CLIENT = "trusted-client"
    TLS_REQUIRED = "tls-required"
    ALLOWED_IP = "allowed-ip"
    BLOCKED_IP = "blocked-ip"
    GATEWAY_ONLY = "gateway-only"
    NO_RULE = "no-rule"


class Direction(enum.Enum):
    """Internal or external, decided per recipient (DESIGN.md "Internal and external")."""

    INTERNAL = "internal"
    INBOUND = "external-inbound"
    OUTBOUND = "external-outbound"
    RELAY = "relay"  # neither side hosted: Postfix's relay control alone decides


@dataclass(frozen=True)
class Facts:
    """What a request tells us about one recipient of one SMTP transaction."""

    client_ip: str
    sender: str
    recipient: str
    tls: bool = False
    sasl_user: str = ""


@dataclass(frozen=True)
class Decision:
    """The answer for one recipient, with everything ``explain`` shows about why."""

    verdict: Verdict
    action: str  # the Postfix access(5) action: OK, DUNNO, or "5NN x.y.z text"
    rule: Rule
    reason: str
    direction: Direction
    recipient_domain: str
    governing_domain: str = ""  # whose block decided ('' = defaults)
    entry: IpEntry | None = None  # the list entry that matched, if any
    allowed_entry: IpEntry | None = None
    blocked_entry: IpEntry | None = None


def is_trusted(snapshot: Snapshot, facts: Facts) -> bool:
    """SASL-authenticated sessions and clients in ``trusted_networks``."""
    return bool(facts.sasl_user) or snapshot.trusted.lookup_text(facts.client_ip) is not None


def classify(snapshot: Snapshot, facts: Facts, *, trusted: bool) -> Direction:
    """Internal = hosted sender, trusted client and hosted recipient; all else is external."""
    recipient_hosted = snapshot.is_hosted(domain_of(facts.recipient))
    sender_hosted = snapshot.is_hosted(domain_of(facts.sender))
    if trusted and sender_hosted:
        return Direction.INTERNAL if recipient_hosted else Direction.OUTBOUND
    return Direction.INBOUND if recipient_hosted else Direction.RELAY


def decide_recipient(snapshot: Snapshot, facts: Facts) -> Decision:
    """Apply the order of decisions to one recipient."""
    domain = domain_of(facts.recipient)
    trusted = is_trusted(snapshot, facts)
    direction = classify(snapshot, facts, trusted=trusted)
    policy = snapshot.policy_for(domain)
    if policy is None:
        return _no_opinion(
            Rule.NOT_HOSTED,
            f"{domain or 'the recipient domain'} is not hosted here;"
            " Postfix's relay control decides",
            direction,
            domain,
        )
    if trusted:
        who = f"SASL user {facts.sasl_user}" if facts.sasl_user else "a trusted network"
        return _no_opinion(
            Rule.TRUSTED_CLIENT,
            f"the client is {who}: IP lists and gateway settings do not apply",
            direction,
            domain,
            policy,
        )
    address = parse_client_address(facts.client_ip)
    allowed = policy.allowed.lookup(*address) if address else None
    blocked = policy.blocked.lookup(*address) if address else None

    def decided(
        verdict: Verdict, action: str, rule: Rule, reason: str, entry: IpEntry | None = None
    ) -> Decision:
        return Decision(
            verdict, action, rule, reason, direction, domain, policy.owner, entry, allowed, blocked
        )

    sender_domain = domain_of(facts.sender)
    tls_policy = policy.tls_required_from.match(sender_domain) if sender_domain else None
    if tls_policy is not None and not facts.tls:
        return decided(
            Verdict.REJECT,
            f"530 5.7.0 Must issue a STARTTLS command first: mail from {sender_domain}"
            f" to {domain} requires TLS",
            Rule.TLS_REQUIRED,
            f"TLS policy {tls_policy.title!r} of {_whose(policy)} requires TLS for mail from"
            f" {sender_domain}, and the session is not encrypted",
        )
    if allowed is not None:
        also = (
            f"; it is also in blocked_ips ({blocked.text}), the allowed list wins"
            if (blocked)
            else ""
        )
        return decided(
            Verdict.ACCEPT,
            "OK",
            Rule.ALLOWED_IP,
            f"{facts.client_ip} is in allowed_ips of {_whose(policy)} ({allowed.text}){also}",
            allowed,
        )
    if blocked is not None:
        return decided(
            Verdict.REJECT,
            f"554 5.7.1 Client host [{facts.client_ip}] is blocked by the policy of {domain}",
            Rule.BLOCKED_IP,
            f"{facts.client_ip} is in blocked_ips of {_whose(policy)} ({blocked.text})",
            blocked,
        )
    gateway = policy.block.gateway
    if (
        gateway.enabled
        and gateway.only_from_gateway
        and (address is None or policy.gateway.lookup(*address) is None)
    ):
        return decided(
            Verdict.REJECT,
            f"554 5.7.1 {domain} accepts external mail only through its inbound gateway",
            Rule.GATEWAY_ONLY,
            f"{_whose(policy)} receives only from its gateway IPs, and {facts.client_ip} is not"
            " one of them",
        )
    return decided(
        Verdict.ACCEPT,
        "DUNNO",
        Rule.NO_RULE,
        "no postwarden setting applies; Postfix's other restrictions decide",
    )


def _whose(policy: DomainPolicy) -> str:
    return policy.owner or "the default settings"


def _no_opinion(
    rule: Rule,
    reason: str,
    direction: Direction,
    domain: str,
    policy: DomainPolicy | None = None,
) -> Decision:
    return Decision(
        Verdict.ACCEPT, "DUNNO", rule, reason, direction, domain, policy.owner if policy else ""
    )
