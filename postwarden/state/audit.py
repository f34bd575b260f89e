"""The audit trail: every settings change, when, by whom, and what changed.

Description:
    The command line records its own changes (source ``command``, the user who ran it — the
    ``SUDO_USER`` behind root when there is one — and the command line). The policy daemon
    records changes made to the file any other way (source ``file``: an editor, a
    configuration-management run), noticed when it reloads, unless the command line already
    recorded that very version. Each entry holds a unified diff of the settings text.

Security:
    The settings hold no secrets, so diffs may be shown to anyone who may read the audit.
"""

from __future__ import annotations

import contextlib
import difflib
import getpass
import logging
import os
import pwd
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from postwarden.settings.load import dump
from postwarden.settings.model import Settings
from postwarden.state.db import STATE_ERRORS, StateDB, transaction

log = logging.getLogger(__name__)

MAX_DIFF = 200_000  # characters kept per entry; a 10,000-entry import is summarized
SETTLE = 3.0


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: float
    user: str
    source: str
    command: str
    before: str
    after: str
    diff: str


def acting_user() -> str:
    """Who is making the change: the human behind sudo, else the login of this process."""
    sudo = os.environ.get("SUDO_USER")
    if sudo:
        return sudo
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return getpass.getuser()


def text_diff(before: str, after: str, name: str = "settings.yaml") -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"a/{name}",
        f"b/{name}",
        n=1,
    )
    diff = "".join(lines)
    if len(diff) > MAX_DIFF:
        added = sum(1 for x in diff.splitlines() if x.startswith("+"))
        removed = sum(1 for x in diff.splitlines() if x.startswith("-"))
        return diff[:MAX_DIFF] + f"\n... diff truncated ({added} lines added, {removed} removed)\n"
    return diff


def record(
    db: StateDB,
    *,
    user: str,
    source: str,
    command: str,
    before: str,
    after: str,
    diff: str,
    when: float | None = None,
    domain: str | None = None,
    in_transaction: bool = False,
) -> None:
    """Add one entry (in a transaction of its own unless *in_transaction*)."""
    with contextlib.nullcontext() if in_transaction else transaction(db.conn):
        db.conn.execute(
            'INSERT INTO audit (time, "user", source, command, before, after, diff, domain)'
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                when if when is not None else time.time(),
                user,
                source,
                command,
                before,
                after,
                diff,
                domain,
            ),
        )


def recorded(db: StateDB, digest: str) -> bool:
    """Whether a change producing the settings *digest* is already in the trail."""
    return db.conn.execute("SELECT 1 FROM audit WHERE after = ?", (digest,)).fetchone() is not None


def last_digest(db: StateDB) -> str | None:
    row = db.conn.execute("SELECT after FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else None


def entries(db: StateDB, limit: int) -> Sequence[AuditEntry]:
    rows = db.conn.execute(
        'SELECT id, time, "user", source, command, before, after, diff FROM audit'
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [AuditEntry(*row) for row in rows]


class FileChanges:
    """Records, for a daemon, settings changes that no ``postwarden`` command recorded."""

    def __init__(self, state_dir: Path, settings_path: Path) -> None:
        self.state_dir = state_dir
        self.settings_path = settings_path

    def _owner(self) -> str:
        try:
            return pwd.getpwuid(self.settings_path.stat().st_uid).pw_name
        except (KeyError, OSError):
            return "unknown"

    def _mtime(self) -> float | None:
        """When the file was changed: its modification time, not when we noticed."""
        try:
            return self.settings_path.stat().st_mtime
        except OSError:
            return None

    def noticed(
        self, old: Settings | None, old_digest: str, new: Settings, new_digest: str
    ) -> None:
        """Record the change from *old* to *new*, a little later, unless a command did.

        A ``postwarden`` command records its change right after renaming the file into
        place; waiting :data:`SETTLE` seconds (in a thread of its own: reloads go on) lets
        it, so one change is never recorded twice.
        """
        if old is None:  # at start: compare with the trail as it is now
            self._record(old, old_digest, new, new_digest, settle=0.0)
            return
        threading.Thread(
            target=self._record, args=(old, old_digest, new, new_digest), name="audit", daemon=True
        ).start()

    def _record(
        self,
        old: Settings | None,
        old_digest: str,
        new: Settings,
        new_digest: str,
        settle: float = SETTLE,
    ) -> None:
        time.sleep(settle)
        try:
            with StateDB.open(self.state_dir) as db:
                if recorded(db, new_digest) or (
                    old is None and last_digest(db) in (None, new_digest)
                ):
                    return
                diff = (
                    text_diff(dump(old), dump(new))
                    if old is not None
                    else ("(changed while the daemon was not running; no diff)\n")
                )
                record(
                    db,
                    user=self._owner(),
                    source="file",
                    command="edited file",
                    before=old_digest,
                    after=new_digest,
                    diff=diff,
                    when=self._mtime(),
                )
        except (*STATE_ERRORS, OSError) as exc:
            log.error("settings change not recorded in the audit trail: %s", exc)
