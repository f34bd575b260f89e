"""``postwarden domain list | add DOMAIN | delete DOMAIN``: the hosted domains.

A domain added here has no settings block of its own: it uses its nearest parent's block
(``sales.example.com`` uses ``example.com``'s). Changing one of its settings with ``--domain``
gives it its own block, starting as a copy of the parent's.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.settings.model import Settings
from postwarden.settings.schema import Domain
from postwarden.settings.snapshot import governing_domain, hosted_domains


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    add("list", "list the hosted domains and whose settings each uses")
    for name, help_text in (("add", "host a domain"), ("delete", "stop hosting a domain")):
        add(name, help_text).add_argument("domain", metavar="DOMAIN")


def _normalized(text: str) -> str:
    try:
        return Domain().from_text(text)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def _describe(settings: Settings) -> list[dict[str, object]]:
    rows = []
    for domain in hosted_domains(settings):
        governing = governing_domain(settings, domain)
        rows.append(
            {
                "domain": domain,
                "primary": domain == settings.primary_domain,
                "settings_from": governing or "",
                "own_settings": governing == domain,
            }
        )
    return rows


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.action == "list":
        rows = _describe(_settings.load(env).settings)
        env.emit(
            rows,
            lambda: table(
                [
                    [
                        str(r["domain"]) + (" (primary)" if r["primary"] else ""),
                        "own"
                        if r["own_settings"]
                        else (f"from {r['settings_from']}" if r["settings_from"] else "defaults"),
                    ]
                    for r in rows
                ],
                ["DOMAIN", "SETTINGS"],
            ),
        )
        return ExitStatus.OK
    domain = _normalized(args.domain)

    def change(settings: Settings) -> Settings:
        domains = dict(settings.domains)
        if args.action == "add":
            if domain not in hosted_domains(settings):
                domains[domain] = None
        else:
            if domain == settings.primary_domain:
                raise BadInput(f"{domain} is the primary domain and cannot be deleted")
            if domain not in domains:
                raise BadInput(f"{domain} is not a hosted domain")
            del domains[domain]
        return replace(settings, domains=domains)

    result = _settings.edit(env, change)
    verb = {"add": "added", "delete": "deleted"}[args.action]
    env.emit(
        {"domain": domain, "action": args.action, "changed": result.changed},
        f"{domain}: {verb}" if result.changed else f"{domain}: already hosted",
    )
    return ExitStatus.OK


COMMAND = Command("domain", "list, add or delete hosted domains", configure, run)
