"""The one edit path: select, copy the parent's block, change, validate, write, audit.

Description:
    :func:`edit_domain` changes one hosted domain's block; :func:`edit_server` changes
    server-wide settings (routes, the hosted domains) and is for server administrators only.
    Both run the change inside the store's atomic read-modify-write
    (:meth:`~postwarden.store.base.Store.edit`), so a change computed from stale settings
    is impossible, a refused change writes nothing, and the audit trail records the change.

    The :class:`Change` they return says what happened in words both front ends show: which
    domain changed, whether its block was first copied from a parent, the warnings this edit
    introduced (not the ones the file had already: those are ``check``'s), and under
    ``dry_run`` the diff and the decisions that would differ (:mod:`~postwarden.admin.preview`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from postwarden.admin import scope
from postwarden.admin.preview import DecisionChange, compare
from postwarden.admin.session import Admin
from postwarden.settings.load import dump
from postwarden.settings.model import DomainBlock, Settings
from postwarden.state import audit
from postwarden.store import Edited

BlockChange = Callable[[DomainBlock, str, Settings], DomainBlock]


@dataclass(frozen=True)
class Change:
    """What one edit did (or, under dry run, would do)."""

    domain: str | None  # the domain whose block changed; None for server-wide settings
    changed: bool
    copied_from: str | None = None
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    diff: str = ""
    decisions: list[DecisionChange] = field(default_factory=list)
    decisions_truncated: bool = False

    def notes(self) -> list[str]:
        """Remarks for the administrator, in the order they matter."""
        notes = []
        if self.copied_from and self.changed:
            verb = "would now have" if self.dry_run else "now has"
            notes.append(f"{self.domain} {verb} its own settings, copied from {self.copied_from}")
        notes.extend(self.warnings)
        return notes

    def as_data(self) -> dict[str, object]:
        data: dict[str, object] = {
            "domain": self.domain,
            "changed": self.changed,
            "copied_from": self.copied_from if self.changed else None,
            "warnings": self.warnings,
        }
        if self.dry_run:
            data["dry_run"] = {
                "diff": self.diff,
                "decisions": [vars(d) for d in self.decisions],
                "decisions_truncated": self.decisions_truncated,
            }
        return data


def edit_domain(
    admin: Admin,
    requested: str | None,
    change: BlockChange,
    *,
    warn: Callable[[DomainBlock, str, Settings], list[str]] | None = None,
) -> Change:
    """Change the block of the domain *requested* names (see :func:`scope.select`).

    *change* gets the domain's own block (a copy of its parent's if it had none), the domain
    and the whole settings; it returns the new block or raises to refuse. *warn* may add
    warnings of its own about the new block (e.g. entries that can never apply). Another
    edit may land first (a fleet's other nodes): then all of this runs again on the newer
    settings.
    """
    picked = _Picked()

    def apply(settings: Settings) -> Settings:
        picked.domain = scope.select(settings, admin.actor, requested)
        block, picked.copied = scope.own_block(settings, picked.domain)
        new_block = change(block, picked.domain, settings)
        picked.warnings = warn(new_block, picked.domain, settings) if warn is not None else []
        return scope.with_block(settings, picked.domain, new_block)

    edited = admin.store.edit(apply, lambda: admin.actor.note(picked.domain), dry_run=admin.dry_run)
    return _finish(admin, edited, picked.domain, picked.copied, picked.warnings)


@dataclass
class _Picked:
    """What the change chose inside the locked edit, for the report after it."""

    domain: str = ""
    copied: str | None = None
    warnings: list[str] = field(default_factory=list)


def edit_server(admin: Admin, what: str, change: Callable[[Settings], Settings]) -> Change:
    """Change server-wide settings (*what* names them in a refusal to a domain administrator)."""
    admin.actor.require_server_admin(what)
    edited = admin.store.edit(change, admin.actor.note, dry_run=admin.dry_run)
    return _finish(admin, edited, None, None, [])


def _finish(
    admin: Admin, edited: Edited, domain: str | None, copied: str | None, extra: list[str]
) -> Change:
    result = edited.result
    before = {(f.setting, f.message) for f in result.before.warnings}
    warnings = [str(f) for f in result.after.warnings if (f.setting, f.message) not in before]
    warnings += [f"warning: {w}" for w in extra]
    if admin.dry_run:
        preview = compare(result.before.settings, result.after.settings)
        return Change(
            domain,
            result.changed,
            copied,
            warnings,
            dry_run=True,
            diff=audit.text_diff(dump(result.before.settings), dump(result.after.settings)),
            decisions=preview.changes,
            decisions_truncated=preview.truncated,
        )
    if edited.problem:
        warnings.append(edited.problem)
    return Change(domain, result.changed, copied, warnings)
