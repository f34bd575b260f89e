"""The milter: collect what Postfix sends, apply the plan at end of message.

Description:
    One :class:`PostwardenMilter` per Postfix connection, driven by the protocol server
    (:mod:`postwarden.milter.server`). The callbacks only record facts;
    :func:`~postwarden.milter.verdict.plan_message` decides, and :meth:`~PostwardenMilter.eom`
    turns the plan into the milter actions and the verdict.

    Callbacks that never change the outcome (connect, MAIL, RCPT, each header, each body
    chunk) are negotiated as "no reply" and steps that are not needed (HELO, DATA, unknown
    commands, end of headers) are switched off, so Postfix waits for us only at end of
    message. The body: for a trusted client (whose mail may be signed) it streams into
    the DKIM body hash and is not kept; otherwise it is kept up to four times the spam
    filter's cap and the rest is dropped as it arrives (an MTA that cannot skip replies is
    told to skip the rest instead, ``SKIP``): a reply per chunk would cost every message a
    round trip to save copying the tail of a large one.

Protocol:
    Actions negotiated: add header, change header (delete), add recipient with ESMTP
    parameters, delete recipient, and the macro list. Macros used, asked for per stage
    with the macro list (Postfix then sends no others): ``{auth_authen}`` and
    ``{daemon_name}`` at MAIL (the latter tells the hand-back listener from the others) and
    ``i`` at end of message. Recipients are deleted in the form
    Postfix stored them (no source route) and added in quoted canonical form.

Errors:
    Any exception while handling a message is logged with its traceback and answered with
    TEMPFAIL for that message: Postfix tells the client to try again, nothing is accepted
    unfiltered and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import ClassVar

from postwarden import metrics
from postwarden.address import domain_of, external_address
from postwarden.decision import Facts, is_trusted
from postwarden.milter import protocol as mp
from postwarden.milter.dkim_sign import BodyHasher
from postwarden.milter.verdict import MessageFacts, Plan, plan_message
from postwarden.milter.view import MilterView
from postwarden.routing import HANDBACK_DAEMON_NAME
from postwarden.state.db import BlockEvent

log = logging.getLogger("postwarden.milter")

ACTIONS = mp.F_ADDHDRS | mp.F_CHGHDRS | mp.F_DELRCPT | mp.F_ADDRCPT | mp.F_ADDRCPT_PAR
# Steps Postfix need not send at all, and callbacks it need not wait for.
SKIPPED = mp.P_NOHELO | mp.P_NODATA | mp.P_NOUNKNOWN | mp.P_NOEOH
NO_REPLY = mp.P_NR_CONN | mp.P_NR_MAIL | mp.P_NR_RCPT | mp.P_NR_HDR | mp.P_NR_BODY
MACROS = {  # per stage, the macros we read (Postfix sends nothing else)
    mp.M_CONNECT: (),
    mp.M_ENVFROM: ("{auth_authen}", "{daemon_name}"),
    mp.M_ENVRCPT: (),
    mp.M_EOM: ("i",),
}
TEMPFAIL_REPLY = ("451", "4.3.0", "Temporary content filter failure, try again later")
_UNLIMITED = 1 << 62


class PostwardenMilter:
    """Thin: state in, plan out, for one connection."""

    # Set by main() for the process: the view in force and the block recorder.
    view: ClassVar[staticmethod[[], MilterView]]
    record: ClassVar[staticmethod[[BlockEvent], None]]
    hasher: BodyHasher | None  # the body's DKIM hash, for trusted clients' mail

    def __init__(self) -> None:
        self.client_ip = "127.0.0.1"
        self.facts: MessageFacts | None = None
        self.macros: dict[bytes, dict[str, str]] = {}  # per stage (its command byte)
        self.protocol = 0  # the negotiated options
        self._reset()

    def negotiate(self, offered: mp.Options) -> bytes:
        """Choose among the options Postfix offers (see the docstring); the reply packet."""
        no_reply = NO_REPLY if offered.protocol & NO_REPLY == NO_REPLY else 0
        skip = 0 if no_reply else mp.P_SKIP  # without body replies there is no SKIP
        self.protocol = offered.protocol & (SKIPPED | no_reply | skip)
        actions = offered.actions & ACTIONS
        if offered.actions & mp.F_SETSYMLIST:
            return mp.encode_optneg(actions | mp.F_SETSYMLIST, self.protocol, MACROS)
        return mp.encode_optneg(actions, self.protocol, {})

    def getsymval(self, name: str) -> str | None:
        bare = name[1:-1] if name.startswith("{") else name
        for values in self.macros.values():
            if bare in values:
                return values[bare]
        return None

    def connect(self, client_ip: str | None) -> None:
        # None: local submission (non_smtpd_milters) and unix-socket clients
        self.client_ip = client_ip or "127.0.0.1"

    def envfrom(self, sender: str) -> None:
        self._reset()
        self.facts = MessageFacts(
            client_ip=self.client_ip,
            sasl_user=self.getsymval("{auth_authen}") or "",
            sender=sender.strip("<>"),
            handback=self.getsymval("{daemon_name}") == HANDBACK_DAEMON_NAME,
        )

    def envrcpt(self, recipient: str, params: tuple[str, ...]) -> None:
        if self.facts is not None:
            self.facts.add_recipient(recipient, params)

    def header(self, name: str, value: bytes) -> None:
        if self.facts is not None:
            self.facts.headers.append((name, value))

    def body(self, chunk: bytes) -> bool:
        """Take a body chunk; True when the rest of the body is not wanted."""
        facts = self.facts
        if facts is None:
            return False
        if self.hasher is None and not self.body_cap:
            self._start_body(facts)
        if self.hasher is not None:
            self.hasher.update(chunk)
            return False
        if self.body_size + len(chunk) > self.body_cap:
            chunk = chunk[: self.body_cap - self.body_size]
        self.chunks.append(chunk)
        self.body_size += len(chunk)
        return self.body_size >= self.body_cap

    def _start_body(self, facts: MessageFacts) -> None:
        """Hash the body to sign it (trusted clients); keep what the spam rules read else."""
        view = self.view()
        if is_trusted(
            view.snapshot, Facts(facts.client_ip, facts.sender, "", sasl_user=facts.sasl_user)
        ):
            self.hasher = BodyHasher()
            self.body_cap = _UNLIMITED
        else:
            self.body_cap = 4 * view.snapshot.settings.spam_filter.body_limit + 1

    def eom(self) -> list[bytes]:
        """The actions and the verdict for the message, as packets."""
        facts, chunks, hasher = self.facts, self.chunks, self.hasher
        self._reset()
        if facts is None:
            return [mp.packet(mp.CONTINUE)]
        if hasher is not None:
            facts.body_hash = hasher.digest()
        else:
            facts.body = b"".join(chunks)
        facts.queue_id = self.getsymval("i") or "NOQUEUE"
        try:
            start = time.perf_counter()
            plan = plan_message(self.view(), facts)
            packets = self._apply(facts, plan)
            metrics.MILTER_SECONDS.observe(time.perf_counter() - start)
            _count(plan)
            return packets
        except Exception:
            log.exception("%s: internal error; temporary failure", facts.queue_id)
            return internal_error()

    def _apply(self, facts: MessageFacts, plan: Plan) -> list[bytes]:
        packets = [mp.encode_change_header(name, index, "") for name, index in plan.remove_headers]
        for event in blocked_attempts(self.view(), facts, plan.blocks):
            self.record(event)
        if plan.reject:
            _log(facts, plan, "reject")
            return [*packets, mp.encode_reply("550", "5.7.1", plan.reject)]
        for recipient in plan.delete_recipients:
            for stored in facts.stored_forms.get(recipient, [recipient]):
                packets.append(mp.encode_delete_recipient(f"<{stored}>"))
        for address, params in plan.add_recipients:
            packets.append(mp.encode_add_recipient(external_address(address), " ".join(params)))
        if plan.signature:
            packets.append(mp.encode_header("DKIM-Signature", plan.signature, 0))
        packets += [mp.encode_header(name, value) for name, value in plan.add_headers]
        _log(facts, plan, "accept")
        packets.append(mp.packet(mp.CONTINUE))
        return packets

    def abort(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.facts = None
        self.chunks: list[bytes] = []
        self.body_size, self.body_cap = 0, 0
        self.hasher = None


def internal_error() -> list[bytes]:
    """The verdict for a message we failed on: try again later (counted)."""
    metrics.ERRORS.inc()
    metrics.MILTER_MESSAGES.labels("tempfail").inc()
    return [mp.encode_reply(*TEMPFAIL_REPLY)]


def blocked_attempts(
    view: MilterView, facts: MessageFacts, blocks: list[BlockEvent]
) -> list[BlockEvent]:
    """One block event per refused recipient, with the sender (``block history``)."""
    events = []
    for event in blocks:
        refused = [
            r.strip("<>")
            for r in facts.recipients
            if (policy := view.snapshot.policy_for(domain_of(r.strip("<>")))) is not None
            and policy.owner == event.domain
        ]
        events += [
            replace(event, sender=facts.sender, recipient=r, source="milter")
            for r in refused or [""]
        ]
    return events


def _count(plan: Plan) -> None:
    metrics.MILTER_MESSAGES.labels("reject" if plan.reject else "accept").inc()
    if plan.signature_domain:
        metrics.DKIM_SIGNATURES.labels(plan.signature_domain).inc()
    for rule in plan.spam_rules:
        metrics.SPAM_TAGS.labels(rule).inc()
    for event in plan.blocks:
        metrics.GATEWAY_BLOCKS.labels(event.domain).inc()
    for domain in plan.unknown_origins:
        metrics.GATEWAY_UNKNOWN_ORIGINS.labels(domain or "-").inc()


def _log(facts: MessageFacts, plan: Plan, outcome: str) -> None:
    for domain in plan.unknown_origins:
        log.warning(
            "%s: original IP unknown for %s: client=[%s]: a Received header of the gateway"
            " could not be read; not trusted, spam rules on",
            facts.queue_id,
            domain or "the default settings",
            facts.client_ip,
        )
    details = [*plan.notes]
    if plan.remove_headers:
        details.append(f"removed {len(plan.remove_headers)} header(s)")
    if plan.delete_recipients:
        details.append("removed " + ", ".join(plan.delete_recipients))
    details.extend(f"added {name}: {value}" for name, value in plan.add_headers)
    log.info(
        "%s: %s: from=<%s> client=[%s] %s",
        facts.queue_id,
        outcome,
        facts.sender,
        facts.client_ip,
        "; ".join(details) or "nothing to do",
    )
