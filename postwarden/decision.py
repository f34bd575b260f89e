"""The one decision module: what postwarden answers for one recipient of one transaction.

Description:
    Pure functions over a :class:`~postwarden.settings.snapshot.Snapshot` and the facts of a
    request. ``postwarden explain``, the policy daemon and the milter all call them; nothing
    else re-implements the order of decisions, so what ``explain`` says is what the daemons do.

    :func:`decide_recipient` (RCPT time, policyd) runs :data:`STEPS` in order; the first step
    with an answer decides. Two exemptions come first: a recipient domain that is not hosted
    is left to Postfix's relay control, and trusted clients (SASL-authenticated, or in
    ``trusted_networks``) are never judged by the lists. Then (README "How a decision is
    made"):

    1. an incoming TLS policy names the sender's domain and the session is plaintext: reject
    2. client IP in ``allowed_ips``: accept (``OK``), which beats the blocked list and gateway
    3. client IP in ``blocked_ips``: reject 5.7.1 (recorded in the block history)
    4. gateway on with only_from_gateway and the client is not a gateway: reject 5.7.1
    5. the client is a gateway with skip_spam_filter: accept (``OK``), so Postfix-level spam
       restrictions after the policy check skip gateway mail as they skip allowed IPs
    6. otherwise: no opinion (``DUNNO``), Postfix's other restrictions decide

    A recipient's own domain block decides (nearest parent's block when it has none), so one
    transaction with recipients in several hosted domains gets each recipient's own answer.

    :func:`judge_message` (end of message, milter) judges mail of an inbound external
    recipient domain by its content's facts: for gateway mail, the original sending IP that
    the Received walk found (or *unknown*); allowed → not spam-filtered, marked trusted;
    blocked → the domain's recipients are removed; unknown → never trusted, never "not
    blocked", spam rules on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
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
    GATEWAY_SKIP = "gateway-skip-spam-filter"
    NO_RULE = "no-rule"


class Direction(enum.Enum):
    """Internal or external, decided per recipient (README "How a decision is made")."""

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


def is_gateway_client(policy: DomainPolicy, client_ip: str) -> bool:
    """Whether *client_ip* is one of the domain's gateways (and its gateway is on)."""
    return policy.block.gateway.enabled and policy.gateway.lookup_text(client_ip) is not None


@dataclass(frozen=True)
class _Recipient:
    """What every step reads: one hosted recipient of an untrusted client."""

    facts: Facts
    direction: Direction
    domain: str
    policy: DomainPolicy
    allowed: IpEntry | None
    blocked: IpEntry | None

    def decided(
        self,
        verdict: Verdict,
        action: str,
        rule: Rule,
        reason: str,
        entry: IpEntry | None = None,
    ) -> Decision:
        return Decision(
            verdict,
            action,
            rule,
            reason,
            self.direction,
            self.domain,
            self.policy.owner,
            entry,
            self.allowed,
            self.blocked,
        )


def _tls_required(r: _Recipient) -> Decision | None:
    sender_domain = domain_of(r.facts.sender)
    policy = r.policy.tls_required_from.match(sender_domain) if sender_domain else None
    if policy is None or r.facts.tls:
        return None
    return r.decided(
        Verdict.REJECT,
        f"530 5.7.0 Must issue a STARTTLS command first: mail from {sender_domain}"
        f" to {r.domain} requires TLS",
        Rule.TLS_REQUIRED,
        f"TLS policy {policy.title!r} of {_whose(r.policy)} requires TLS for mail from"
        f" {sender_domain}, and the session is not encrypted",
    )


def _allowed_ip(r: _Recipient) -> Decision | None:
    if r.allowed is None:
        return None
    also = (
        f"; it is also in blocked_ips ({r.blocked.text}), the allowed list wins"
        if r.blocked
        else ""
    )
    return r.decided(
        Verdict.ACCEPT,
        "OK",
        Rule.ALLOWED_IP,
        f"{r.facts.client_ip} is in allowed_ips of {_whose(r.policy)} ({r.allowed.text}){also}",
        r.allowed,
    )


def _blocked_ip(r: _Recipient) -> Decision | None:
    if r.blocked is None:
        return None
    return r.decided(
        Verdict.REJECT,
        f"554 5.7.1 Client host [{r.facts.client_ip}] is blocked by the policy of {r.domain}",
        Rule.BLOCKED_IP,
        f"{r.facts.client_ip} is in blocked_ips of {_whose(r.policy)} ({r.blocked.text})",
        r.blocked,
    )


