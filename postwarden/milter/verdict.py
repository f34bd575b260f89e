"""What the milter does to one message: a pure function from what Postfix sent to a plan.

Description:
    :func:`plan_message` takes the compiled view and the facts collected for one message and
    returns a :class:`Plan` — header fields to remove and to add, a DKIM signature, recipients
    to remove and to add, or a reject — which :mod:`postwarden.milter.app` then carries out. Who is
    trusted, which domain block governs a recipient and how an inbound message is judged
    come from the shared decision module, so the milter, the policy daemon and ``explain``
    agree by construction.

    Trusted clients (SASL, trusted networks; locally submitted mail arrives as localhost):
        their mail is DKIM-signed when its single From address is in a hosted domain whose
        block has DKIM on — with that domain's active key, else the primary domain's.
    Everyone else, per hosted recipient domain (:func:`postwarden.decision.judge_message`):
        gateway mail is judged by the original sending IP that the Received walk finds
        (unknown when a hop cannot be read); blocked → that domain's recipients are removed
        (the message is rejected when none is left); allowed → no regex rules, marked
        trusted; otherwise the domain's regex rules run and a match tags the message.
        One message reaches all its recipients as one copy, so where domains disagree the
        stricter answer wins: tagged if any domain's rules match, marked trusted only when
        every remaining recipient's domain trusts it.
    Mail that a route hands back (the ``postwarden-handback`` listener) was judged and
    routed on its way out: it is delivered as addressed.
    Every incoming copy of our own header fields is removed first (see header_rewrite).

Security:
    Header values are data: the Received walk reads them raw, the From address is parsed
    from the undecoded header, and a malformed encoded word is read as text. Content never
    makes the plan raise, so it never causes a temporary failure.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from postwarden.address import canonical_address, domain_of, envelope_address
from postwarden.decision import (
    Facts,
    MessageJudgement,
    Trust,
    is_gateway_client,
    is_trusted,
    judge_message,
)
from postwarden.milter import header_rewrite
from postwarden.milter.dkim_sign import sign
from postwarden.milter.received import OriginalClient, original_client
from postwarden.milter.spam_rules import MessageText, matching_rules
from postwarden.milter.view import MilterView
from postwarden.routing import route_message
from postwarden.settings.snapshot import DomainPolicy
from postwarden.state.db import BlockEvent

log = logging.getLogger("postwarden.milter")


@dataclass
class MessageFacts:
    """What Postfix told the milter about one message.

    ``recipients`` holds each recipient once, in canonical form
    (:func:`postwarden.address.canonical_address`), however often and in whatever form the
    client sent it; ``recipient_params`` its ESMTP parameters.
    """

    client_ip: str
    sasl_user: str = ""
    queue_id: str = ""
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    recipient_params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stored_forms: dict[str, list[str]] = field(default_factory=dict)  # as Postfix stored them
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: bytes = b""  # as far as the spam rules read it; empty when streamed to body_hash
    body_hash: bytes | None = None  # DKIM bh=, computed while the body streamed by
    handback: bool = False  # arrived on the listener where routes hand mail back

    def add_recipient(self, argument: str, params: tuple[str, ...]) -> None:
        """Note one RCPT argument; a recipient sent twice (in any form) counts once."""
        stored = envelope_address(argument)
        key = canonical_address(stored)
        forms = self.stored_forms.setdefault(key, [])
        if stored not in forms:
            forms.append(stored)
        if key not in self.recipient_params:
            self.recipients.append(key)
            self.recipient_params[key] = params


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
    unknown_origins: list[str] = field(default_factory=list)  # domains that could not tell
    notes: list[str] = field(default_factory=list)  # for the log line


def plan_message(view: MilterView, facts: MessageFacts) -> Plan:
    snapshot = view.snapshot
    trusted = is_trusted(
        snapshot, Facts(facts.client_ip, facts.sender, "", sasl_user=facts.sasl_user)
    )
    recipients = _hosted_recipients(view, facts.recipients)
    own_verdict = not trusted and any(view.rules.get(p.owner) for p in recipients.values())
    plan = Plan(
        remove_headers=header_rewrite.removals(
            [name for name, _ in facts.headers], own_spam_flag=own_verdict
        )
    )
    if facts.handback:
        plan.notes.append("handed back by a route: delivered as addressed")
        return plan
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
    # Undecoded: an encoded display name ("=?utf-8?q?M=C3=BCller=2C_Hans?=") stays one
    # atom instead of becoming a comma that splits the address list.
    addresses = email.utils.getaddresses([_raw_text(v) for v in from_values])
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
        bh=facts.body_hash,
    )
    plan.notes.append(f"signed d={key.domain} s={key.selector}")


def _raw_text(value: bytes) -> str:
    return " ".join(value.decode("utf-8", "replace").split())


def _judge_inbound(
    view: MilterView, facts: MessageFacts, recipients: dict[str, DomainPolicy], plan: Plan
) -> None:
    text = MessageText(facts.headers, facts.body, view.snapshot.settings.spam_filter.body_limit)
    received = [value for name, value in facts.headers if name.lower() == "received"]
    verdicts: dict[str, _DomainVerdict] = {}
    for recipient, policy in recipients.items():
        if policy.owner not in verdicts:
            verdicts[policy.owner] = _judge_domain(view, facts, policy, received, text)
        if verdicts[policy.owner].judgement.blocked_entry is not None:
            plan.delete_recipients.append(recipient)
    for verdict in verdicts.values():
        plan.notes.append(verdict.judgement.reason)
        if verdict.block is not None:
            plan.blocks.append(verdict.block)
        if verdict.judgement.original_unknown:
            plan.unknown_origins.append(verdict.judgement.domain)
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
    trust = {v.judgement.trust for v in remaining}
    if remaining and Trust.NONE not in trust:
        plan.add_headers.append((header_rewrite.TRUSTED, "; ".join(sorted(t.value for t in trust))))


@dataclass
class _DomainVerdict:
    judgement: MessageJudgement
    spam_rules: list[str] = field(default_factory=list)
    block: BlockEvent | None = None


def _judge_domain(
    view: MilterView,
    facts: MessageFacts,
    policy: DomainPolicy,
    received: list[bytes],
    text: MessageText,
) -> _DomainVerdict:
    original: OriginalClient | None = None
    if is_gateway_client(policy, facts.client_ip):
        original = original_client(
            received,
            lambda ip: policy.gateway.lookup_text(ip) is not None,
            max_hops=policy.block.gateway.max_hops,
        )
    judgement = judge_message(
        policy, facts.client_ip, original_ip=original.address if original else None
    )
    if original is not None and original.address is None:
        judgement = replace(judgement, reason=f"{judgement.reason} ({original.problem})")
    verdict = _DomainVerdict(judgement)
    if judgement.blocked_entry is not None and judgement.subject_ip is not None:
        verdict.block = BlockEvent(
            policy.owner, judgement.blocked_entry.text, judgement.subject_ip, time.time()
        )
    elif judgement.spam_rules:
        verdict.spam_rules = matching_rules(view.rules.get(policy.owner, ()), text)
    return verdict
