"""The audit trail as an administrator may read it (``postwarden history``, the console).

Description:
    A server administrator reads every entry. A domain administrator reads only the entries
    about its own domains (edits of their settings, their DKIM keys) — never server-wide
    changes, other domains, logins or hand edits, whose diffs could show other customers'
    settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from postwarden.admin.session import Admin
from postwarden.state.audit import AuditEntry

_SELECT = 'SELECT id, time, "user", source, command, before, after, diff, domain FROM audit'


def entries(admin: Admin, limit: int) -> Sequence[AuditEntry]:
    """The *limit* newest entries this user may read, newest first."""
    actor = admin.actor
    with admin.state(create=False) as db:
        if db is None:
            return []
        rows = db.conn.execute(
            _SELECT
            + (" WHERE domain IS NOT NULL" if not actor.server_admin else "")
            + " ORDER BY id DESC",
        )
        found: list[AuditEntry] = []
        for row in rows:
            if actor.server_admin or actor.reaches(row[8]):
                found.append(AuditEntry(*row[:8]))
                if len(found) >= limit:
                    break
    return found


def summary(diff: str) -> str:
    """``+3 -1 lines`` for a settings diff; what happened for an event."""
    if not diff.startswith("---"):
        return diff.strip().replace("\n", "; ")
    lines = diff.splitlines()
    added = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    removed = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    return f"+{added} -{removed} lines"
