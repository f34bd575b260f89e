"""Recording administrative events in the audit trail (``postwarden history``).

Description:
    Settings edits are recorded by the store together with the edit
    (:meth:`~postwarden.store.base.Store.edit`). Changes that are not settings edits (DKIM
    keys created, verified, activated or deleted; web users and logins) are recorded here as
    events: the settings digest stays, the "diff" says what happened.

Errors:
    A failure to record never undoes a change: it is reported (``warning: ... not recorded``)
    and the change stands.
"""

from __future__ import annotations

from postwarden.admin.session import Admin


def record_event(admin: Admin, what: str, domain: str | None) -> str | None:
    """Record something that changed state but not the settings; a warning if it failed."""
    return admin.store.record_event(admin.actor.note(domain), what)
