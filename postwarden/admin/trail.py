"""Recording administrative changes in the audit trail (``postwarden history``).

Description:
    A settings change is recorded with the acting user, its source (``command`` or ``web``),
    what was done and a diff. Changes that are not settings edits (a new settings file, DKIM
    keys created, verified, activated or deleted) are recorded as events: the settings
    digest stays, the "diff" says what happened.

    Before recording, a change made to the file some other way since the last recorded one
    (an editor, configuration management) is recorded first, under the file owner's name
    with the file's modification time, so the trail has no gap even when no daemon ran to
    notice it.

Errors:
    A failure to record never undoes a change: it is reported (``warning: ... not recorded``)
    and the change stands.
"""

from __future__ import annotations

import pwd
import sqlite3
import time
from dataclasses import dataclass

from postwarden.admin.session import Admin
from postwarden.settings import audit
from postwarden.settings.load import Loaded, dump
from postwarden.settings.state import StateDB, transaction


@dataclass(frozen=True)
class FileState:
    """The settings file as found when a change began: digest, owner, modification time."""

    digest: str
    owner: str
    mtime: float


def file_state(admin: Admin, digest: str) -> FileState:
    try:
        st = admin.settings_path.stat()
    except OSError:
        return FileState(digest, "unknown", time.time())
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return FileState(digest, owner, st.st_mtime)


def record_change(
    admin: Admin, before: Loaded, after: Loaded, found: FileState, domain: str | None
) -> str | None:
    """Record an edit of *domain*'s block (None: server-wide); a warning if it failed."""
    diff = audit.text_diff(dump(before.settings), dump(after.settings))
    return _write(admin, found, before.digest, after.digest, diff, domain)


def record_event(admin: Admin, found: FileState, what: str, domain: str | None) -> str | None:
    """Record something that changed state but not the settings (DKIM keys)."""
    return _write(admin, found, found.digest, found.digest, what.rstrip("\n") + "\n", domain)


def record_new_file(admin: Admin, created: Loaded) -> str | None:
    """Record a new settings file (``postwarden init``): the whole file as the diff."""
    found = file_state(admin, created.digest)
    diff = audit.text_diff("", dump(created.settings))
    return _write(admin, found, "", created.digest, diff, None)


def _write(
    admin: Admin, found: FileState, before: str, after: str, diff: str, domain: str | None
) -> str | None:
    actor = admin.actor
    try:
        with admin.state() as db:
            assert db is not None
            with transaction(db.conn):
                _hand_edit(db, found)
                db.conn.execute(
                    "INSERT INTO audit"
                    " (time, user, source, command, before, after, diff, domain)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.time(),
                        actor.name,
                        actor.source,
                        actor.command,
                        before,
                        after,
                        diff,
                        domain,
                    ),
                )
    except (sqlite3.Error, OSError) as exc:
        return f"warning: the change was made but not recorded in the audit trail: {exc}"
    return None


def _hand_edit(db: StateDB, found: FileState) -> None:
    """Record an unrecorded change of the file made outside postwarden (inside a transaction)."""
    last = db.conn.execute("SELECT after FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    if last is None or last[0] in ("", found.digest):
        return
    if db.conn.execute("SELECT 1 FROM audit WHERE after = ?", (found.digest,)).fetchone():
        return
    db.conn.execute(
        "INSERT INTO audit (time, user, source, command, before, after, diff)"
        " VALUES (?, ?, 'file', 'edited file', ?, ?, ?)",
        (
            found.mtime,
            found.owner,
            last[0],
            found.digest,
            "(the file was changed outside postwarden; no diff kept)\n",
        ),
    )
