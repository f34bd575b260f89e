"""The blocked list's tools: each refused attempt, and pruning entries that block nothing.

Description:
    :func:`history` reads the single refused attempts (``block_attempts``, see
    :mod:`postwarden.state.activity`) of one domain's block, or of every domain.
    :func:`prune` removes from a domain's own ``blocked_ips`` the entries that blocked
    nothing for a number of days — only those :mod:`postwarden.state.prune` can vouch
    for — through the one edit path (dry run, audit trail); every kept entry comes back with
    the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.settings.model import DomainBlock, Settings
from postwarden.state import activity
from postwarden.state.activity import Attempt
from postwarden.state.prune import PruneVerdict, unused_entries


def history(
    admin: Admin,
    domain: str | None,
    *,
    since: float,
    client: str | None,
    limit: int,
    all_domains: bool = False,
) -> tuple[str | None, list[Attempt]]:
    """(the governing domain asked about, or None for all) and its attempts, newest first."""
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    governing = None if all_domains and admin.actor.domain is None else view.governing
    with admin.state(create=False) as db:
        if db is None:
            return governing, []
        found = activity.attempts(db, since=since, client=client, domain=governing, limit=limit)
    return governing, found


@dataclass(frozen=True)
class Pruned:
    domain: str
    verdicts: list[PruneVerdict]
    change: Change | None  # None when nothing was unused

    @property
    def doomed(self) -> list[str]:
        return sorted(v.entry for v in self.verdicts if v.unused)


def prune(admin: Admin, domain: str | None, days: int) -> Pruned:
    if not 1 <= days <= 3650:
        raise BadInput(f"--unused-for: {days} is not between 1 and 3650 days")
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    if view.inherited:
        where = view.governing or "the defaults"
        raise BadInput(
            f"{view.domain} uses the settings of {where}; prune those"
            + (f" with --domain {view.governing}" if view.governing else "")
        )
    with admin.state(create=False) as db:
        if db is None:
            raise BadInput("no block history yet: policyd has not recorded anything")
        verdicts = unused_entries(db, settings, view.domain, days, now=time.time())
    doomed = {v.entry for v in verdicts if v.unused}
    if not doomed:
        return Pruned(view.domain, verdicts, None)

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        kept = tuple(e for e in block.blocked_ips if e.text not in doomed)
        return replace(block, blocked_ips=kept)

    return Pruned(view.domain, verdicts, edit_domain(admin, view.domain, apply))
