"""The store of one host: the settings file plus the SQLite state database beside it.

Description:
    The settings are the YAML file (:mod:`postwarden.settings.store` edits it under a lock,
    atomically); the state is ``state.db`` in the state directory
    (:class:`~postwarden.state.db.StateDB`); DKIM private keys are 0600 files under the
    state directory (:mod:`postwarden.dkim.keys`). Daemons watch the file itself.

    The audit trail is written after an edit: before it, a change made to the file some
    other way since the last recorded one (an editor, configuration management) is
    recorded first, under the file owner's name with the file's modification time, so the
    trail has no gap even when no daemon ran to notice it. A failure to record never undoes
    a change: it is reported and the change stands.

Security:
    The state database and keys are opened as the state directory's owner (the service
    user) when running as root, so nothing in them becomes unreadable to the daemons.
"""

from __future__ import annotations

import contextlib
import logging
import pwd
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from postwarden.dkim import keys
from postwarden.dkim.store import ChangeProbe
from postwarden.errors import PostwardenError
from postwarden.settings import paths
from postwarden.settings.load import Loaded, dump
from postwarden.settings.model import BlockHistory, DecisionLog, Settings
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.source import SnapshotSource
from postwarden.settings.store import create_settings, edit_settings, read_settings
from postwarden.state import audit, daemon_status
from postwarden.state.db import FILENAME, STATE_ERRORS, StateDB, transaction
from postwarden.state.writer import StateWriter
from postwarden.store.base import (
    ActiveKey,
    AuditNote,
    Change,
    DaemonLink,
    Edited,
    KeySource,
    StatusReporter,
    Store,
)
from postwarden.util.privileges import as_owner_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileState:
    """The settings file as found when a change began: digest, owner, modification time."""

    digest: str
    owner: str
    mtime: float


class FileStore(Store):
    """``file:``: the settings file and the state directory of this host."""

    def __init__(self, settings_path: Path, state_dir: Path) -> None:
        self.settings_path = settings_path
        self.state_dir = state_dir

    @property
    def location(self) -> str:
        return str(self.settings_path)

    def read(self) -> Loaded:
        return read_settings(self.settings_path)

    def document(self) -> tuple[bytes, str]:
        return self.settings_path.read_bytes(), str(self.settings_path)

    def create(self, settings: Settings, note: AuditNote) -> tuple[Loaded, str | None]:
        created = create_settings(self.settings_path, settings)
        diff = audit.text_diff("", dump(settings))
        found = self._file_state(created.digest)
        return created, self._write(note, found, "", created.digest, diff)

    def edit(
        self, change: Change, note: Callable[[], AuditNote], *, dry_run: bool = False
    ) -> Edited:
        found: list[FileState] = []

        def apply(settings: Settings) -> Settings:
            new = change(settings)
            # Under the lock: the file as this change found it (for a hand edit before it).
            found.append(self._file_state(""))
            return new

        if not dry_run:  # refuse before anything changes what the trail could not record
            paths.ensure_state_dir(self.state_dir)
        result = edit_settings(self.settings_path, apply, dry_run=dry_run)
        if dry_run or not result.changed or not found:
            return Edited(result)
        state = FileState(result.before.digest, found[-1].owner, found[-1].mtime)
        diff = audit.text_diff(dump(result.before.settings), dump(result.after.settings))
        problem = self._write(note(), state, result.before.digest, result.after.digest, diff)
        return Edited(result, problem)

    def record_event(self, note: AuditNote, what: str) -> str | None:
        try:
            digest = self.read().digest
        except (PostwardenError, OSError):  # the trail records a login even with a bad file
            digest = ""
        found = self._file_state(digest)
        return self._write(note, found, found.digest, found.digest, what.rstrip("\n") + "\n")

    @contextlib.contextmanager
    def state(self, *, create: bool = True) -> Iterator[StateDB | None]:
        if not create and not (self.state_dir / FILENAME).exists():
            yield None
            return
        paths.ensure_state_dir(self.state_dir)
        with as_owner_of(self.state_dir), StateDB.open(self.state_dir) as db:
            yield db

    def write_key(self, domain: str, selector: str, key: keys.PrivateKey) -> str:
        return str(keys.write_key(self.state_dir, domain, selector, key))

    def read_key(self, domain: str, selector: str) -> keys.PrivateKey:
        with as_owner_of(self.state_dir):
            return keys.read_key(keys.key_path(self.state_dir, domain, selector), trusted=True)

    def remove_key(self, domain: str, selector: str) -> bool:
        return keys.remove_key(self.state_dir, domain, selector)

    def active_keys(self) -> list[ActiveKey]:
        if not (self.state_dir / FILENAME).exists():
            return []
        with as_owner_of(self.state_dir):
            return FileKeys(self.state_dir).load()

    def attach(self, name: str) -> DaemonLink:
        return FileLink(self, name)

    def initialize(self) -> list[str]:
        with self.state() as db:
            assert db is not None
        return [f"{self.state_dir / FILENAME}: the state database is ready"]

    def daemons(self) -> list[daemon_status.DaemonStatus]:
        with self.state(create=False) as db:
            return daemon_status.read_all(db) if db is not None else []

    def _file_state(self, digest: str) -> FileState:
        try:
            st = self.settings_path.stat()
        except OSError:
            return FileState(digest, "unknown", time.time())
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        return FileState(digest, owner, st.st_mtime)

    def _write(
        self, note: AuditNote, found: FileState, before: str, after: str, diff: str
    ) -> str | None:
        try:
            with self.state() as db:
                assert db is not None
                with transaction(db.conn):
                    _hand_edit(db, found)
                    audit.record(
                        db,
                        user=note.user,
                        source=note.source,
                        command=note.command,
                        before=before,
                        after=after,
                        diff=diff,
                        domain=note.domain,
                        in_transaction=True,
                    )
        except (*STATE_ERRORS, OSError, paths.StateDirUnusable) as exc:
            return f"warning: the change was made but not recorded in the audit trail: {exc}"
        return None


