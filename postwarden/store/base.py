"""The one interface to the store, whichever backend keeps it.

Description:
    A :class:`Store` keeps the settings document and the run-time state shared by the
    daemons, the command line and the web console. Two backends implement it: the settings
    file plus an SQLite state database (:mod:`postwarden.store.file`, one host) and a
    PostgreSQL database (:mod:`postwarden.store.pg`, a fleet of MX hosts). Nothing above
    this module knows which one it talks to.

    For administrators (the service layer): :meth:`Store.read` the document,
    :meth:`Store.edit` it atomically (the change is recorded in the audit trail with it),
    :meth:`Store.create` a first one, :meth:`Store.record_event` what changed state but not
    the settings, :meth:`Store.state` the shared state database, and the DKIM private keys
    (:meth:`Store.write_key`, :meth:`Store.read_key`, :meth:`Store.remove_key`).

    For daemons (:meth:`Store.attach`): a :class:`DaemonLink` gives the last good settings
    (a :class:`~postwarden.settings.source.SnapshotSource`), a state writer for what they
    learn, a status reporter, and the active DKIM keys in memory. Nothing a daemon does
    per request touches a database server: the link keeps local copies and background
    threads move data between them and the server.

Errors:
    :class:`StoreUnavailable` (the database cannot be reached: edits are refused, nothing
    is changed), :class:`BadStoreUrl`; the settings errors of :mod:`postwarden.settings`.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postwarden.dkim.keys import Algorithm, PrivateKey
from postwarden.errors import PostwardenError
from postwarden.settings.load import Loaded
from postwarden.settings.model import BlockHistory, DecisionLog, Settings
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.source import SnapshotSource
from postwarden.settings.store import EditResult
from postwarden.state.daemon_status import DaemonStatus
from postwarden.state.db import StateDB, StateError
from postwarden.state.writer import StateWriter

Change = Callable[[Settings], Settings]
StatusReporter = Callable[[Snapshot | None, Snapshot], None]


class StoreUnavailable(StateError):
    """The settings database cannot be reached; nothing was changed."""


class BadStoreUrl(PostwardenError):
    """Not a store URL (file: or postgresql://...)."""


@dataclass(frozen=True)
class AuditNote:
    """Who made a change and how, for the audit trail.

    ``source`` is ``command`` or ``web``; ``domain`` the hosted domain whose settings or
    keys changed (None: server-wide).
    """

    user: str
    source: str
    command: str
    domain: str | None = None


@dataclass(frozen=True)
class Edited:
    """What :meth:`Store.edit` did, and a warning when the audit trail missed it."""

    result: EditResult
    problem: str | None = None


@dataclass(frozen=True)
class ActiveKey:
    """An active DKIM key, loaded, as the milter signs with it."""

    domain: str
    selector: str
    algorithm: Algorithm
    key: PrivateKey


class KeySource(abc.ABC):
    """The active DKIM keys of every domain, for the milter (polled by its watcher)."""

    @abc.abstractmethod
    def changed(self) -> bool:
        """Whether the active keys changed since the last :meth:`load` (cheap)."""

    @abc.abstractmethod
    def load(self) -> list[ActiveKey]:
        """Every domain's active key, loaded; a key that cannot be loaded is logged, left out."""


class DaemonLink(abc.ABC):
    """What one daemon process needs of the store (see the module description)."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name

    @abc.abstractmethod
    def source(self, *, on_refused: Callable[[str], None] | None = None) -> SnapshotSource:
        """The last good settings, loaded (a daemon without settings does not start)."""

    @abc.abstractmethod
    def writer(
        self,
        limits: Callable[[], BlockHistory],
        decision_log: Callable[[], DecisionLog] = DecisionLog,
    ) -> StateWriter:
        """A started writer for what the daemon learns (blocks, decisions, unknown recipients)."""

    @abc.abstractmethod
    def reporter(self, listening: str, on_reload: Callable[[], None]) -> StatusReporter:
        """A settings-change callback that reports which version this daemon answers with."""

    @abc.abstractmethod
    def keys(self) -> KeySource:
        """The active DKIM keys."""

    def start(self, poke: Callable[[], None]) -> None:  # noqa: B027 - optional hook
        """Start background work; *poke* makes the daemon look for new settings now."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Stop background work, writing out what can be written."""


class Store(abc.ABC):
    """The settings document and the shared run-time state (see the module description)."""

    #: this node's own directory: the local state database, caches, buffers
    state_dir: Path

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the settings are, for messages (a path, or a URL without its password)."""

    @abc.abstractmethod
    def read(self) -> Loaded:
        """The current, validated settings document."""

    @abc.abstractmethod
    def document(self) -> tuple[bytes, str]:
        """The document as stored, valid or not, and its name in messages (``check``)."""

    def document_digest(self) -> str:
        """The digest of the document as stored, valid or not (for ``status``)."""
        return hashlib.sha256(self.document()[0]).hexdigest()

    @abc.abstractmethod
    def create(self, settings: Settings, note: AuditNote) -> tuple[Loaded, str | None]:
        """A first settings document, and a warning if the audit trail missed it.

        :raises SettingsExist: if there is one.
        """

    @abc.abstractmethod
    def edit(
        self, change: Change, note: Callable[[], AuditNote], *, dry_run: bool = False
    ) -> Edited:
        """Apply *change* atomically and record it (*note* is asked after the change ran).

        *change* may run more than once (another edit landed first: it is applied again to
        the newer settings); it raises to refuse, and then nothing is written.
        """

    @abc.abstractmethod
    def record_event(self, note: AuditNote, what: str) -> str | None:
        """Record something that changed state but not the settings; a warning if it failed."""

    @abc.abstractmethod
    def state(self, *, create: bool = True) -> contextlib.AbstractContextManager[StateDB | None]:
        """The shared state database; None if there is none yet and not *create*."""

    @abc.abstractmethod
    def write_key(self, domain: str, selector: str, key: PrivateKey) -> str:
        """Keep a new private key (never replaces one); where it is kept, in words."""

    @abc.abstractmethod
    def read_key(self, domain: str, selector: str) -> PrivateKey:
        """A private key this store keeps."""

    @abc.abstractmethod
    def remove_key(self, domain: str, selector: str) -> bool:
        """Forget a private key; False when there was none."""

    @abc.abstractmethod
    def active_keys(self) -> list[ActiveKey]:
        """The keys that sign now, loaded (``dkim test`` signs as the milter would)."""

    @abc.abstractmethod
    def attach(self, name: str) -> DaemonLink:
        """The link of the daemon *name* (``postwarden-policyd``, ...)."""

    @abc.abstractmethod
    def daemons(self) -> list[DaemonStatus]:
        """What each daemon (of every node) last said about itself."""

    @abc.abstractmethod
    def initialize(self) -> list[str]:
        """Prepare the store for use (``postwarden store init``); what was done, in words."""

    def nodes(self) -> list[dict[str, object]]:
        """The hosts sharing this store, with the settings version each applies (fleet only)."""
        return []

    def backlog(self) -> int | None:
        """Run-time state of this node waiting for the store (None: nothing is buffered)."""
        return None
