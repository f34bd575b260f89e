"""What the milter does to one message: a pure function from what Postfix sent to a plan.

Description:
    :func:`plan_message` takes the compiled view and the facts collected for one message and
    returns a :class:`Plan` — header fields to remove and to add, a DKIM signature, recipients
    to remove, or a reject — which the pymilter class then carries out. Who is trusted and
    which domain block governs a recipient come from the shared decision module, so the
    milter and the policy daemon agree by construction.

    Trusted clients (SASL, trusted networks; locally submitted mail arrives as localhost):
        their mail is DKIM-signed when its single From address is in a hosted domain whose
        block has DKIM on — with that domain's active key, else the primary domain's.
    Everyone else, per hosted recipient domain:
        - mail from one of the domain's gateways: the original sending IP is found in the
          Received headers; when the domain blocks it (and does not allow it), that domain's
          recipients are removed (the message is rejected if no recipient is left) and the
          block is recorded; when the domain allows it, the domain's regex rules are skipped;
          ``skip_spam_filter`` marks the mail trusted for downstream filters (rules still run);
        - mail from an allowed IP: the domain's regex rules are skipped and the mail marked;
        - otherwise the domain's regex rules run; a match tags the message.
        One message reaches all its recipients as one copy, so where domains disagree the
        stricter answer wins: tagged if any domain's rules match, marked trusted only when
        every remaining recipient's domain trusts it.
    Every incoming copy of our own header fields is removed first (see header_rewrite).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from postwarden.address import domain_of
from postwarden.decision import Facts, is_trusted
from postwarden.milter import header_rewrite
from postwarden.milter.dkim_sign import sign
from postwarden.milter.received import original_client
from postwarden.milter.spam_rules import MessageText, decode_header_value, matching_rules
from postwarden.milter.view import MilterView
from postwarden.routing import route_message
from postwarden.settings.snapshot import DomainPolicy
from postwarden.settings.state import BlockEvent
from postwarden.util.iptable import parse_client_address

log = logging.getLogger("postwarden.milter")


@dataclass
class MessageFacts:
    """What Postfix told the milter about one message."""

    client_ip: str
    sasl_user: str = ""
    queue_id: str = ""
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    recipient_params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Plan:
    """What to do to the message at end of message."""

    remove_headers: list[tuple[str, int]] = field(default_factory=list)
    add_headers: list[tuple[str, str]] = field(default_factory=list)
    signature: str | None = None  # DKIM-Signature value, inserted at the top
    signature_domain: str = ""
    spam_rules: list[str] = field(default_factory=list)
    delete_recipients: list[str] = field(default_factory=list)
    add_recipients: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    reject: str | None = None
    blocks: list[BlockEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the log line


def plan_message(view: MilterView, facts: MessageFacts) -> Plan:
    snapshot = view.snapshot
    trusted = is_trusted(
        snapshot, Facts(facts.client_ip, facts.sender, "", sasl_user=facts.sasl_user)
    )
    recipients = _hosted_recipients(view, facts.recipients)
    own_verdict = not trusted and any(policy.block.spam_rules for policy in recipients.values())
    plan = Plan(
        remove_headers=header_rewrite.removals(
            [name for name, _ in facts.headers], own_spam_flag=own_verdict
        )
    )
    if trusted:
        _sign(view, facts, plan)
    elif recipients:
        _judge_inbound(view, facts, recipients, plan)
    if not plan.reject:
        _route(view, facts, plan)
    return plan


def _route(view: MilterView, facts: MessageFacts, plan: Plan) -> None:
    """Move or copy recipients to routes (see postwarden.routing)."""
    remaining = [r for r in facts.recipients if r not in plan.delete_recipients]
    routes = route_message(
        view.snapshot,
        client_ip=facts.client_ip,
        sasl_user=facts.sasl_user,
        sender=facts.sender,
        recipients=[(r, facts.recipient_params.get(r, ())) for r in remaining],
        known=view.known,
    )
    for recipient in routes.recipients:
        if not recipient.keep:
            plan.delete_recipients.append(recipient.recipient)
    for copy in routes.copies:
        plan.add_recipients.append((copy.address, copy.params))
        plan.notes.append(f"{copy.original} to route {copy.route} ({copy.rule})")


def _hosted_recipients(view: MilterView, recipients: Sequence[str]) -> dict[str, DomainPolicy]:
    found = {}
    for recipient in recipients:
        policy = view.snapshot.policy_for(domain_of(recipient))
        if policy is not None:
            found[recipient] = policy
    return found


def _sign(view: MilterView, facts: MessageFacts, plan: Plan) -> None:
    from_values = [value for name, value in facts.headers if name.lower() == "from"]
    addresses = email.utils.getaddresses([decode_header_value(v) for v in from_values])
    if len(from_values) != 1 or len(addresses) != 1 or "@" not in addresses[0][1]:
        plan.notes.append("not signed: the message needs exactly one From address")
        return
    from_domain = domain_of(addresses[0][1])
    policy = view.snapshot.policy_for(from_domain)
    if policy is None:
        return  # a From domain we do not host is never signed
    if not policy.block.dkim.enabled:
        plan.notes.append(f"not signed: DKIM is off for {from_domain}")
        return
    key = view.keys.get(from_domain) or view.keys.get(view.snapshot.settings.primary_domain)
    if key is None:
        plan.notes.append(f"not signed: no verified DKIM key for {from_domain} or the primary")
        return
    plan.signature_domain = key.domain
    plan.signature = sign(
        facts.headers,
        facts.body,
        domain=key.domain,
        selector=key.selector,
        key=key.key,
        algorithm=key.algorithm,
    )
    plan.notes.append(f"signed d={key.domain} s={key.selector}")


def _judge_inbound(
    view: MilterView, facts: MessageFacts, recipients: dict[str, DomainPolicy], plan: Plan
) -> None:
    text = MessageText(facts.headers, facts.body, view.snapshot.settings.spam_filter.body_limit)
    received = [decode_header_value(v) for n, v in facts.headers if n.lower() == "received"]
    verdicts: dict[str, _DomainVerdict] = {}
    for recipient, policy in recipients.items():
        if policy.owner not in verdicts:
            verdicts[policy.owner] = _judge_domain(view, facts, policy, received, text)
        verdict = verdicts[policy.owner]
        if verdict.block is not None:
            plan.delete_recipients.append(recipient)
    for verdict in verdicts.values():
        plan.notes.extend(verdict.notes)
        if verdict.block is not None:
            plan.blocks.append(verdict.block)
    if plan.delete_recipients and len(plan.delete_recipients) == len(facts.recipients):
        plan.reject = "Message rejected: its original sender is blocked"
        plan.delete_recipients = []
        return
    remaining = [
        verdicts[recipients[r].owner] for r in recipients if r not in plan.delete_recipients
    ]
    spam = sorted({name for v in remaining for name in v.spam_rules})
    plan.spam_rules = spam
    if spam:
        plan.add_headers.append((header_rewrite.SPAM_FLAG, "YES"))
        plan.add_headers.append((header_rewrite.SPAM_RULE, ", ".join(spam)))
    trust = {v.trusted for v in remaining}
    if remaining and "" not in trust:
        plan.add_headers.append((header_rewrite.TRUSTED, "; ".join(sorted(trust))))


@dataclass
class _DomainVerdict:
    spam_rules: list[str] = field(default_factory=list)
    trusted: str = ""  # why downstream filters may skip this mail ('' = they may not)
    block: BlockEvent | None = None
    notes: list[str] = field(default_factory=list)


def _judge_domain(
    view: MilterView,
    facts: MessageFacts,
    policy: DomainPolicy,
    received: list[str],
    text: MessageText,
) -> _DomainVerdict:
    verdict = _DomainVerdict()
    client = parse_client_address(facts.client_ip)
    gateway = policy.block.gateway
    address, client_text = client, facts.client_ip
    via_gateway = bool(gateway.enabled and client and policy.gateway.lookup(*client))
    if via_gateway:
        found = original_client(
            received,
            lambda ip: policy.gateway.lookup_text(ip) is not None,
            max_hops=gateway.max_hops,
        )
        if found.address is None:
            verdict.notes.append(
                f"{policy.owner}: original IP unknown ({found.problem});"
                " the gateway counts as the client"
            )
        else:
            client_text, address = found.address, parse_client_address(found.address)
            verdict.notes.append(f"{policy.owner}: original IP {found.address}")
    allowed = policy.allowed.lookup(*address) if address else None
    if via_gateway and allowed is None and address != client:
        blocked = policy.blocked.lookup(*address) if address else None
        if blocked is not None:
            verdict.block = BlockEvent(policy.owner, blocked.text, client_text, time.time())
            verdict.notes.append(f"{policy.owner}: original IP blocked by {blocked.text}")
            return verdict
    if allowed is not None:
        verdict.trusted = "allowed-ip"
    elif via_gateway and gateway.skip_spam_filter:
        verdict.trusted = "gateway"
    if allowed is None:
        verdict.spam_rules = matching_rules(view.rules.get(policy.owner, ()), text)
    return verdict
