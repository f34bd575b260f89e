"""Helpers the commands share for reading and changing the settings file."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import replace

from postwarden.cli._env import BadInput, Environment
from postwarden.errors import PostwardenError
from postwarden.settings import audit, paths
from postwarden.settings.load import Loaded, dump
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import Domain
from postwarden.settings.snapshot import governing_domain, hosted_domains
from postwarden.settings.state import StateDB
from postwarden.settings.store import EditResult, edit_settings, read_settings
from postwarden.util.privileges import as_owner_of

_SEPARATORS = re.compile(r"[\s,]+")


def tokens(values: Iterable[str], env: Environment) -> list[str]:
    """Entries given as arguments separated by spaces, commas or line breaks; ``-`` = stdin."""
    result: list[str] = []
    for value in values:
        text = env.stdin.read() if value == "-" else value
        result.extend(t for t in _SEPARATORS.split(text) if t)
    if not result:
        raise BadInput("no entries given")
    return result


class NotHosted(PostwardenError):
    """The domain is not hosted here."""


def load(env: Environment) -> Loaded:
    loaded = read_settings(env.settings_path)
    for finding in loaded.warnings:
        env.note(str(finding))
    return loaded


def edit(env: Environment, change: Callable[[Settings], Settings]) -> EditResult:
    """Apply *change*; print warnings the change introduced; record it in the audit trail."""
    result = edit_settings(env.settings_path, change)
    before = {(f.setting, f.message) for f in result.before.warnings}
    for finding in result.after.warnings:
        if (finding.setting, finding.message) not in before:
            env.note(str(finding))
    if result.changed:
        _audit(env, result)
    return result


def _audit(env: Environment, result: EditResult) -> None:
    """Record a change; a failure to record is reported, the change itself stands."""
    diff = audit.text_diff(dump(result.before.settings), dump(result.after.settings))
    try:
        paths.ensure_state_dir(env.state_dir)
        with as_owner_of(env.state_dir), StateDB.open(env.state_dir) as db:
            audit.record(
                db,
                user=audit.acting_user(),
                source="command",
                command=env.command,
                before=result.before.digest,
                after=result.after.digest,
                diff=diff,
            )
    except (sqlite3.Error, OSError) as exc:
        env.note(f"warning: the change was made but not recorded in the audit trail: {exc}")


def selected_domain(settings: Settings, requested: str | None) -> str:
    """The hosted domain ``--domain`` names (normalized), default the primary."""
    if not requested:
        return settings.primary_domain
    try:
        domain = Domain().from_text(requested)
    except ValueError as exc:
        raise NotHosted(str(exc)) from None
    if domain not in hosted_domains(settings):
        raise NotHosted(f"{domain} is not a hosted domain (see `postwarden domain list`)")
    return domain


def own_block(settings: Settings, domain: str) -> tuple[DomainBlock, str | None]:
    """The block to change for *domain*, and the domain it was copied from, if any.

    A domain that uses its parent's block gets its own copy first: the change must not
    alter the parent, and starting empty would silently drop the parent's lists.
    """
    block = settings.domains.get(domain)
    if block is not None:
        return block, None
    source = governing_domain(settings, domain)
    if source is None:
        return DomainBlock(), None
    return settings.domains[source] or DomainBlock(), source


def with_block(settings: Settings, domain: str, block: DomainBlock) -> Settings:
    """*settings* with *domain*'s block replaced."""
    return replace(settings, domains={**settings.domains, domain: block})
