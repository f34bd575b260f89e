"""``postwarden explain``: what postwarden answers for one recipient, and which setting decided.

It runs the same decision function the policy daemon runs (:mod:`postwarden.decision`) on
the same compiled settings, so its answer is the daemon's answer by construction.
"""

from __future__ import annotations

import argparse

from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.decision import Decision, Facts, decide_recipient
from postwarden.routing import route_message
from postwarden.settings.snapshot import Snapshot, compile_settings
from postwarden.util.iptable import parse_client_address


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-ip", required=True, metavar="IP", help="the SMTP client")
    parser.add_argument("--sender", required=True, metavar="A", help="envelope sender ('' = <>)")
    parser.add_argument("--recipient", required=True, metavar="A", help="envelope recipient")
    parser.add_argument("--tls", action="store_true", help="the session uses TLS")
    parser.add_argument("--sasl-user", default="", metavar="U", help="SASL login name")
    parser.add_argument(
        "--unknown-recipient",
        action="store_true",
        help="the recipient is not in Postfix's recipient tables",
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
    if data["decision"] == "accept":
        lines.append(f"delivery:  {_delivery_text(data['routing'])}")  # type: ignore[arg-type]
    return "\n".join(lines)


def _routing(snapshot: Snapshot, args: argparse.Namespace) -> dict[str, object]:
    """Where the recipient's mail goes, by the same function the milter runs."""
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
        "copies": [{"route": c.route, "to": c.original, "rule": c.rule} for c in routes.copies],
    }


def _delivery_text(routing: dict[str, object]) -> str:
    copies = routing["copies"]
    assert isinstance(copies, list)
    parts = ["the usual delivery"] if routing["kept"] else []
    parts += [f"route {c['route']} for <{c['to']}> (rule {c['rule']})" for c in copies]
    return " and ".join(parts) or "nowhere"


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if parse_client_address(args.client_ip) is None:
        raise BadInput(f"{args.client_ip!r} is not an IP address")
    if "@" not in args.recipient:
        raise BadInput(f"{args.recipient!r} is not a mail address")
    loaded = _settings.load(env)
    snapshot = compile_settings(loaded.settings, digest=loaded.digest)
    facts = Facts(args.client_ip, args.sender, args.recipient, args.tls, args.sasl_user)
    data = as_data(decide_recipient(snapshot, facts))
    data["routing"] = _routing(snapshot, args)
    env.emit(data, lambda: _text(data))
    return ExitStatus.OK


COMMAND = Command(
    "explain",
    "show what postwarden answers for a client, sender and recipient, and why",
    configure,
    run,
)
