"""``postwarden gateway show | set ...``: a hosted domain's inbound gateway.

The gateway's addresses (at most 50, none wider than /20 or /116), whether external mail is
received only from them, whether internal mail goes through the gateway (``--route``), and
whether mail from the gateway skips the spam filters (the regex rules still run).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.settings.model import GATEWAY_IP, Gateway, Settings
from postwarden.settings.schema import Bool, Report
from postwarden.util.iptable import BadIpEntry

SWITCHES = ("only_from_gateway", "internal_via_gateway", "skip_spam_filter")


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    show = add("show", "show the gateway settings")
    setting = add("set", "change the gateway settings")
    on_off = setting.add_mutually_exclusive_group()
    on_off.add_argument("--enable", dest="enabled", action="store_true", default=None)
    on_off.add_argument("--disable", dest="enabled", action="store_false")
    setting.add_argument(
        "--ips", metavar="E,...", help="the gateway's addresses or ranges (replaces the list)"
    )
    for name in SWITCHES:
        setting.add_argument(f"--{name.replace('_', '-')}", choices=["on", "off"])
    setting.add_argument("--route", metavar="R", help="the route to the gateway ('' for none)")
    for sub in (show, setting):
        sub.add_argument("--domain", metavar="D", help="the hosted domain (default: the primary)")


def _as_data(gateway: Gateway) -> dict[str, Any]:
    data = asdict(gateway)
    data["ips"] = [entry.text for entry in gateway.ips]
    return data


def _text(domain: str, gateway: Gateway) -> str:
    data = _as_data(gateway)
    lines = [
        f"{domain} inbound gateway: {'enabled' if gateway.enabled else 'disabled'}",
        f"  ips:                  {', '.join(data['ips']) or '-'}",
    ]
    lines += [f"  {name + ':':21} {'on' if data[name] else 'off'}" for name in SWITCHES]
    lines.append(f"  route:                {gateway.route or '-'}")
    return "\n".join(lines)


def _ips(env: Environment, text: str) -> tuple[Any, ...]:
    entries, problems = [], []
    for token in _settings.tokens([text], env) if text else []:
        report = Report()
        try:
            entry = GATEWAY_IP.make(token, "", (), report)
        except BadIpEntry as exc:
            problems.append(str(exc))
            continue
        problems.extend(p.message for p in report.errors)
        entries.append(entry)
    if problems:
        raise BadInput("; ".join(problems) + "; nothing was changed")
    return tuple(entries)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "show":
        settings = _settings.load(env).settings
        domain = _settings.selected_domain(settings, args.domain)
        gateway = _settings.own_block(settings, domain)[0].gateway
        env.emit({"domain": domain, **_as_data(gateway)}, lambda: _text(domain, gateway))
        return ExitStatus.OK
    changes: dict[str, Any] = {}
    if args.enabled is not None:
        changes["enabled"] = args.enabled
    if args.ips is not None:
        changes["ips"] = _ips(env, args.ips)
    for name in SWITCHES:
        value = getattr(args, name)
        if value is not None:
            changes[name] = Bool().from_text(value)
    if args.route is not None:
        changes["route"] = args.route
    if not changes:
        raise BadInput("nothing to change (see postwarden gateway set --help)")
    result: list[Gateway] = []

    def change(settings: Settings) -> Settings:
        domain = _settings.selected_domain(settings, args.domain)
        block, _ = _settings.own_block(settings, domain)
        gateway = replace(block.gateway, **changes)
        result.append(gateway)
        return _settings.with_block(settings, domain, replace(block, gateway=gateway))

    edited = _settings.edit(env, change)
    domain = _settings.selected_domain(edited.after.settings, args.domain)
    env.emit(
        {"domain": domain, **_as_data(result[-1]), "changed": edited.changed},
        lambda: _text(domain, result[-1]),
    )
    return ExitStatus.OK


COMMAND = Command("gateway", "show or change a domain's inbound gateway", configure, run)
