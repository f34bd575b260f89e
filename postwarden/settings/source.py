"""The daemons' one door to the settings: the last good snapshot, reloaded on change.

Description:
    :class:`SnapshotSource` holds the current :class:`~postwarden.settings.snapshot.Snapshot`
    and replaces it when the file changes. :meth:`SnapshotSource.refresh` is cheap when
    nothing changed (one ``stat``), so a daemon calls it every second from a worker thread
    (compiling never runs on an event loop) and on SIGHUP with ``force=True``.

    A file that cannot be read or does not validate never replaces the last good snapshot: the
    problems are logged once per distinct content, and the daemon keeps answering with what it
    had. Only the very first load must succeed (a daemon without settings must not start).

    Nor does a file that looks cut short: when the settings in force ended with YAML's
    document end ``...`` (the command line always writes it) and the new file does not, it
    was truncated or half-written, and a valid-looking prefix of it would silently drop
    domains or list entries. Such a file is refused (logged and counted) until it ends
    with ``...`` again; a deliberate hand edit that keeps the marker applies at once.
    Warnings about a file (overlaps, wide ranges) are logged as warnings, once per version.

    This is the narrow interface a later shared-database backend replaces: ``current`` and
    ``refresh()``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from postwarden.settings.load import SettingsInvalid, load_text
from postwarden.settings.snapshot import Snapshot, compile_settings
from postwarden.util.files import read_regular_file_stat

log = logging.getLogger(__name__)


_Signature = tuple[int, int, int, int, int]


class SnapshotSource:
    """The last good snapshot of one settings file."""

    def __init__(self, path: Path, *, on_refused: Callable[[str], None] | None = None) -> None:
        """*on_refused(reason)* counts each refused version ("invalid", "cut-short")."""
        self.path = path
        self._on_refused = on_refused or (lambda reason: None)
        self._signature: _Signature | None = None
        self._rejected_digest: str | None = None
        self._read_error = ""
        self._current: Snapshot | None = None
        self._complete = False  # the settings in force ended with "..."

    @property
    def current(self) -> Snapshot:
        """The snapshot in force (call :meth:`load` first)."""
        if self._current is None:
            raise RuntimeError("SnapshotSource.load() was not called")
        return self._current

    def load(self) -> Snapshot:
        """The first load: errors propagate (``SettingsInvalid``, ``OSError``)."""
        data, signature = self._read()
        loaded = load_text(data, str(self.path))
        for finding in loaded.warnings:
            log.warning("%s", finding)
        self._install(
            compile_settings(loaded.settings, digest=loaded.digest, source=str(self.path))
        )
        self._complete = loaded.complete
        self._signature = signature
        return self.current

    def refresh(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or *force*); True when a new snapshot is in force."""
        try:
            if not force and self._stat() == self._signature:
                return False
            data, signature = self._read()
        except OSError as exc:
            if str(exc) != self._read_error:  # log each new problem once, not every second
                self._read_error = str(exc)
                log.error(
                    "settings %s unreadable, keeping the last good settings: %s", self.path, exc
                )
            self._signature = None  # try again next time
            return False
        self._read_error = ""
        self._signature = signature
        current = self.current
        try:
            loaded = load_text(data, str(self.path))
        except SettingsInvalid as exc:
            digest = hashlib.sha256(data).hexdigest()
            if self._rejected_digest != digest:  # log each bad version once, not every second
                self._rejected_digest = digest
                self._on_refused("invalid")
                for finding in exc.findings:
                    if finding.warning:
                        log.warning("%s", finding)
                    else:
                        log.error("settings rejected, keeping the last good settings: %s", finding)
            return False
        if loaded.digest == current.digest:
            return False
        if self._complete and not loaded.complete:
            if self._rejected_digest != loaded.digest:  # once per bad version
                self._rejected_digest = loaded.digest
                self._on_refused("cut-short")
                log.error(
                    "settings %s look cut short: the settings in force end with the document"
                    " end '...' and this file does not (truncated or half-written?); keeping"
                    " the last good settings. End the file with a line '...' to apply it.",
                    self.path,
                )
            return False
        for finding in loaded.warnings:
            log.warning("%s", finding)
        self._install(
            compile_settings(loaded.settings, digest=loaded.digest, source=str(self.path))
        )
        self._complete = loaded.complete
        log.info(
            "settings reloaded: %s domains, digest %s",
            len(self.current.policies),
            loaded.digest[:12],
        )
        return True

    def _install(self, snapshot: Snapshot) -> None:
        self._current = snapshot  # one reference assignment: readers see old or new, whole
        self._rejected_digest = None

    def _stat(self) -> _Signature:
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read(self) -> tuple[bytes, _Signature]:
        """The file's bytes; a symbolic link or anything but a regular file is refused.

        Whoever can swap the settings for a link to another file should not be able to
        point the daemons at it unnoticed: the last good settings stay, and the log says why.
        """
        data, st = read_regular_file_stat(self.path)
        return data, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
