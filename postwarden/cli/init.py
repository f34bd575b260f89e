"""``postwarden init PRIMARY_DOMAIN``: a new minimal settings file; never overwrites.

The new file is the first entry of the audit trail (``postwarden history``).
"""

from __future__ import annotations

import argparse

from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import Domain


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("primary_domain", metavar="PRIMARY_DOMAIN", help="the primary domain")


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    try:
        domain = Domain().from_text(args.primary_domain)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    # The primary gets its own (empty) block, which hosted subdomains then inherit.
    settings = Settings(primary_domain=domain, domains={domain: DomainBlock()})
    store = env.store()
    _, problem = store.create(settings, _settings.admin(env).actor.note())
    if problem:
        env.note(problem)
    env.emit(
        {"settings": store.location, "primary_domain": domain, "created": True},
        f"created {store.location} for {domain}",
    )
    return ExitStatus.OK


COMMAND = Command(
    "init", "create a new minimal settings file (never overwrites one)", configure, run
)
