"""What postwarden-policyd answers: policy requests and socketmap lookups.

Description:
    :class:`PolicyService` takes the published view (a settings snapshot plus the tables
    compiled from it) and one parsed request, calls the shared decision module, and returns
    the reply; it logs one mail-log-style line per policy decision and hands what it learns
    (blocks, unknown recipients, and — with ``decision_log.enabled`` — every RCPT decision's
    facts and outcome, for ``postwarden what-if``) to the state writer. It never touches sockets
    (:mod:`postwarden.policyd.server` does) and never waits on disk or DNS.

    socketmap tables (socketmap_table(5): ``name key`` → ``OK data`` / ``NOTFOUND``):

    ``tlspolicy``  next hop → ``smtp_tls_policy_maps`` result (outgoing TLS policies)
    ``transport``  tagged recipient → ``postwarden-route:NEXTHOP`` (``transport_maps``)
    ``untag``      tagged address → the original (the route transport's generic map)
    ``rcptok``     a recipient Postfix's own tables do not know → ``OK`` when an inbound
                   rule routes unknown recipients for this very transaction
    ``unknown``    an address → ``OK`` when ``rcptok`` accepted it within the last hour
                   (the milter asks, for "keep a local copy": known recipients only)

    Postfix asks ``rcptok`` only after its own recipient tables said no, and after the
    policy check of the same RCPT: the policy answer notes the recipients a rule with
    "route unknown recipients" applies to (the condition internal/external needs the
    client and sender, which a table lookup does not see), and ``rcptok`` admits exactly
    those: each policy answer admits one lookup, within a minute (:class:`Admissions`), so
    another transaction to the same address cannot ride on it. Admitted recipients are
    noted in the state database, where the milter tells known from unknown recipients for
    "keep a local copy".

Settings read:
    ``domains.*`` (IP lists, gateway, TLS policies, inbound routing), ``trusted_networks``,
    ``routes``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postwarden import metrics
from postwarden.address import canonical_address, envelope_address
from postwarden.decision import Decision, Facts, Rule, Verdict, decide_recipient
from postwarden.policyd.protocol import PolicyRequest
from postwarden.policyd.tlspolicy import TlsTable, compile_tls_table
from postwarden.routing import ROUTE_TRANSPORT, routes_by_label, unknown_recipient_rule, untag
from postwarden.settings.model import Route
from postwarden.settings.snapshot import Snapshot
from postwarden.state.activity import DecisionRecord
from postwarden.state.db import BlockEvent
from postwarden.state.writer import Event, UnknownRecipient

log = logging.getLogger("postwarden.policyd")

DUNNO = "DUNNO"
TEMPFAIL = "451 4.3.5 Temporary policy service failure, try again later"
ADMIT_UNKNOWN_FOR = 60.0  # seconds between the policy answer and Postfix's rcptok lookup
ADMISSIONS_LIMIT = 100_000  # pending admissions at most (about 200 bytes each)
ADMISSIONS_PER_ADDRESS = 8  # concurrent transactions to one unknown address
UNKNOWN_NOTE_LIFETIME = 3600.0  # how long the milter may ask whether rcptok accepted one


class Admissions:
    """Single-use admissions of unknown recipients that expire: O(1) per call, bounded.

    A socketmap lookup carries only the address, not the transaction, so each policy
    answer admits exactly one lookup of that address; expired admissions are dropped in
    admission order. When *limit* admissions are pending, new ones are refused (the
    recipient is then rejected as unknown, as Postfix would without postwarden); one
    address holds at most :data:`ADMISSIONS_PER_ADDRESS` of them.
    """

    def __init__(self, lifetime: float = ADMIT_UNKNOWN_FOR, limit: int = ADMISSIONS_LIMIT):
        self.lifetime = lifetime
        self.limit = limit
        self._by_address: dict[str, deque[float]] = {}  # address -> expiry times, oldest first
        self._order: deque[tuple[float, str]] = deque()  # every admission, oldest first

    def __len__(self) -> int:
        return len(self._order)

    def admit(self, address: str, now: float) -> bool:
        self._expire(now)
        if len(self._order) >= self.limit:
            return False
        pending = self._by_address.setdefault(address, deque())
        if len(pending) >= ADMISSIONS_PER_ADDRESS:
            return True  # as many transactions as can be under way are admitted already
        until = now + self.lifetime
        self._order.append((until, address))
        pending.append(until)
        return True

    def take(self, address: str, now: float) -> bool:
        """Use up one admission of *address*; False when there is none."""
        self._expire(now)
        pending = self._by_address.get(address)
        if not pending:
            return False
        pending.popleft()
        if not pending:
            del self._by_address[address]
        return True

    def _expire(self, now: float) -> None:
        order, by_address = self._order, self._by_address
        while order and order[0][0] <= now:
            _, address = order.popleft()
            pending = by_address.get(address)
            while pending and pending[0] <= now:
                pending.popleft()
            if pending is not None and not pending:
                del by_address[address]


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


class RecentAddresses:
    """Addresses noted within *lifetime* seconds: O(1) per call, at most *limit* of them."""

    def __init__(self, lifetime: float = UNKNOWN_NOTE_LIFETIME, limit: int = 100_000) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._until: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def add(self, address: str, now: float) -> None:
        self._expire(now)
        if len(self._order) >= self.limit:  # the oldest notes go first
            _, oldest = self._order.popleft()
            self._until.pop(oldest, None)
        until = now + self.lifetime
        self._until[address] = until
        self._order.append((until, address))

    def __contains__(self, item: tuple[str, float]) -> bool:
        address, now = item
        return self._until.get(address, 0.0) > now

    def _expire(self, now: float) -> None:
        while self._order and self._order[0][0] <= now:
            until, address = self._order.popleft()
            if self._until.get(address) == until:
                del self._until[address]


class PolicyService:
    """Answers over the current view; *record* takes what the state database should keep."""

    def __init__(self, view: Callable[[], PolicydView], record: Callable[[Event], None]) -> None:
        self.view = view
        self.record = record
        self.admissions = Admissions()
        self.accepted_unknown = RecentAddresses()
        self.tables: dict[str, Callable[[PolicydView, str], str | None]] = {
            "tlspolicy": lambda view, key: view.tls.lookup(key),
            "transport": self._transport,
            "untag": self._untag,
            "rcptok": self._rcptok,
            "unknown": self._unknown,
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
        now = time.time()
        if decision.rule is Rule.BLOCKED_IP and decision.entry is not None:
            self.record(
                BlockEvent(
                    decision.governing_domain,
                    decision.entry.text,
                    request.client_address,
                    now,
                    request.sender,
                    request.recipient,
                )
            )
        elif decision.verdict is Verdict.ACCEPT and unknown_recipient_rule(
            view.snapshot, facts, decision.direction
        ):
            self._admit(canonical_address(envelope_address(request.recipient)))
        if view.snapshot.settings.decision_log.enabled:
            self.record(decision_record(view.snapshot, facts, decision, now))
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
        if not self.admissions.admit(recipient, time.monotonic()):
            metrics.ADMISSIONS_REFUSED.inc()
            log.warning(
                "unknown recipient <%s> not admitted: %d admissions pending (the limit)",
                recipient,
                len(self.admissions),
            )

    def _unknown(self, view: PolicydView, key: str) -> str | None:
        address = canonical_address(envelope_address(key))
        return "unknown" if (address, time.monotonic()) in self.accepted_unknown else None

    def _rcptok(self, view: PolicydView, key: str) -> str | None:
        address = canonical_address(envelope_address(key))
        now = time.monotonic()
        if not self.admissions.take(address, now):
            return None
        self.accepted_unknown.add(address, now)
        self.record(UnknownRecipient(address, time.time()))
        log.info("unknown recipient <%s> accepted for routing", address)
        return "OK"


def decision_record(
    snapshot: Snapshot, facts: Facts, decision: Decision, now: float
) -> DecisionRecord:
    """What ``what-if`` replays: the facts and the outcome, no message content."""
    return DecisionRecord(
        now,
        facts.client_ip,
        facts.sender,
        facts.recipient,
        facts.tls,
        facts.sasl_user,
        decision.action,
        decision.rule.value,
        decision.governing_domain,
        decision.entry.text if decision.entry else "",
        snapshot.digest[:12],
    )


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
