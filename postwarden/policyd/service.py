"""What postwarden-policyd answers: policy requests and socketmap lookups.

Description:
    :class:`PolicyService` takes the published view (a settings snapshot plus the tables
    compiled from it) and one parsed request, calls the shared decision module, and returns
    the reply; it logs one mail-log-style line per policy decision and hands what it learns
    (blocks, unknown recipients) to the state writer. It never touches sockets
    (:mod:`postwarden.policyd.server` does) and never waits on disk or DNS.

    socketmap tables (socketmap_table(5): ``name key`` → ``OK data`` / ``NOTFOUND``):

    ``tlspolicy``  next hop → ``smtp_tls_policy_maps`` result (outgoing TLS policies)
    ``transport``  tagged recipient → ``postwarden-route:NEXTHOP`` (``transport_maps``)
    ``untag``      tagged address → the original (the route transport's generic map)
    ``rcptok``     a recipient Postfix's own tables do not know → ``OK`` when an inbound
                   rule routes unknown recipients for this very transaction

    Postfix asks ``rcptok`` only after its own recipient tables said no, and after the
    policy check of the same RCPT: the policy answer notes the recipients a rule with
    "route unknown recipients" applies to (the condition internal/external needs the
    client and sender, which a table lookup does not see), and ``rcptok`` admits exactly
    those, for a minute. Admitted recipients are noted in the state database, where the
    milter tells known from unknown recipients for "keep a local copy".

Settings read:
    ``domains.*`` (IP lists, gateway, TLS policies, inbound routing), ``trusted_networks``,
    ``routes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postwarden import metrics
from postwarden.decision import Decision, Facts, Rule, Verdict, decide_recipient
from postwarden.policyd.protocol import PolicyRequest
from postwarden.policyd.tlspolicy import TlsTable, compile_tls_table
from postwarden.routing import ROUTE_TRANSPORT, routes_by_label, unknown_recipient_rule, untag
from postwarden.settings.model import Route
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.state import BlockEvent
from postwarden.settings.state_writer import Event, UnknownRecipient

log = logging.getLogger("postwarden.policyd")

DUNNO = "DUNNO"
TEMPFAIL = "451 4.3.5 Temporary policy service failure, try again later"
ADMIT_UNKNOWN_FOR = 60.0  # seconds between the policy answer and Postfix's rcptok lookup


@dataclass(frozen=True)
class PolicydView:
    """Everything the daemon answers from, compiled once per settings version."""

    snapshot: Snapshot
    tls: TlsTable
    routes: Mapping[str, tuple[str, Route]]  # tag label -> (name, route)


def compile_view(snapshot: Snapshot, *, global_tls_level: str = "may") -> PolicydView:
    return PolicydView(
        snapshot,
        compile_tls_table(snapshot, global_tls_level),
        routes_by_label(snapshot.settings.routes),
    )


class PolicyService:
    """Answers over the current view; *record* takes what the state database should keep."""

    def __init__(self, view: Callable[[], PolicydView], record: Callable[[Event], None]) -> None:
        self.view = view
        self.record = record
        self._admitted: dict[str, float] = {}  # recipient -> until (monotonic)
        self.tables: dict[str, Callable[[PolicydView, str], str | None]] = {
            "tlspolicy": lambda view, key: view.tls.lookup(key),
            "transport": self._transport,
            "untag": self._untag,
            "rcptok": self._rcptok,
        }

    def answer_policy(self, request: PolicyRequest) -> str:
        """The access(5) action for one request; only RCPT requests are judged."""
        if request.protocol_state != "RCPT" or not request.recipient:
            return DUNNO
        view = self.view()
        facts = Facts(
            client_ip=request.client_address,
            sender=request.sender,
            recipient=request.recipient,
            tls=request.tls,
            sasl_user=request.sasl_username,
        )
        start = time.perf_counter()
        decision = decide_recipient(view.snapshot, facts)
        if decision.rule is Rule.BLOCKED_IP and decision.entry is not None:
            self.record(
                BlockEvent(
                    decision.governing_domain,
                    decision.entry.text,
                    request.client_address,
                    time.time(),
                )
            )
        elif decision.verdict is Verdict.ACCEPT and unknown_recipient_rule(
            view.snapshot, facts, decision.direction
        ):
            self._admit(request.recipient)
        _log_decision(request, decision)
        metrics.POLICY_DECISIONS.labels(decision.rule.value, decision.governing_domain or "-").inc()
        metrics.POLICY_SECONDS.observe(time.perf_counter() - start)
        return decision.action

    def answer_socketmap(self, request: bytes) -> bytes:
        """``name key`` → ``OK data`` / ``NOTFOUND `` / ``PERM reason``."""
        name, sep, key = request.decode("utf-8", "replace").partition(" ")
        lookup = self.tables.get(name)
        if lookup is None or not sep:
            return b"PERM unknown map name or no key"
        found = lookup(self.view(), key)
        metrics.SOCKETMAP_LOOKUPS.labels(name, "notfound" if found is None else "ok").inc()
        return b"NOTFOUND " if found is None else b"OK " + found.encode()

    def _transport(self, view: PolicydView, key: str) -> str | None:
        tagged = untag(key)
        route = view.routes.get(tagged[1]) if tagged else None
        return f"{ROUTE_TRANSPORT}:{route[1].nexthop}" if route else None

    def _untag(self, view: PolicydView, key: str) -> str | None:
        tagged = untag(key)
        return tagged[0] if tagged and tagged[1] in view.routes else None

    def _admit(self, recipient: str) -> None:
        now = time.monotonic()
        if len(self._admitted) > 10_000:  # keep the table small under any load
            self._admitted = {r: t for r, t in self._admitted.items() if t > now}
        self._admitted[recipient.lower()] = now + ADMIT_UNKNOWN_FOR

    def _rcptok(self, view: PolicydView, key: str) -> str | None:
        address = key.strip("<>").lower()
        if self._admitted.get(address, 0.0) < time.monotonic():
            return None
        self.record(UnknownRecipient(address, time.time()))
        log.info("unknown recipient <%s> accepted for routing", address)
        return "OK"


_WORD = {Verdict.REJECT: "reject", Verdict.DEFER: "defer"}


def _log_decision(request: PolicyRequest, decision: Decision) -> None:
    word = _WORD.get(decision.verdict) or ("permit" if decision.action == "OK" else "dunno")
    entry = f" entry={decision.entry.text}" if decision.entry else ""
    reply = f" {decision.action};" if decision.verdict is not Verdict.ACCEPT else ""
    log.info(
        "%s: %s: RCPT from %s[%s]:%s from=<%s> to=<%s> rule=%s domain=%s%s",
        request.queue_id or "NOQUEUE",
        word,
        request.client_name or "unknown",
        request.client_address,
        reply,
        request.sender,
        request.recipient,
        decision.rule.value,
        decision.governing_domain or "-",
        entry,
    )