def _hand_edit(db: StateDB, found: FileState) -> None:
    """Record an unrecorded change of the file made outside postwarden (inside a transaction)."""
    last = audit.last_digest(db)
    if last is None or last in ("", found.digest) or audit.recorded(db, found.digest):
        return
    audit.record(
        db,
        user=found.owner,
        source="file",
        command="edited file",
        before=last,
        after=found.digest,
        diff="(the file was changed outside postwarden; no diff kept)\n",
        when=found.mtime,
        in_transaction=True,
    )


class FileLink(DaemonLink):
    """A daemon of one host: it watches the settings file and writes ``state.db``."""

    store: FileStore

    def source(self, *, on_refused: Callable[[str], None] | None = None) -> SnapshotSource:
        source = SnapshotSource(self.store.settings_path, on_refused=on_refused)
        source.load()
        return source

    def writer(
        self,
        limits: Callable[[], BlockHistory],
        decision_log: Callable[[], DecisionLog] = DecisionLog,
    ) -> StateWriter:
        writer = StateWriter(self.store.state_dir, limits, decision_log=decision_log)
        writer.start()
        return writer

    def reporter(self, listening: str, on_reload: Callable[[], None]) -> StatusReporter:
        report = daemon_status.reporter(self.store.state_dir, self.name, listening, on_reload)
        changes = audit.FileChanges(self.store.state_dir, self.store.settings_path)
        # Hand edits of the file are recorded by one daemon only: the policy daemon.
        record_edits = self.name.endswith("policyd")

        def settings_changed(old: Snapshot | None, new: Snapshot) -> None:
            if record_edits:
                changes.noticed(
                    old.settings if old else None,
                    old.digest if old else "",
                    new.settings,
                    new.digest,
                )
            report(old, new)

        return settings_changed

    def keys(self) -> KeySource:
        return FileKeys(self.store.state_dir)


class FileKeys(KeySource):
    """Active keys from ``state.db`` and their 0600 files (see :mod:`postwarden.dkim.store`).

    :meth:`changed` notices a ``postwarden dkim verify`` that activated a key, and a state
    database that appeared after the daemon started. A state database that cannot be read
    means no keys (logged), never a crash; one bad key file never stops the others.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._probe: ChangeProbe | None = None

    def _open(self) -> ChangeProbe | None:
        """The probe; its connection is opened by the first load, then used by the watcher."""
        if self._probe is None and (self.state_dir / FILENAME).exists():
            # Opened by the first load in the main thread, then used by the watcher thread.
            db = StateDB.open(self.state_dir, handed_over=True)
            self._probe = ChangeProbe(db, self.state_dir)
        return self._probe

    def changed(self) -> bool:
        try:
            had_probe = self._probe is not None
            probe = self._open()
            return probe is not None and (not had_probe or probe.changed())
        except STATE_ERRORS as exc:
            log.error("DKIM state unreadable: %s", exc)
            return False

    def load(self) -> list[ActiveKey]:
        loaded: list[ActiveKey] = []
        try:
            probe = self._open()
            entries = probe.current() if probe is not None else []
        except STATE_ERRORS as exc:
            log.error("DKIM state unreadable, signing with no keys: %s", exc)
            return loaded
        for entry in entries:
            try:
                key = keys.read_key(entry.path, trusted=True)
            except (OSError, ValueError, PostwardenError) as exc:
                log.error("DKIM key %s of %s not loaded: %s", entry.selector, entry.domain, exc)
                continue
            loaded.append(ActiveKey(entry.domain, entry.selector, entry.algorithm, key))
        return loaded
