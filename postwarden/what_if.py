"""What-if: replay recorded policy decisions through the decision module with other settings.

Description:
    policyd records every RCPT decision (facts and outcome, no message content; see
    :mod:`postwarden.state.activity`). :func:`replay` decides each recorded request again
    with :func:`~postwarden.decision.decide_recipient` over the *proposed* settings and
    compares with what was actually answered:

    ``newly_refused``   answered accept (OK/DUNNO), the proposal would refuse
    ``newly_allowed``   refused, the proposal would accept
    ``refused_differently``  refused both times, by another rule or list entry
    ``routed_differently``   accepted both times, but the recipient's delivery (kept,
                        routes) under the proposal differs from the current settings'
                        (routing happens in the milter, so it is compared current vs
                        proposed; it is computed only when the routing settings differ)

    Each category is counted and grouped by what decides under the proposal (rule and list
    entry), with a few examples each. Decisions recorded under another settings version
    than the current file are counted (``other_versions``): a difference may then come from
    that older change, not from the proposal.

    Nothing here writes anything; the proposed file is only read and validated.

Settings read:
    The proposed file whole, and the current settings for routing and versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from postwarden.decision import Decision, Facts, Verdict, decide_recipient
from postwarden.routing import route_message
from postwarden.settings.model import Settings
from postwarden.settings.snapshot import Snapshot
from postwarden.state.activity import DecisionRecord

CATEGORIES = ("newly_refused", "newly_allowed", "refused_differently", "routed_differently")


@dataclass(frozen=True)
class Change:
    """One recorded decision the proposal would answer differently."""

    record: DecisionRecord
    before: str  # what was answered (action, rule, entry) or routed
    after: str


@dataclass
class Group:
    """Changes of one category with the same new outcome (rule and entry)."""

    key: str
    count: int = 0
    examples: list[Change] = field(default_factory=list)


@dataclass
class Outcome:
    replayed: int = 0
    other_versions: int = 0
    first: float | None = None
    last: float | None = None
    groups: dict[str, dict[str, Group]] = field(
        default_factory=lambda: {category: {} for category in CATEGORIES}
    )

    def count(self, category: str) -> int:
        return sum(g.count for g in self.groups[category].values())

    def add(self, category: str, key: str, change: Change, examples: int) -> None:
        group = self.groups[category].setdefault(key, Group(key))
        group.count += 1
        if len(group.examples) < examples:
            group.examples.append(change)


def _recorded(record: DecisionRecord) -> str:
    entry = f" {record.entry}" if record.entry else ""
    return f"{record.action} ({record.rule}{entry})"


def _decided(decision: Decision) -> str:
    entry = f" {decision.entry.text}" if decision.entry else ""
    return f"{decision.action} ({decision.rule.value}{entry})"


def _recorded_key(record: DecisionRecord) -> str:
    entry = f" {record.entry}" if record.entry else ""
    where = f" of {record.domain}" if record.domain else ""
    return f"{record.rule}{where}{entry}"


def _group_key(decision: Decision) -> str:
    entry = f" {decision.entry.text}" if decision.entry else ""
    where = f" of {decision.governing_domain}" if decision.governing_domain else ""
    return f"{decision.rule.value}{where}{entry}"


def _routing_settings(settings: Settings) -> object:
    blocks = {
        domain: (b.inbound_routing, b.outbound_routing, b.gateway.internal_via_gateway)
        for domain, b in settings.domains.items()
        if b is not None
    }
    return settings.routes, blocks, settings.trusted_networks, tuple(settings.domains)


def _delivery(snapshot: Snapshot, record: DecisionRecord) -> str:
    routes = route_message(
        snapshot,
        client_ip=record.client_ip,
        sasl_user=record.sasl_user,
        sender=record.sender,
        recipients=[(record.recipient, ())],
        known=lambda _: True,
    )
    plan = routes.recipients[0]
    parts = ["kept"] if plan.keep else []
    parts += sorted(f"route {c.route}" for c in routes.copies)
    return " + ".join(parts) or "nowhere"


def replay(
    records: Iterable[DecisionRecord],
    current: Snapshot,
    proposed: Snapshot,
    *,
    examples: int = 3,
) -> Outcome:
    """Decide each record again under *proposed* and collect the differences."""
    outcome = Outcome()
    compare_routing = _routing_settings(current.settings) != _routing_settings(proposed.settings)
    version = current.digest[:12]
    for record in records:
        outcome.replayed += 1
        outcome.first = record.time if outcome.first is None else outcome.first
        outcome.last = record.time
        if record.digest != version:
            outcome.other_versions += 1
        facts = Facts(
            record.client_ip, record.sender, record.recipient, record.tls, record.sasl_user
        )
        decision = decide_recipient(proposed, facts)
        was_refused = record.action[:1] in ("4", "5")
        now_refused = decision.verdict is not Verdict.ACCEPT
        after = _decided(decision)
        if was_refused != now_refused:
            category = "newly_refused" if now_refused else "newly_allowed"
            change = Change(record, _recorded(record), after)
            outcome.add(
                category,
                _group_key(decision) if now_refused else _recorded_key(record),
                change,
                examples,
            )
        elif was_refused and (record.rule, record.entry) != (
            decision.rule.value,
            decision.entry.text if decision.entry else "",
        ):
            outcome.add(
                "refused_differently",
                _group_key(decision),
                Change(record, _recorded(record), after),
                examples,
            )
        elif not was_refused and compare_routing:
            before_route, after_route = _delivery(current, record), _delivery(proposed, record)
            if before_route != after_route:
                outcome.add(
                    "routed_differently",
                    after_route,
                    Change(record, before_route, after_route),
                    examples,
                )
    return outcome
