"""``postwarden gateway show | set ... | check``: a hosted domain's inbound gateway.

The gateway's addresses (at most 50, none wider than /20 or /116), whether external mail is
received only from them, whether internal mail goes through the gateway (``--route``), and
whether mail from the gateway skips the spam filters (the regex rules still run). The work
is :mod:`postwarden.admin.gateway`'s, shared with the web console.
``check`` looks the domain's MX up and says whether every MX address is a gateway address
(exit 1 when the gateway is on and it is not; see :mod:`postwarden.mx.gateway`).
"""

from __future__ import annotations

import argparse

from postwarden.admin import gateway, scope
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus
from postwarden.dkim.dnscheck import parse_nameserver
from postwarden.mx.gateway import GatewayMx, check_gateway_mx
from postwarden.settings.model import Gateway
from postwarden.settings.schema import Bool
from postwarden.settings.snapshot import compile_settings

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
    checking = add("check", "does the domain's MX point at the gateway? (DNS)")
    checking.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="ask this server (default: dns.nameserver, else the authoritative servers)",
    )
    for sub in (show, setting, checking):
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
    if args.action == "check":
        return _check(env, args)
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


# --- check: the domain's MX against the gateway entries ------------------------------------


def _check(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Exit 1 when the MX points elsewhere (or cannot be looked up) while the gateway is on."""
    if args.nameserver is not None:
        parse_nameserver(args.nameserver)
    admin = _settings.admin(env)
    settings = admin.read().settings
    domain = scope.select(settings, admin.actor, args.domain)
    policy = compile_settings(settings).policy_for(domain)
    assert policy is not None
    result = check_gateway_mx(
        domain,
        policy,
        nameserver=args.nameserver or settings.dns.nameserver or None,
        timeout=float(settings.dns.timeout),
    )
    data = {
        "domain": domain,
        "gateway_enabled": result.gateway_on,
        "only_from_gateway": result.only_from_gateway,
        "mx": [
            {
                "host": h.name,
                "preference": h.preference,
                "addresses": [{"address": a, "gateway": ok} for a, ok in h.addresses.items()],
                "problem": h.problem or None,
            }
            for h in result.hosts
        ],
        "null_mx": result.null_mx,
        "error": result.error or None,
        "points_at_gateway": result.points_at_gateway,
        "warning": result.warning,
    }
    env.emit(data, lambda: _check_text(result))
    return (
        ExitStatus.ERROR
        if (result.gateway_on and not result.points_at_gateway)
        else (ExitStatus.OK)
    )


def _check_text(result: GatewayMx) -> str:
    if result.error:
        return f"{result.domain}: MX not looked up: {result.error}"
    lines = [f"{result.domain} MX ({result.source}):"]
    for host in result.hosts:
        where = ", ".join(
            f"{a} {'gateway' if ok else 'NOT a gateway address'}"
            for a, ok in host.addresses.items()
        )
        lines.append(f"  {host.preference:>3} {host.name}: {where or host.problem}")
    if result.null_mx:
        lines.append("  null MX: the domain receives no mail")
    if not result.gateway_on:
        lines.append("the gateway is disabled: nothing to compare")
    elif result.points_at_gateway:
        lines.append("every MX host is a gateway address")
    else:
        lines.append(
            result.warning
            or f"MX points elsewhere: {', '.join(result.elsewhere)} (only_from_gateway is off,"
            " so that mail is still received, without the gateway's filtering)"
        )
    return "\n".join(lines)


COMMAND = Command(
    "gateway", "show, change or check (MX) a domain's inbound gateway", configure, run
)