def _gateway_only(r: _Recipient) -> Decision | None:
    gateway = r.policy.block.gateway
    if not (gateway.enabled and gateway.only_from_gateway):
        return None
    if is_gateway_client(r.policy, r.facts.client_ip):
        return None
    return r.decided(
        Verdict.REJECT,
        f"554 5.7.1 {r.domain} accepts external mail only through its inbound gateway",
        Rule.GATEWAY_ONLY,
        f"{_whose(r.policy)} receives only from its gateway IPs, and {r.facts.client_ip} is not"
        " one of them",
    )


def _gateway_skip_spam_filter(r: _Recipient) -> Decision | None:
    gateway = r.policy.block.gateway
    if not (gateway.skip_spam_filter and is_gateway_client(r.policy, r.facts.client_ip)):
        return None
    return r.decided(
        Verdict.ACCEPT,
        "OK",
        Rule.GATEWAY_SKIP,
        f"{r.facts.client_ip} is a gateway of {_whose(r.policy)}, whose gateway skips the spam"
        " filter: Postfix's restrictions after this check are skipped; the milter still"
        " judges the original sender",
    )


STEPS: tuple[Callable[[_Recipient], Decision | None], ...] = (
    _tls_required,
    _allowed_ip,
    _blocked_ip,
    _gateway_only,
    _gateway_skip_spam_filter,
)


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
    recipient = _Recipient(
        facts,
        direction,
        domain,
        policy,
        policy.allowed.lookup(*address) if address else None,
        policy.blocked.lookup(*address) if address else None,
    )
    for step in STEPS:
        decision = step(recipient)
        if decision is not None:
            return decision
    return recipient.decided(
        Verdict.ACCEPT,
        "DUNNO",
        Rule.NO_RULE,
        "no postwarden setting applies; Postfix's other restrictions decide",
    )


class Trust(enum.Enum):
    """Why downstream spam filters may skip a message (the ``X-Postwarden-Trusted`` value)."""

    NONE = ""
    ALLOWED_IP = "allowed-ip"
    GATEWAY = "gateway"


@dataclass(frozen=True)
class MessageJudgement:
    """The end-of-message verdict of one recipient domain on an inbound external message."""

    domain: str  # whose block judged ('' = defaults)
    via_gateway: bool
    subject_ip: str | None  # the client judged: the original client for gateway mail
    trust: Trust = Trust.NONE
    spam_rules: bool = True  # whether the domain's regex rules run
    blocked_entry: IpEntry | None = None  # the original client is blocked: recipients removed
    reason: str = ""

    @property
    def original_unknown(self) -> bool:
        return self.via_gateway and self.subject_ip is None


def judge_message(
    policy: DomainPolicy, client_ip: str, *, original_ip: str | None = None
) -> MessageJudgement:
    """Judge an inbound external message for the domain whose block is *policy*.

    For gateway mail (*client_ip* is one of the domain's gateways), *original_ip* is what
    the Received walk found, ``None`` when it is unknown; otherwise it is ignored and the
    client itself is judged. Blocked clients that connect directly were refused at RCPT
    by the policy daemon, so only gateway mail can be blocked here.
    """
    whose = _whose(policy)
    via_gateway = is_gateway_client(policy, client_ip)
    subject = original_ip if via_gateway else client_ip
    if subject is None:
        return MessageJudgement(
            policy.owner,
            True,
            None,
            reason=f"the original IP behind {whose}'s gateway {client_ip} is unknown:"
            " not trusted, spam rules on",
        )
    address = parse_client_address(subject)
    allowed = policy.allowed.lookup(*address) if address else None
    if allowed is not None:
        return MessageJudgement(
            policy.owner,
            via_gateway,
            subject,
            Trust.ALLOWED_IP,
            spam_rules=False,
            reason=f"{subject} is in allowed_ips of {whose} ({allowed.text}): not filtered",
        )
    blocked = policy.blocked.lookup(*address) if via_gateway and address else None
    if blocked is not None:
        return MessageJudgement(
            policy.owner,
            True,
            subject,
            spam_rules=False,
            blocked_entry=blocked,
            reason=f"the original IP {subject} is in blocked_ips of {whose} ({blocked.text}):"
            f" {whose}'s recipients are removed",
        )
    if via_gateway and policy.block.gateway.skip_spam_filter:
        return MessageJudgement(
            policy.owner,
            True,
            subject,
            Trust.GATEWAY,
            reason=f"gateway mail of {whose} (original IP {subject}): marked for downstream"
            " filters to skip; spam rules on",
        )
    origin = f"original IP {subject}" if via_gateway else subject
    return MessageJudgement(
        policy.owner, via_gateway, subject, reason=f"{origin}: spam rules of {whose} on"
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
