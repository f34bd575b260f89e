"""``postwarden tls list | add | edit T | delete T | test PARTNER``: TLS policies.

Description:
    A policy names partner domains whose mail must travel over TLS: ``outgoing`` (mail to
    them; ``--trusted-ca`` and/or ``--hostname-match`` make Postfix verify the certificate,
    level ``verify``, else ``encrypt``) or ``incoming`` (mail from them to this domain's
    recipients is refused over a plaintext session). At most 30 policies per domain with
    unique titles, at most 100 partner domains each. ``.example.net`` means the subdomains of
    example.net. Outgoing policies of all domains are merged; the strictest wins. The work
    is :mod:`postwarden.admin.tls_policies`'s, shared with the web console.

    ``test PARTNER [--nameserver H[:P]] [--ca-file F]`` connects to the partner's MX hosts
    as Postfix's smtp client would and says whether ``may``, ``encrypt``, ``verify`` and
    ``secure`` would deliver (:mod:`postwarden.tls.probe`); exit 1 when not even
    ``encrypt`` would.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from postwarden.admin import tls_policies
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.dkim.dnscheck import parse_nameserver
from postwarden.policyd.tlspolicy import compile_tls_table
from postwarden.settings.schema import Domain
from postwarden.settings.snapshot import compile_settings
from postwarden.tls.probe import LEVELS, LevelVerdict, PartnerProbe, probe_partner


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    listing = add("list", "list the TLS policies")
    adding = add("add", "add a TLS policy")
    adding.add_argument("--title", required=True, metavar="T", help="unique title")
    adding.add_argument("--target", required=True, choices=["incoming", "outgoing"])
    editing = add("edit", "change a TLS policy")
    editing.add_argument("title", metavar="T", help="the policy to change")
    editing.add_argument("--title", dest="new_title", metavar="NEW", help="rename it")
    editing.add_argument("--target", choices=["incoming", "outgoing"])
    for sub, default in ((adding, False), (editing, None)):
        sub.add_argument(
            "--trusted-ca",
            action=argparse.BooleanOptionalAction,
            default=default,
            help="outgoing: the certificate must come from a trusted CA",
        )
        sub.add_argument(
            "--hostname-match",
            action=argparse.BooleanOptionalAction,
            default=default,
            help="outgoing: the certificate must name the receiving MX host",
        )
    adding.add_argument("partners", metavar="PARTNER", nargs="+", help="partner domains")
    editing.add_argument(
        "--partners", nargs="+", metavar="PARTNER", help="replace the partner domains"
    )
    deleting = add("delete", "delete a TLS policy")
    deleting.add_argument("title", metavar="T")
    for sub in (adding, editing, deleting):
        _settings.add_dry_run(sub)
    _configure_test(add)
    for sub in (listing, adding, editing, deleting):
        _settings.add_domain_option(sub)


def _list(env: Environment, args: argparse.Namespace) -> ExitStatus:
    view, found = tls_policies.policies(_settings.admin(env), args.domain)
    rows = [tls_policies.as_data(p) for p in found]
    env.emit(
        {"domain": view.domain, "settings_from": view.governing, "policies": rows},
        lambda: (
            table(
                [
                    [
                        str(r["title"]),
                        str(r["target"]),
                        str(r["level"]),
                        ", ".join(r["partners"]),  # type: ignore[arg-type]
                    ]
                    for r in rows
                ],
                ["TITLE", "TARGET", "LEVEL", "PARTNERS"],
            )
            or f"{view.domain}: no TLS policies"
        ),
    )
    return ExitStatus.OK


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "test":
        return _test(env, args)
    if args.action == "list":
        return _list(env, args)
    admin = _settings.admin(env, args)
    if args.action == "add":
        change, policy = tls_policies.add(
            admin,
            args.domain,
            title=args.title,
            target=args.target,
            partners=_settings.tokens(args.partners, env),
            trusted_ca=args.trusted_ca,
            hostname_match=args.hostname_match,
        )
    elif args.action == "edit":
        change, policy = tls_policies.edit(
            admin,
            args.domain,
            args.title,
            title=args.new_title,
            target=args.target,
            trusted_ca=args.trusted_ca,
            hostname_match=args.hostname_match,
            partners=_settings.tokens(args.partners, env) if args.partners else None,
        )
    else:
        change, policy = tls_policies.delete(admin, args.domain, args.title)
    verb = {"add": "added", "edit": "changed", "delete": "deleted"}[args.action]
    _settings.report(
        env,
        change,
        {"domain": change.domain, "action": args.action, "policy": tls_policies.as_data(policy)},
        f"{change.domain}: TLS policy {policy.title!r} {verb}",
    )
    return ExitStatus.OK


# --- test PARTNER: would each level deliver to the partner's MX hosts? ---------------------


def _configure_test(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    testing = add("test", "connect to a partner's MX hosts: would encrypt/verify/secure deliver?")
    testing.add_argument("partner", metavar="PARTNER", help="the partner domain")
    testing.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="ask this server (default: dns.nameserver, else the system's resolver)",
    )
    testing.add_argument("--port", type=int, default=25, help="SMTP port (default 25)")
    testing.add_argument(
        "--ca-file", metavar="F", help="trusted CAs (default: the system's, as Postfix uses)"
    )
    testing.add_argument("--timeout", type=float, default=10.0, metavar="S", help="per connection")
    testing.add_argument("--helo", metavar="NAME", help="EHLO name (default: this host's name)")


def _test(env: Environment, args: argparse.Namespace) -> ExitStatus:
    """Exit 1 when the partner cannot be probed or not even ``encrypt`` would deliver."""
    try:
        partner = Domain().from_text(args.partner)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if args.nameserver is not None:
        parse_nameserver(args.nameserver)
    if not 0 < args.port < 65536:
        raise BadInput(f"--port: {args.port} is not a port number")
    if not 0 < args.timeout <= 120:
        raise BadInput(f"--timeout: {args.timeout} is not between 0 and 120 seconds")
    ca_file = Path(args.ca_file) if args.ca_file else None
    if ca_file is not None and not ca_file.is_file():
        raise BadInput(f"--ca-file: {ca_file} is not a file")
    settings = _settings.admin(env).read().settings
    probe = probe_partner(
        partner,
        nameserver=args.nameserver or settings.dns.nameserver or None,
        dns_timeout=float(settings.dns.timeout),
        port=args.port,
        helo=args.helo,
        timeout=args.timeout,
        ca_file=ca_file,
    )
    policy = compile_tls_table(compile_settings(settings)).lookup(partner)
    verdicts = probe.verdicts()
    data = {
        "partner": partner,
        "policy": policy,
        "error": probe.error or None,
        "hosts": [
            {
                "host": a.host,
                "address": a.address,
                "reachable": a.reachable,
                "starttls": a.starttls,
                "protocol": a.protocol or None,
                "cipher": a.cipher or None,
                "trusted": a.trusted,
                "names": list(a.names),
                "hostname_match": a.hostname_match,
                "nexthop_match": a.nexthop_match,
                "levels": {level: a.passes(level) for level in LEVELS},
                "problem": a.problem or None,
            }
            for a in probe.addresses
        ],
        "levels": {
            v.level: {"delivers": v.delivers, "via": v.via, "skipped": list(v.skipped)}
            for v in verdicts
        },
    }
    env.emit(data, lambda: _test_text(probe, verdicts, policy))
    encrypt = next(v for v in verdicts if v.level == "encrypt")
    return ExitStatus.OK if not probe.error and encrypt.delivers else ExitStatus.ERROR


def _test_text(probe: PartnerProbe, verdicts: list[LevelVerdict], policy: str | None) -> str:
    if probe.error:
        return f"{probe.partner}: {probe.error}"
    lines = [f"{probe.partner}: current policy: {policy or 'none (the global level applies)'}"]
    for a in probe.addresses:
        marks = " ".join(f"{level}:{'yes' if a.passes(level) else 'NO'}" for level in LEVELS)
        tls = f" {a.protocol}" if a.protocol else ""
        lines.append(f"  {a.host} [{a.address or '-'}]{tls}  {marks}")
        if a.problem:
            lines.append(f"      {a.problem}")
    for v in verdicts:
        if v.delivers:
            skip = f" (first skipping {', '.join(v.skipped)}: delayed)" if v.skipped else ""
            lines.append(f"{v.level}: delivers via {v.via}{skip}")
        else:
            lines.append(f"{v.level}: would NOT deliver (mail deferred, then bounced)")
    return "\n".join(lines)


COMMAND = Command(
    "tls",
    "list, add, edit or delete TLS policies",
    configure,
    run,
    description="TLS policies per hosted domain: outgoing (mail to partner domains needs TLS;"
    " --trusted-ca/--hostname-match verify the certificate) or incoming (mail from partner"
    " domains is refused without TLS). '.example.net' means its subdomains.",
)
