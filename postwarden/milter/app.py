"""The pymilter class: collect what Postfix sends, apply the plan at end of message.

Description:
    One instance per Postfix connection (libmilter runs a thread for each). The callbacks
    only record facts; :func:`~postwarden.milter.verdict.plan_message` decides. Callbacks
    that never change the outcome are declared ``@noreply`` and steps that are not needed
    (HELO, DATA, unknown commands, end of headers) are switched off at negotiation, so
    Postfix waits for us only at end of body and end of message. The body is requested only
    as far as needed: in full to sign, up to the spam filter's cap otherwise (``SKIP``).

Protocol:
    Actions negotiated: add header, change header (delete), add recipient with ESMTP
    parameters, delete recipient, and the macro list. Macros used: ``{auth_authen}`` and
    ``{daemon_name}`` (MAIL; the latter tells the hand-back listener from the others) and
    ``i`` (end of message), all in Postfix's defaults. Recipients are deleted in the form
    Postfix stored them (no source route) and added in quoted canonical form.

Errors:
    Any exception while handling a message is logged with its traceback and answered with
    TEMPFAIL for that message: Postfix tells the client to try again, nothing is accepted
    unfiltered and nothing is lost.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import Milter

from postwarden import metrics
from postwarden.address import domain_of, external_address
from postwarden.decision import Facts, is_trusted
from postwarden.milter.verdict import MessageFacts, Plan, plan_message
from postwarden.milter.view import MilterView
from postwarden.routing import HANDBACK_DAEMON_NAME
from postwarden.settings.state import BlockEvent

log = logging.getLogger("postwarden.milter")

FLAGS = (
    Milter.ADDHDRS
    | Milter.CHGHDRS
    | Milter.DELRCPT
    | Milter.ADDRCPT
    | Milter.ADDRCPT_PAR
    | Milter.SETSYMLIST
)


class PostwardenMilter(Milter.Base):  # type: ignore[misc]
    """Thin: state in, plan out."""

    view: ClassVar[Callable[[], MilterView]]
    record: ClassVar[Callable[[BlockEvent], None]]

    def __init__(self) -> None:
        super().__init__()
        self.client_ip = "127.0.0.1"
        self.facts: MessageFacts | None = None
        self.chunks: list[bytes] = []
        self.body_size = 0
        self.body_cap = 0

    @Milter.noreply
    @Milter.symlist()
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            self.client_ip = str(hostaddr[0])
        else:  # local submission (non_smtpd_milters) and unix-socket clients
            self.client_ip = "127.0.0.1"
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.symlist("{auth_authen}", "{daemon_name}")
    def envfrom(self, sender: str, *params: str) -> int:
        self._reset()
        self.facts = MessageFacts(
            client_ip=self.client_ip,
            sasl_user=self.getsymval("{auth_authen}") or "",
            sender=sender.strip("<>"),
            handback=self.getsymval("{daemon_name}") == HANDBACK_DAEMON_NAME,
        )
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.symlist()
    def envrcpt(self, recipient: str, *params: str) -> int:
        if self.facts is not None:
            self.facts.add_recipient(recipient, params)
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: str, value: bytes) -> int:
        if self.facts is not None:
            self.facts.headers.append((name, value))
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        facts = self.facts
        if facts is None:
            return Milter.CONTINUE
        if not self.body_cap:
            self.body_cap = self._body_cap(facts)
        chunk = chunk[: self.body_cap - self.body_size]
        self.chunks.append(chunk)
        self.body_size += len(chunk)
        return Milter.SKIP if self.body_size >= self.body_cap else Milter.CONTINUE

    def _body_cap(self, facts: MessageFacts) -> int:
        """All of it to sign (trusted clients); four times the spam cap otherwise."""
        view = self.view()
        if is_trusted(
            view.snapshot, Facts(facts.client_ip, facts.sender, "", sasl_user=facts.sasl_user)
        ):
            return 1 << 62
        return 4 * view.snapshot.settings.spam_filter.body_limit + 1

    @Milter.symlist("i")
    def eom(self) -> int:
        facts, chunks = self.facts, self.chunks
        self._reset()
        if facts is None:
            return Milter.CONTINUE
        facts.body = b"".join(chunks)
        facts.queue_id = self.getsymval("i") or "NOQUEUE"
        try:
            start = time.perf_counter()
            plan = plan_message(self.view(), facts)
            outcome = self._apply(facts, plan)
            metrics.MILTER_SECONDS.observe(time.perf_counter() - start)
            _count(plan)
            return outcome
        except Exception:
            metrics.ERRORS.inc()
            metrics.MILTER_MESSAGES.labels("tempfail").inc()
            log.exception("%s: internal error; temporary failure", facts.queue_id)
            self.setreply("451", "4.3.0", "Temporary content filter failure, try again later")
            return Milter.TEMPFAIL

    def _apply(self, facts: MessageFacts, plan: Plan) -> int:
        for name, index in plan.remove_headers:
            self.chgheader(name, index, "")
        for event in blocked_attempts(self.view(), facts, plan.blocks):
            self.record(event)
        if plan.reject:
            self.setreply("550", "5.7.1", plan.reject)
            _log(facts, plan, "reject")
            return Milter.REJECT
        for recipient in plan.delete_recipients:
            for stored in facts.stored_forms.get(recipient, [recipient]):
                self.delrcpt(f"<{stored}>")
        for address, params in plan.add_recipients:
            self.addrcpt(external_address(address), " ".join(params))
        if plan.signature:
            self.addheader("DKIM-Signature", plan.signature, 0)
        for name, value in plan.add_headers:
            self.addheader(name, value)
        _log(facts, plan, "accept")
        return Milter.CONTINUE

    def abort(self) -> int:
        self._reset()
        return Milter.CONTINUE

    def _reset(self) -> None:
        self.facts, self.chunks, self.body_size, self.body_cap = None, [], 0, 0


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
