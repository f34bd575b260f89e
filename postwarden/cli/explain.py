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
from postwarden.settings.snapshot import compile_settings
from postwarden.util.iptable import parse_client_address


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-ip", required=True, metavar="IP", help="the SMTP client")
    parser.add_argument("--sender", required=True, metavar="A", help="envelope sender ('' = <>)")
    parser.add_argument("--recipient", required=True, metavar="A", help="envelope recipient")
    parser.add_argument("--tls", action="store_true", help="the session uses TLS")
    parser.add_argument("--sasl-user", default="", metavar="U", help="SASL login name")


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
    return "\n".join(lines)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if parse_client_address(args.client_ip) is None:
        raise BadInput(f"{args.client_ip!r} is not an IP address")
    if "@" not in args.recipient:
        raise BadInput(f"{args.recipient!r} is not a mail address")
    loaded = _settings.load(env)
    snapshot = compile_settings(loaded.settings, digest=loaded.digest)
    facts = Facts(args.client_ip, args.sender, args.recipient, args.tls, args.sasl_user)
    data = as_data(decide_recipient(snapshot, facts))
    env.emit(data, lambda: _text(data))
    return ExitStatus.OK


COMMAND = Command(
    "explain",
    "show what postwarden answers for a client, sender and recipient, and why",
    configure,
    run,
)
