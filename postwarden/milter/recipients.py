"""Does Postfix know a recipient? The answer policyd noted when Postfix asked it.

Description:
    Postfix consults postwarden's ``rcptok`` table only after its own recipient tables did
    not know an address, and policyd notes each address it then accepted for a route in the
    state database. So a recipient of a hosted domain is unknown exactly when such a note is
    recent; "keep a local copy" delivers locally only to known recipients.

Errors:
    A state database that cannot be read counts as "known" (logged): the local copy is then
    attempted, and Postfix reports an unknown user as usual.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from postwarden.settings.state import FILENAME, StateDB

log = logging.getLogger("postwarden.milter")

NOTE_LIFETIME = 3600.0


class KnownRecipients:
    """A callable ``known(address) -> bool`` over one shared, locked connection."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._db: StateDB | None = None
        self._lock = threading.Lock()

    def __call__(self, address: str) -> bool:
        with self._lock:
            try:
                if self._db is None:
                    if not (self.state_dir / FILENAME).exists():
                        return True
                    self._db = StateDB.open(self.state_dir, handed_over=True)
                return not self._db.is_unknown(address, since=time.time() - NOTE_LIFETIME)
            except sqlite3.Error as exc:
                log.error("unknown-recipient notes unreadable: %s", exc)
                return True
