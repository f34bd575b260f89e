"""What each daemon last said about itself: pid, start, the settings it answers with.

Description:
    A daemon writes its row at start and after every reload; ``postwarden status`` reads
    them and compares the digest with the settings file's, so an administrator sees at once
    whether a change is in force (or was refused: the daemon keeps its last good settings).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postwarden.settings.snapshot import Snapshot
from postwarden.state.db import STATE_ERRORS, StateDB, transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonStatus:
    name: str
    pid: int
    started: float
    loaded: float
    digest: str
    listening: str
    node: str = ""  # the node it runs on, in a store shared by a fleet
    here: bool = True  # on this node (its listening addresses are this node's)


def report(
    state_dir: Path,
    name: str,
    *,
    started: float,
    loaded: float,
    digest: str,
    listening: str,
    pid: int | None = None,
) -> None:
    """Write this daemon's row (*pid*: the daemon's, default this process's); never raises."""
    try:
        with StateDB.open(state_dir) as db, transaction(db.conn):
            db.conn.execute(
                "INSERT OR REPLACE INTO daemon_status VALUES (?, ?, ?, ?, ?, ?)",
                (name, pid or os.getpid(), started, loaded, digest, listening),
            )
    except (*STATE_ERRORS, OSError) as exc:
        log.error("status not recorded: %s", exc)


def read_all(db: StateDB) -> list[DaemonStatus]:
    rows = db.conn.execute(
        "SELECT name, pid, started, loaded, digest, listening FROM daemon_status ORDER BY name"
    ).fetchall()
    return [DaemonStatus(*row) for row in rows]


def reporter(
    state_dir: Path, name: str, listening: str, on_reload: Callable[[], None]
) -> Callable[[Snapshot | None, Snapshot], None]:
    """A settings-change callback that reports the new version (``on_reload`` on reloads).

    The row names the process that made the reporter (a daemon's parent process, also when
    one of its workers reports).
    """
    started = time.time()
    pid = os.getpid()

    def settings_changed(old: Snapshot | None, new: Snapshot) -> None:
        if old is not None:
            on_reload()
        report(
            state_dir,
            name,
            started=started,
            loaded=new.loaded_at,
            digest=new.digest,
            listening=listening,
            pid=pid,
        )

    return settings_changed
