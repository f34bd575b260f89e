"""Does Postfix know a recipient? The policy daemon's answer when Postfix asked it.

Description:
    Postfix consults postwarden's ``rcptok`` table only after its own recipient tables did
    not know an address, so a recipient of a hosted domain is unknown exactly when policyd
    accepted it there. The milter asks policyd's ``unknown`` socketmap table at end of
    message; policyd noted the answer in memory before it replied to Postfix at RCPT time,
    so the milter can never be ahead of it. "Keep a local copy" delivers locally only to
    known recipients.

    When policyd cannot be asked, the notes policyd's state writer keeps in the state
    database answer instead (written a moment after the RCPT, so a message can outrun
    them: logged).

Errors:
    Neither source readable: the recipient counts as known (logged); the local copy is then
    attempted, and Postfix reports an unknown user as usual.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from postwarden.state.db import FILENAME, StateDB
from postwarden.util.socketmap_client import SocketmapClient, SocketmapError

log = logging.getLogger("postwarden.milter")

NOTE_LIFETIME = 3600.0


class KnownRecipients:
    """A callable ``known(address) -> bool``: policyd first, the state database second."""

    def __init__(self, state_dir: Path, policyd: SocketmapClient | None = None) -> None:
        self.state_dir = state_dir
        self.policyd = policyd
        self._db: StateDB | None = None
        self._lock = threading.Lock()

    def __call__(self, address: str) -> bool:
        if self.policyd is not None:
            try:
                return self.policyd.lookup("unknown", address) is None
            except (OSError, SocketmapError) as exc:
                log.warning("cannot ask policyd whether <%s> is unknown: %s", address, exc)
        return self._from_notes(address)

    def _from_notes(self, address: str) -> bool:
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
