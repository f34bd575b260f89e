"""The milter: collect what Postfix sends, apply the plan at end of message.

Description:
    One :class:`PostwardenMilter` per Postfix connection (libmilter runs a thread for
    each). The callbacks only record facts; :func:`~postwarden.milter.verdict.plan_message`
    decides. :func:`run` registers them with pymilter's low-level ``milter`` module
    directly, one Python call per callback: per message a signing milter is called some
    twenty times (a header field each), and pymilter's generic dispatch (a lambda, byte
    decoding by reflection, a reply-mode wrapper) cost more than the rest of the callback.

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
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar

import Milter
import milter

from postwarden import metrics
from postwarden.address import domain_of, external_address
from postwarden.decision import Facts, is_trusted
from postwarden.milter.dkim_sign import BodyHasher
from postwarden.milter.verdict import MessageFacts, Plan, plan_message
from postwarden.milter.view import MilterView
from postwarden.routing import HANDBACK_DAEMON_NAME
from postwarden.state.db import BlockEvent

log = logging.getLogger("postwarden.milter")

FLAGS = (
    Milter.ADDHDRS
    | Milter.CHGHDRS
    | Milter.DELRCPT
    | Milter.ADDRCPT
    | Milter.ADDRCPT_PAR
    | Milter.SETSYMLIST
)
# Steps Postfix need not send at all, and callbacks it need not wait for.
_SKIPPED = Milter.P_NOHELO | Milter.P_NODATA | Milter.P_NOUNKNOWN | Milter.P_NOEOH
_NO_REPLY = (
    Milter.P_NR_CONN | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_HDR | Milter.P_NR_BODY
)
_MACROS = (  # per stage, the macros we read (Postfix sends nothing else)
    (Milter.M_CONNECT, ()),
    (Milter.M_ENVFROM, ("{auth_authen}", "{daemon_name}")),
    (Milter.M_ENVRCPT, ()),
    (Milter.M_EOM, ("i",)),
)
_UNLIMITED = 1 << 62


class PostwardenMilter(Milter.Base):
    """Thin: state in, plan out. ``Milter.Base`` supplies the actions (addheader, ...)."""

    # Set by main() for the process: the view in force and the block recorder.
    view: ClassVar[staticmethod[[], MilterView]]
    record: ClassVar[staticmethod[[BlockEvent], None]]
    hasher: BodyHasher | None  # the body's DKIM hash, for trusted clients' mail

    def __init__(self) -> None:
        super().__init__()
        self.client_ip = "127.0.0.1"
        self.facts: MessageFacts | None = None
        self.noreply = Milter.CONTINUE  # what a no-reply callback returns (negotiated)
        self._reset()

    def negotiate_options(self, opts: list[int]) -> None:
        """Choose the protocol options among those Postfix offers (see the docstring)."""
        self._actions, offered = opts[0], opts[1]
        no_reply = _NO_REPLY if offered & _NO_REPLY == _NO_REPLY else 0
        skip = 0 if no_reply else Milter.P_SKIP  # without body replies there is no SKIP
        opts[1] = self._protocol = offered & (_SKIPPED | no_reply | skip)
        opts[2] = opts[3] = 0
        self.noreply = Milter.NOREPLY if no_reply else Milter.CONTINUE
        if self._actions & Milter.SETSYMLIST:
            # the context's own call: Milter.Base.setsymlist joins bytes, which pymilter
            # 1.0.5 refuses; its own negotiate then falls back to "everything, replies".
            for stage, macros in _MACROS:
                self._ctx.setsymlist(stage, " ".join(macros))

    def connect(self, family: int, hostaddr: Any) -> None:
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            self.client_ip = str(hostaddr[0])
        else:  # local submission (non_smtpd_milters) and unix-socket clients
            self.client_ip = "127.0.0.1"

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

    def body(self, chunk: bytes) -> int:
        facts = self.facts
        if facts is None:
            return self.noreply
        if self.hasher is None and not self.body_cap:
            self._start_body(facts)
        if self.hasher is not None:
            self.hasher.update(chunk)
            return self.noreply
        if self.body_size + len(chunk) > self.body_cap:
            chunk = chunk[: self.body_cap - self.body_size]
        self.chunks.append(chunk)
        self.body_size += len(chunk)
        if self.body_size >= self.body_cap and self.noreply == Milter.CONTINUE:
            return Milter.SKIP
        return self.noreply

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

    def eom(self) -> int:
        facts, chunks, hasher = self.facts, self.chunks, self.hasher
        self._reset()
        if facts is None:
            return Milter.CONTINUE
        if hasher is not None:
            facts.body_hash = hasher.digest()
        else:
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

    def _reset(self) -> None:
        self.facts = None
        self.chunks: list[bytes] = []
        self.body_size, self.body_cap = 0, 0
        self.hasher = None


# -- the low-level callbacks: one Python call each -----------------------------------------


def _negotiate(ctx: Any, opts: list[int]) -> int:
    instance = Milter.factory()
    instance._setctx(ctx)
    instance.negotiate_options(opts)
    return Milter.CONTINUE


def _connect(ctx: Any, hostname: str, family: int, hostaddr: Any) -> int:
    instance = ctx.getpriv()
    if instance is None:  # an MTA without negotiation
        instance = Milter.factory()
        instance._setctx(ctx)
    instance.connect(family, hostaddr)
    return int(instance.noreply)


def _envfrom(ctx: Any, sender: bytes, *params: bytes) -> int:
    instance = ctx.getpriv()
    instance.envfrom(sender.decode("utf-8", "surrogateescape"))
    return int(instance.noreply)


def _envrcpt(ctx: Any, recipient: bytes, *params: bytes) -> int:
    instance = ctx.getpriv()
    instance.envrcpt(
        recipient.decode("utf-8", "surrogateescape"),
        tuple(p.decode("utf-8", "surrogateescape") for p in params),
    )
    return int(instance.noreply)


def _header(ctx: Any, name: str, value: bytes) -> int:
    instance = ctx.getpriv()
    facts = instance.facts
    if facts is not None:
        facts.headers.append((name, value))
    return int(instance.noreply)


def _body(ctx: Any, chunk: bytes) -> int:
    return int(ctx.getpriv().body(chunk))


def _eom(ctx: Any) -> int:
    return int(ctx.getpriv().eom())


def _abort(ctx: Any) -> int:
    ctx.getpriv()._reset()
    return Milter.CONTINUE


def _close(ctx: Any) -> int:
    instance = ctx.getpriv()
    if instance is not None:
        instance._setctx(None)  # release the context: the instance goes with it
    return Milter.CONTINUE


def _not_negotiated(ctx: Any, *args: Any) -> int:
    return Milter.CONTINUE  # HELO, DATA, end of headers, unknown: switched off at negotiation


def run(name: str, address: str, timeout: int, *, listening: Callable[[], None]) -> None:
    """Register the callbacks, open *address*, call *listening*, serve until stopped.

    What ``Milter.runmilter`` does, with the callbacks above. *listening* runs once the
    socket is bound and before any connection is served.
    """
    milter.set_flags(FLAGS)
    milter.set_connect_callback(_connect)
    milter.set_helo_callback(_not_negotiated)
    milter.set_envfrom_callback(_envfrom)
    milter.set_envrcpt_callback(_envrcpt)
    milter.set_header_callback(_header)
    milter.set_eoh_callback(_not_negotiated)
    milter.set_body_callback(_body)
    milter.set_eom_callback(_eom)
    milter.set_abort_callback(_abort)
    milter.set_close_callback(_close)
    milter.setconn(address)
    milter.settimeout(timeout)
    milter.register(name, data=_not_negotiated, unknown=_not_negotiated, negotiate=_negotiate)
    milter.opensocket(True)
    listening()
    milter.main()


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
