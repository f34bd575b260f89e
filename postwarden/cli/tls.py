"""``postwarden tls list | add | edit T | delete T``: TLS policies of a hosted domain.

Description:
    A policy names partner domains whose mail must travel over TLS: ``outgoing`` (mail to
    them; ``--trusted-ca`` and/or ``--hostname-match`` make Postfix verify the certificate,
    level ``verify``, else ``encrypt``) or ``incoming`` (mail from them to this domain's
    recipients is refused over a plaintext session). At most 30 policies per domain with
    unique titles, at most 100 partner domains each. ``.example.net`` means the subdomains of
    example.net. Outgoing policies of all domains are merged; the strictest wins. The work
    is :mod:`postwarden.admin.tls_policies`'s, shared with the web console.
"""

from __future__ import annotations

import argparse

from postwarden.admin import tls_policies
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table


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


COMMAND = Command(
    "tls",
    "list, add, edit or delete TLS policies",
    configure,
    run,
    description="TLS policies per hosted domain: outgoing (mail to partner domains needs TLS;"
    " --trusted-ca/--hostname-match verify the certificate) or incoming (mail from partner"
    " domains is refused without TLS). '.example.net' means its subdomains.",
)
