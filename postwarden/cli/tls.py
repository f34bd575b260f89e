"""``postwarden tls list | add | edit T | delete T``: TLS policies of a hosted domain.

Description:
    A policy names partner domains whose mail must travel over TLS: ``outgoing`` (mail to
    them; ``--trusted-ca`` and/or ``--hostname-match`` make Postfix verify the certificate,
    level ``verify``, else ``encrypt``) or ``incoming`` (mail from them to this domain's
    recipients is refused over a plaintext session). At most 30 policies per domain with
    unique titles, at most 100 partner domains each. ``.example.net`` means the subdomains of
    example.net. Outgoing policies of all domains are merged; the strictest wins.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.settings.model import Settings, TlsPolicy
from postwarden.settings.schema import Domain


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
    for sub in (listing, adding, editing, deleting):
        sub.add_argument("--domain", metavar="D", help="the hosted domain (default: the primary)")


def _partners(env: Environment, values: list[str]) -> tuple[str, ...]:
    kind, found, problems = Domain(allow_dot=True), [], []
    for token in _settings.tokens(values, env):
        try:
            found.append(kind.from_text(token))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise BadInput("; ".join(problems) + "; nothing was changed")
    return tuple(dict.fromkeys(found))


def level(policy: TlsPolicy) -> str:
    """What the policy means to Postfix."""
    if policy.target == "incoming":
        return "TLS required from them"
    return "verify" if policy.trusted_ca or policy.hostname_match else "encrypt"


def _as_data(policy: TlsPolicy) -> dict[str, object]:
    return {
        "title": policy.title,
        "target": policy.target,
        "trusted_ca": policy.trusted_ca,
        "hostname_match": policy.hostname_match,
        "level": level(policy),
        "partners": list(policy.partners),
    }


def _find(policies: tuple[TlsPolicy, ...], title: str, domain: str) -> int:
    for index, policy in enumerate(policies):
        if policy.title == title:
            return index
    raise BadInput(f"{domain} has no TLS policy titled {title!r}")


def _change(env: Environment, args: argparse.Namespace) -> TlsPolicy | None:
    """Build the edited/added policy inside the locked edit; returns it for the report."""
    result: list[TlsPolicy | None] = [None]
    given = getattr(args, "partners", None)
    partners = _partners(env, given) if given else None

    def change(settings: Settings) -> Settings:
        domain = _settings.selected_domain(settings, args.domain)
        block, _ = _settings.own_block(settings, domain)
        policies = list(block.tls_policies)
        if args.action == "add":
            if any(p.title == args.title for p in policies):
                raise BadInput(f"{domain} already has a TLS policy titled {args.title!r}")
            policy = TlsPolicy(
                title=args.title,
                target=args.target,
                trusted_ca=args.trusted_ca,
                hostname_match=args.hostname_match,
                partners=partners or (),
            )
            policies.append(policy)
        elif args.action == "edit":
            index = _find(block.tls_policies, args.title, domain)
            changes = {
                name: value
                for name, value in (
                    ("title", args.new_title),
                    ("target", args.target),
                    ("trusted_ca", args.trusted_ca),
                    ("hostname_match", args.hostname_match),
                    ("partners", partners),
                )
                if value is not None
            }
            policy = policies[index] = replace(policies[index], **changes)
        else:
            policy = policies.pop(_find(block.tls_policies, args.title, domain))
        result[0] = policy
        return _settings.with_block(settings, domain, replace(block, tls_policies=tuple(policies)))

    _settings.edit(env, change)
    return result[0]


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        settings = _settings.load(env).settings
        domain = _settings.selected_domain(settings, args.domain)
        block, _ = _settings.own_block(settings, domain)
        rows = [_as_data(p) for p in block.tls_policies]
        env.emit(
            {"domain": domain, "policies": rows},
            lambda: (
                table(
                    [
                        [
                            str(r["title"]),
                            str(r["target"]),
                            str(r["level"]),
                            ", ".join(r["partners"]),
                        ]
                        for r in rows
                    ],  # type: ignore[arg-type]
                    ["TITLE", "TARGET", "LEVEL", "PARTNERS"],
                )
                or f"{domain}: no TLS policies"
            ),
        )
        return ExitStatus.OK
    policy = _change(env, args)
    assert policy is not None
    verb = {"add": "added", "edit": "changed", "delete": "deleted"}[args.action]
    env.emit(
        {"action": args.action, "policy": _as_data(policy)}, f"TLS policy {policy.title!r} {verb}"
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
