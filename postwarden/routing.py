"""Routing: which recipients of a message go to which named route, and how Postfix gets them there.

Description:
    Everything is delivered by Postfix's own queue; postwarden never sends mail itself. A
    recipient that must reach a route is *tagged*: the milter replaces (or accompanies) it
    with ``user@domain.LABEL.pwroute.invalid``; the policy daemon's ``transport`` socketmap
    sends tagged addresses to the ``postwarden-route`` transport with the route's next hop,
    and that transport's ``smtp_generic_maps`` (the ``untag`` socketmap) turns them back
    into the original address on the wire. ORCPT carries the original recipient too, so no
    tag ever reaches the route. A route that is down means deferred and retried mail.

    :func:`route_message` is pure: the snapshot and the facts of one message in, for each
    recipient whether it stays and which tagged copies are added. Direction (internal /
    external) comes from the shared decision module.

    Inbound (the recipient's domain block; condition internal, external or all):

    ======================= ========================= ======================
    options                 known recipients          unknown recipients
    ======================= ========================= ======================
    change route            to the route (not local)  rejected as usual
    + unknown recipients    to the route              to the route
    + keep a local copy     to the route and local    to the route only
    ======================= ========================= ======================

    Internal mail of a domain whose gateway has ``internal_via_gateway`` goes to the gateway
    route first. The gateway delivers it back like all the mail it delivers, on the port-25
    listener; its client is then a gateway, not trusted, so the mail is external inbound
    mail of the domain: inbound routing (archive, keep a local copy) applies to it once,
    and it is not sent round again.

    Outbound (the sender's domain block, for trusted senders; condition internal or external
    per recipient): ``change-route`` relays that recipient's copy through the route;
    ``send-additionally`` adds one copy per message, addressed to the sender, to the route.

    Loops: a route that hands mail back (a DLP gateway relaying outbound mail) delivers it
    to the ``postwarden-handback`` listener that ``postwarden postfix-config`` writes; the
    milter recognises it by the listener's ``{daemon_name}`` (which Postfix sets, not the
    client) and delivers such mail as addressed. Nothing is decided by client IP: the same
    address may also submit ordinary mail (webmail on 127.0.0.1), which is routed.

    Copies that are extra (a kept local copy's route copy, send-additionally) carry
    ``NOTIFY=NEVER``: a failed copy is logged by Postfix, never bounced to the sender. A
    recipient moved to a route keeps its own DSN parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from postwarden.address import canonical_address, domain_of
from postwarden.decision import Direction, Facts, classify, is_trusted
from postwarden.settings.model import Route
from postwarden.settings.snapshot import Snapshot
from postwarden.util.labels import route_label

TAG_SUFFIX = ".pwroute.invalid"
ROUTE_TRANSPORT = "postwarden-route"  # the master.cf service that delivers to routes
HANDBACK_DAEMON_NAME = "postwarden-handback"  # milter_macro_daemon_name of that listener


def tag(address: str, route_name: str) -> str:
    """``user@domain`` → ``user@domain.LABEL.pwroute.invalid``, from the canonical form."""
    return f"{canonical_address(address.strip('<>'))}.{route_label(route_name)}{TAG_SUFFIX}"


def untag(address: str) -> tuple[str, str] | None:
    """``(original address, route label)`` of a tagged address, or ``None``."""
    address = address.strip("<>")
    if not address.lower().endswith(TAG_SUFFIX) or "@" not in address:
        return None
    inner = address[: -len(TAG_SUFFIX)]
    original, _, label = inner.rpartition(".")
    if "@" not in original or not label:
        return None
    return original, label.lower()


@dataclass(frozen=True)
class Copy:
    """A tagged recipient to add: where it goes and with which ESMTP parameters."""

    route: str
    address: str  # the tagged address
    original: str
    params: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class RecipientPlan:
    """What happens to one recipient: kept or not, by which rule, and why."""

    recipient: str
    keep: bool = True
    rule: str = ""
    reason: str = ""


@dataclass
class MessageRoutes:
    recipients: list[RecipientPlan] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.copies) or any(not r.keep for r in self.recipients)


NEVER = ("NOTIFY=NEVER",)


def _moved_params(original: str, params: Sequence[str]) -> tuple[str, ...]:
    """The recipient's own DSN parameters; ORCPT names the original address.

    A sender's own ORCPT is kept: it is what the sender's DSNs must show.
    """
    if any(p.upper().startswith("ORCPT=") for p in params):
        return tuple(params)
    return (*params, f"ORCPT=rfc822;{original}")


def _copy_params(original: str) -> tuple[str, ...]:
    return (*NEVER, f"ORCPT=rfc822;{original}")


def route_message(
    snapshot: Snapshot,
    *,
    client_ip: str,
    sasl_user: str,
    sender: str,
    recipients: Sequence[tuple[str, Sequence[str]]],
    known: Callable[[str], bool],
) -> MessageRoutes:
    """The routing of one message; *known* tells whether a hosted recipient exists."""
    result = MessageRoutes()
    trusted = is_trusted(snapshot, Facts(client_ip, sender, "", sasl_user=sasl_user))
    send_additionally: set[str] = set()
    for recipient, params in recipients:
        address = recipient.strip("<>")
        direction = classify(
            snapshot, Facts(client_ip, sender, address, sasl_user=sasl_user), trusted=trusted
        )
        plan, copies = _route_recipient(snapshot, address, params, sender, direction, known)
        result.recipients.append(replace(plan, recipient=recipient))
        result.copies.extend(copies)
        if direction in (Direction.INTERNAL, Direction.OUTBOUND):
            send_additionally.update(_send_additionally(snapshot, sender, direction))
    for route_name in sorted(send_additionally):
        result.copies.append(
            Copy(
                route_name,
                tag(sender, route_name),
                sender,
                _copy_params(sender),
                "send-additionally",
            )
        )
    return result


def _route_recipient(
    snapshot: Snapshot,
    address: str,
    params: Sequence[str],
    sender: str,
    direction: Direction,
    known: Callable[[str], bool],
) -> tuple[RecipientPlan, list[Copy]]:
    wanted = "internal" if direction is Direction.INTERNAL else "external"
    why_not: list[str] = []
    if direction in (Direction.INBOUND, Direction.INTERNAL):
        policy = snapshot.policy_for(domain_of(address))
        assert policy is not None  # inbound and internal recipients are hosted
        whose = policy.owner or "the default settings"
        gateway = policy.block.gateway
        if direction is Direction.INTERNAL and gateway.enabled and gateway.internal_via_gateway:
            return _moved(address, params, gateway.route, "internal-via-gateway")
        for rule in policy.block.inbound_routing:
            if rule.condition in (wanted, "all"):
                if rule.keep_local_copy and known(address):
                    copy = Copy(
                        rule.route,
                        tag(address, rule.route),
                        address,
                        _copy_params(address),
                        rule.name,
                    )
                    return RecipientPlan(address, True, rule.name, "kept locally too"), [copy]
                return _moved(address, params, rule.route, rule.name)
        why_not.append(f"no inbound rule of {whose} takes {wanted} mail")
    if direction in (Direction.OUTBOUND, Direction.INTERNAL):
        sender_policy = snapshot.policy_for(domain_of(sender))
        for out_rule in sender_policy.block.outbound_routing if sender_policy else ():
            if out_rule.condition == wanted and out_rule.action == "change-route":
                return _moved(address, params, out_rule.route, out_rule.name)
        whose = sender_policy.owner if sender_policy and sender_policy.owner else "the sender"
        why_not.append(f"no outbound change-route rule of {whose} takes {wanted} mail")
    if direction is Direction.RELAY:
        why_not.append("neither a hosted recipient nor a trusted hosted sender: not routed")
    return RecipientPlan(address, reason="; ".join(why_not)), []


def _moved(
    address: str, params: Sequence[str], route: str, rule: str
) -> tuple[RecipientPlan, list[Copy]]:
    copy = Copy(route, tag(address, route), address, _moved_params(address, params), rule)
    return RecipientPlan(address, False, rule, f"moved to route {route}"), [copy]


def _send_additionally(snapshot: Snapshot, sender: str, direction: Direction) -> set[str]:
    policy = snapshot.policy_for(domain_of(sender))
    wanted = "internal" if direction is Direction.INTERNAL else "external"
    return {
        rule.route
        for rule in (policy.block.outbound_routing if policy else ())
        if rule.condition == wanted and rule.action == "send-additionally"
    }


def unknown_recipient_rule(snapshot: Snapshot, facts: Facts, direction: Direction) -> str | None:
    """The inbound rule that takes this recipient even if Postfix does not know it."""
    if direction not in (Direction.INBOUND, Direction.INTERNAL):
        return None
    policy = snapshot.policy_for(domain_of(facts.recipient))
    wanted = "internal" if direction is Direction.INTERNAL else "external"
    for rule in policy.block.inbound_routing if policy else ():
        if rule.condition in (wanted, "all"):
            return rule.name if rule.unknown_recipients else None
    return None


def routes_by_label(routes: dict[str, Route]) -> dict[str, tuple[str, Route]]:
    """Tag label → (route name, route), for the transport and untag lookups."""
    return {route_label(name): (name, route) for name, route in routes.items()}
