"""The active DKIM keys of every hosted domain, for the milter's view.

Description:
    Keys are loaded when the view is compiled (at start, and when the settings or the DKIM
    state change), never per message. :meth:`KeyRing.changed` is the cheap probe the settings
    watcher polls every second: it notices a ``postwarden dkim verify`` that activated a key,
    and a state database that appeared after the milter started.

Errors:
    A key that cannot be loaded is logged and its domain left to the primary's key; one bad
    file never stops signing for the others. A state database that cannot be read means no
    keys (logged), never a crash.

Security:
    Key material is never logged; files are read as the service user, which owns them.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from postwarden.dkim.keys import read_key
from postwarden.dkim.store import ChangeProbe
from postwarden.errors import PostwardenError
from postwarden.milter.view import SigningKey
from postwarden.settings.state import FILENAME, StateDB

log = logging.getLogger("postwarden.milter")


class KeyRing:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._probe: ChangeProbe | None = None

    def _open(self) -> ChangeProbe | None:
        if self._probe is None and (self.state_dir / FILENAME).exists():
            # Opened by the first load in the main thread, then used by the watcher thread.
            db = StateDB.open(self.state_dir, handed_over=True)
            self._probe = ChangeProbe(db, self.state_dir)
        return self._probe

    def changed(self) -> bool:
        """Whether the active keys changed since the last :meth:`load`."""
        try:
            had_probe = self._probe is not None
            probe = self._open()
            return probe is not None and (not had_probe or probe.changed())
        except sqlite3.Error as exc:
            log.error("DKIM state unreadable: %s", exc)
            return False

    def load(self) -> dict[str, SigningKey]:
        """Every domain's active key, loaded."""
        keys: dict[str, SigningKey] = {}
        try:
            probe = self._open()
            entries = probe.current() if probe is not None else []
        except sqlite3.Error as exc:
            log.error("DKIM state unreadable, signing with no keys: %s", exc)
            return keys
        for entry in entries:
            try:
                key = read_key(entry.path, trusted=True)
            except (OSError, ValueError, PostwardenError) as exc:
                log.error("DKIM key %s of %s not loaded: %s", entry.selector, entry.domain, exc)
                continue
            keys[entry.domain] = SigningKey(entry.domain, entry.selector, str(entry.algorithm), key)
        return keys
