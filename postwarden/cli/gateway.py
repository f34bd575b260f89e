"""``postwarden gateway show | set ...``: a hosted domain's inbound gateway.

The gateway's addresses (at most 50, none wider than /20 or /116), whether external mail is
received only from them, whether internal mail goes through the gateway (``--route``), and
whether mail from the gateway skips the spam filters (the regex rules still run). The work
is :mod:`postwarden.admin.gateway`'s, shared with the web console.
"""

from __future__ import annotations

import argparse

from postwarden.admin import gateway
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus
from postwarden.settings.model import Gateway
from postwarden.settings.schema import Bool

SWITCHES = gateway.SWITCHES


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
    _settings.add_dry_run(setting)
    for sub in (show, setting):
        _settings.add_domain_option(sub)


def _text(domain: str, gw: Gateway) -> str:
    data = gateway.as_data(gw)
    lines = [
        f"{domain} inbound gateway: {'enabled' if gw.enabled else 'disabled'}",
        f"  ips:                  {', '.join(data['ips']) or '-'}",
    ]
    lines += [f"  {name + ':':21} {'on' if data[name] else 'off'}" for name in SWITCHES]
    lines.append(f"  route:                {gw.route or '-'}")
    return "\n".join(lines)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "show":
        view, gw = gateway.show(_settings.admin(env), args.domain)
        env.emit({"domain": view.domain, **gateway.as_data(gw)}, lambda: _text(view.domain, gw))
        return ExitStatus.OK
    switches = {
        name: Bool().from_text(getattr(args, name))
        for name in SWITCHES
        if getattr(args, name) is not None
    }
    ips = env.stdin.read() if args.ips == "-" else args.ips
    done = gateway.change(
        _settings.admin(env, args),
        args.domain,
        enabled=args.enabled,
        ips=ips,
        route=args.route,
        **switches,
    )
    domain = str(done.change.domain)
    _settings.report(
        env,
        done.change,
        {"domain": domain, **gateway.as_data(done.gateway), "changed": done.change.changed},
        lambda: _text(domain, done.gateway),
    )
    return ExitStatus.OK


COMMAND = Command("gateway", "show or change a domain's inbound gateway", configure, run)
