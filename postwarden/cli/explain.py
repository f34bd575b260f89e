"""``postwarden explain``: what postwarden answers for one recipient, and which setting decided.

It runs the same decision functions the daemons run (:mod:`postwarden.decision`) on the
same compiled settings, so its answer is the daemons' answer by construction: the policy
daemon's at RCPT time, the milter's at end of message for mail through a gateway
(``--via-gateway``, with the original IP its Received walk would find, or unknown), and
the routing the milter applies.
"""

from __future__ import annotations

import argparse
import ipaddress

from postwarden.address import domain_of
from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.decision import (
    Decision,
    Facts,
    MessageJudgement,
    Verdict,
    decide_recipient,
    is_gateway_client,
    judge_message,
)
from postwarden.routing import route_message
from postwarden.settings.snapshot import Snapshot, compile_settings
from postwarden.util.iptable import parse_client_address


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client-ip", metavar="IP", help="the SMTP client (required unless --via-gateway)"
    )
    parser.add_argument("--sender", required=True, metavar="A", help="envelope sender ('' = <>)")
    parser.add_argument("--recipient", required=True, metavar="A", help="envelope recipient")
    parser.add_argument("--tls", action="store_true", help="the session uses TLS")
    parser.add_argument("--sasl-user", default="", metavar="U", help="SASL login name")
    parser.add_argument(
        "--unknown-recipient",
        action="store_true",
        help="the recipient is not in Postfix's recipient tables",
    )
    parser.add_argument(
        "--via-gateway",
        action="store_true",
        help="the mail comes through the recipient domain's inbound gateway (--client-ip"
        " is the gateway; default: its first address): also show the milter's verdict",
    )
    parser.add_argument(
        "--original-ip",
        metavar="IP",
        help="with --via-gateway: the original client the Received headers name"
        " (omitted: unknown, as when a header cannot be read)",
    )
    parser.add_argument(
        "--handed-back",
        action="store_true",
        help="the mail arrives on the hand-back listener (a route returning it)",
    )


def as_data(decision: Decision) -> dict[str, object]:
    def entry(e: object) -> str | None:
        return getattr(e, "text", None)

    return {
        "decision": decision.verdict.value,
        "action": decision.action,
        "rule": decision.rule.value,
        "reason": decision.reason,
        "direction": decision.direction.value,
        "recipient_domain": decision.recipient_domain,
        "settings_from": decision.governing_domain,
        "matched_entry": entry(decision.entry),
        "allowed_entry": entry(decision.allowed_entry),
        "blocked_entry": entry(decision.blocked_entry),
    }


def _text(data: dict[str, object]) -> str:
    lines = [
        f"decision:  {data['decision']} ({data['action']})",
        f"rule:      {data['rule']}",
        f"reason:    {data['reason']}",
        f"direction: {data['direction']}",
    ]
    source, domain = data["settings_from"], data["recipient_domain"]
    if source == domain:
        lines.append(f"settings:  {domain}'s own block")
    elif source:
        lines.append(f"settings:  {domain} uses the block of {source}")
    message = data.get("message")
    if isinstance(message, dict):
        lines.append(f"message:   {message['outcome']}: {message['reason']}")
    if data["decision"] == "accept":
        lines.append(f"delivery:  {_delivery_text(data['routing'])}")  # type: ignore[arg-type]
    return "\n".join(lines)


def message_data(judgement: MessageJudgement) -> dict[str, object]:
    """The milter's end-of-message verdict for the recipient's domain."""
    if judgement.blocked_entry is not None:
        outcome = "recipient removed"
    elif judgement.spam_rules:
        outcome = "spam rules run"
    else:
        outcome = "not filtered"
    return {
        "outcome": outcome,
        "original_ip": judgement.subject_ip,
        "original_unknown": judgement.original_unknown,
        "trusted": judgement.trust.value,
        "spam_rules": judgement.spam_rules,
        "blocked_entry": judgement.blocked_entry.text if judgement.blocked_entry else None,
        "reason": judgement.reason,
    }


def _gateway_client(snapshot: Snapshot, args: argparse.Namespace) -> str:
    """--client-ip when it is a gateway of the recipient's domain, else its first gateway."""
    domain = domain_of(args.recipient)
    policy = snapshot.policy_for(domain)
    gateway = policy.block.gateway if policy else None
    if policy is None or gateway is None or not gateway.enabled or not gateway.ips:
        raise BadInput(f"--via-gateway: {domain} has no inbound gateway")
    if args.client_ip:
        if not is_gateway_client(policy, args.client_ip):
            raise BadInput(f"--via-gateway: {args.client_ip} is not a gateway of {domain}")
        return str(args.client_ip)
    first = gateway.ips[0].range
    address = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
    return str(address(first.first))


def _routing(snapshot: Snapshot, args: argparse.Namespace) -> dict[str, object]:
    """Where the recipient's mail goes, by the same function the milter runs."""
    if args.handed_back:
        return {
            "kept": True,
            "rule": "",
            "reason": "handed back by a route: delivered as addressed, never routed again",
            "copies": [],
        }
    routes = route_message(
        snapshot,
        client_ip=args.client_ip,
        sasl_user=args.sasl_user,
        sender=args.sender,
        recipients=[(args.recipient, ())],
        known=lambda _: not args.unknown_recipient,
    )
    plan = routes.recipients[0]
    return {
        "kept": plan.keep,
        "rule": plan.rule,
        "reason": plan.reason,
        "copies": [{"route": c.route, "to": c.original, "rule": c.rule} for c in routes.copies],
    }


def _delivery_text(routing: dict[str, object]) -> str:
    copies = routing["copies"]
    assert isinstance(copies, list)
    parts = ["the usual delivery"] if routing["kept"] else []
    parts += [f"route {c['route']} for <{c['to']}> (rule {c['rule']})" for c in copies]
    text = " and ".join(parts) or "nowhere"
    return f"{text} ({routing['reason']})" if routing.get("reason") and not copies else text


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    for option, value in (("--client-ip", args.client_ip), ("--original-ip", args.original_ip)):
        if value is not None and parse_client_address(value) is None:
            raise BadInput(f"{option} {value!r} is not an IP address")
    if args.client_ip is None and not args.via_gateway:
        raise BadInput("--client-ip is required (or --via-gateway)")
    if args.original_ip is not None and not args.via_gateway:
        raise BadInput("--original-ip needs --via-gateway")
    if "@" not in args.recipient:
        raise BadInput(f"{args.recipient!r} is not a mail address")
    loaded = _settings.load(env)
    snapshot = compile_settings(loaded.settings, digest=loaded.digest)
    if args.via_gateway:
        args.client_ip = _gateway_client(snapshot, args)
    facts = Facts(args.client_ip, args.sender, args.recipient, args.tls, args.sasl_user)
    decision = decide_recipient(snapshot, facts)
    data = as_data(decision)
    policy = snapshot.policy_for(domain_of(args.recipient))
    if args.via_gateway and policy is not None and decision.verdict is Verdict.ACCEPT:
        judgement = judge_message(policy, args.client_ip, original_ip=args.original_ip)
        data["message"] = message_data(judgement)
        if judgement.blocked_entry is not None:
            data["decision"] = "reject"  # the milter removes this recipient
    data["routing"] = _routing(snapshot, args)
    env.emit(data, lambda: _text(data))
    return ExitStatus.OK


COMMAND = Command(
    "explain",
    "show what postwarden answers for a client, sender and recipient, and why",
    configure,
    run,
)
