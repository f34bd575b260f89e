"""``postgresql://...``: the store shared by a fleet of MX hosts.

Description:
    Commands and the web console read and edit the settings document in the database
    (:mod:`~postwarden.store.pg.document`: versioned rows, each edit and its audit entry in
    one transaction, optimistic concurrency), and use the shared state there through the
    shared queries (:mod:`~postwarden.store.pg.adapter`). Every call opens its own
    connection: a database that is away fails that call with a message naming it, and
    nothing is changed.

    Daemons never call the database on a request path: :class:`PgLink` answers from the
    daemon's local cache (:mod:`~postwarden.store.pg.sync`), buffers what the daemon learns
    in the node's spool (:mod:`~postwarden.store.pg.spool`), and runs the two threads that
    keep both in step with the database.

Errors:
    :class:`~postwarden.store.base.StoreUnavailable`,
    :class:`~postwarden.store.pg.schema.SchemaMissing`, and those of the document.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet

from postwarden.dkim import keys
from postwarden.errors import PostwardenError
from postwarden.settings.load import Loaded
from postwarden.settings.model import BlockHistory, DecisionLog, Settings
from postwarden.settings.source import SnapshotSource
from postwarden.settings.store import SettingsNotFound
from postwarden.state import daemon_status
from postwarden.state.db import STATE_ERRORS, StateDB
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
from postwarden.store.pg import document, schema, secrets
from postwarden.store.pg.adapter import PgConnection, PgStateDB
from postwarden.store.pg.connect import Target, connect, state_error
from postwarden.store.pg.spool import Shipper, SpoolingWriter, local_node_id
from postwarden.store.pg.sync import Cache, DocumentSync, read_keys

log = logging.getLogger(__name__)


class PgStore(Store):
    """The store in a PostgreSQL database (see the module description)."""

    def __init__(self, url: str, state_dir: Path) -> None:
        self.target = Target.parse(url)
        self.state_dir = state_dir
        self._fernet: Fernet | None = None
        self._fernet_read = False

    @property
    def location(self) -> str:
        return self.target.shown

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection to a database with the current schema (for one call)."""
        conn = connect(self.target)
        try:
            schema.require_current(conn, self.target.shown)
            yield conn
        except psycopg.Error as exc:
            raise state_error(self.target, exc) from None
        finally:
            conn.close()

    def fernet(self) -> Fernet | None:
        if not self._fernet_read:
            self._fernet = secrets.cipher(self.target.dkim_key_file)
            self._fernet_read = True
        return self._fernet

    # --- the settings document

    def read(self) -> Loaded:
        with self.connection() as conn:
            return document.read(conn, self.target)[1]

    def document(self) -> tuple[bytes, str]:
        with self.connection() as conn:
            found = document.latest(conn)
        if found is None:
            raise SettingsNotFound(f"{self.target.shown} holds no settings yet")
        return found[1].encode(), document.source_name(self.target, found[0])

    def create(self, settings: Settings, note: AuditNote) -> tuple[Loaded, str | None]:
        with self.connection() as conn:
            return document.create(conn, self.target, settings, note), None

    def edit(
        self, change: Change, note: Callable[[], AuditNote], *, dry_run: bool = False
    ) -> Edited:
        with self.connection() as conn:
            return document.edit(conn, self.target, change, note, dry_run=dry_run)

    def record_event(self, note: AuditNote, what: str) -> str | None:
        try:
            with self.connection() as conn:
                row = conn.execute(
                    "SELECT digest FROM settings_versions ORDER BY version DESC LIMIT 1"
                ).fetchone()
                digest = row[0] if row else ""
                conn.execute(
                    'INSERT INTO audit (time, "user", source, command, before, after, diff,'
                    " domain) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        time.time(),
                        note.user,
                        note.source,
                        note.command,
                        digest,
                        digest,
                        what.rstrip("\n") + "\n",
                        note.domain,
                    ),
                )
        except STATE_ERRORS as exc:
            return f"warning: the change was made but not recorded in the audit trail: {exc}"
        return None

    # --- shared state

    @contextlib.contextmanager
    def state(self, *, create: bool = True) -> Iterator[StateDB | None]:
        conn = connect(self.target)
        try:
            schema.require_current(conn, self.target.shown)
        except BaseException:
            conn.close()
            raise
        with contextlib.closing(PgStateDB(PgConnection(conn, self.target))) as db:
            yield db

    def write_key(self, domain: str, selector: str, key: keys.PrivateKey) -> str:
        with self.connection() as conn:
            secrets.write(conn, domain, selector, key, self.fernet())
        sealed = " (encrypted)" if self.fernet() else ""
        return f"{self.target.shown}: dkim_private_keys{sealed}"

    def read_key(self, domain: str, selector: str) -> keys.PrivateKey:
        with self.connection() as conn:
            return secrets.read(conn, domain, selector, self.fernet())

    def remove_key(self, domain: str, selector: str) -> bool:
        with self.connection() as conn:
            return secrets.remove(conn, domain, selector)

    def active_keys(self) -> list[ActiveKey]:
        with self.connection() as conn:
            rows = secrets.active(conn)
        return unseal_keys(rows, self.fernet())

    # --- nodes and daemons

    def attach(self, name: str) -> DaemonLink:
        return PgLink(self, name)

    def daemons(self) -> list[daemon_status.DaemonStatus]:
        here = local_node_id(self.state_dir)
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT d.name, d.pid, d.started, d.loaded, d.digest, d.listening, n.name,"
                " d.node_id FROM daemon_status d JOIN nodes n USING (node_id)"
                " ORDER BY n.name, d.name"
            ).fetchall()
        return [
            daemon_status.DaemonStatus(*row[:7], here=row[7] == here)  # type: ignore[misc]
            for row in rows
        ]

    def nodes(self) -> list[dict[str, object]]:
        """Each node, the oldest settings version its daemons answer with, and its lag."""
        with self.connection() as conn:
            versions = conn.execute(
                "SELECT version, digest, created FROM settings_versions ORDER BY version"
            ).fetchall()
            rows = conn.execute(
                "SELECT n.node_id, n.name, n.last_seen, d.digest FROM nodes n"
                " LEFT JOIN daemon_status d USING (node_id) ORDER BY n.name, n.node_id"
            ).fetchall()
        return node_lag(versions, rows, here=local_node_id(self.state_dir))

    # --- store commands

    def initialize(self) -> list[str]:
        with contextlib.closing(connect(self.target)) as conn:
            applied = schema.upgrade(conn)
        if not applied:
            return [f"{self.target.shown}: the schema is current"]
        return [f"{self.target.shown}: schema version {v} applied" for v in applied]

    def backlog(self) -> int | None:
        """Blocks in this node's spool waiting for the database (None: no spool)."""
        from postwarden.store.pg.spool import SPOOL, Spool

        if not (self.state_dir / SPOOL).exists():
            return None
        spool = Spool.open(self.state_dir)
        try:
            return spool.backlog()
        finally:
            spool.close()


def node_lag(
    versions: list[tuple[Any, ...]], rows: list[tuple[Any, ...]], *, here: str | None
) -> list[dict[str, object]]:
    """Per node: the oldest version its daemons answer with, how far behind, since when."""
    by_digest = {digest: int(version) for version, digest, _ in versions}
    created = {int(version): float(when) for version, _, when in versions}
    newest = max(created, default=0)
    nodes: dict[str, dict[str, Any]] = {}
    for node_id, name, last_seen, digest in rows:
        node = nodes.setdefault(
            node_id,
            {"name": name, "this_node": node_id == here, "last_seen": _iso(last_seen), "v": []},
        )
        if digest is not None:
            node["v"].append(by_digest.get(digest, 0))
    result = []
    now = time.time()
    for node in nodes.values():
        applied = min(node.pop("v"), default=None)
        behind = newest - applied if applied is not None else newest
        after = [created[v] for v in created if applied is None or v > applied]
        node.update(
            applied_version=applied,
            newest_version=newest,
            behind=behind,
            lag_seconds=round(now - min(after)) if behind and after else 0,
        )
        result.append(node)
    return result


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))


class PgLink(DaemonLink):
    """A daemon of a fleet node: local cache and spool, kept in step by two threads."""

    store: PgStore

    def __init__(self, store: Store, name: str) -> None:
        super().__init__(store, name)
        self.cache = Cache(self.store.state_dir, name.removeprefix("postwarden-"))
        self.sync = DocumentSync(self.store.target, self.cache, name)
        self.shipper: Shipper | None = None

    def source(self, *, on_refused: Callable[[str], None] | None = None) -> SnapshotSource:
        self.sync.first()
        source = SnapshotSource(self.cache.settings, on_refused=on_refused)
        source.load()
        return source

    def writer(
        self,
        limits: Callable[[], BlockHistory],
        decision_log: Callable[[], DecisionLog] = DecisionLog,
    ) -> StateWriter:
        writer = SpoolingWriter(self.store.state_dir, limits, decision_log=decision_log)
        writer.start()
        self.shipper = Shipper(self.store.target, self.store.state_dir, limits, decision_log)
        return writer

    def reporter(self, listening: str, on_reload: Callable[[], None]) -> StatusReporter:
        return daemon_status.reporter(self.store.state_dir, self.name, listening, on_reload)

    def keys(self) -> KeySource:
        self.sync.want_keys = True  # before source(): the first fetch brings them too
        return CachedKeys(self.cache, self.store.fernet)

    def start(self, poke: Callable[[], None]) -> None:
        self.sync.start(poke)
        if self.shipper is not None:
            self.shipper.start()

    def stop(self) -> None:
        self.sync.stop()
        if self.shipper is not None:
            self.shipper.stop()


class CachedKeys(KeySource):
    """The active keys as the daemon's cache has them (the sync thread keeps it current)."""

    def __init__(self, cache: Cache, fernet: Callable[[], Fernet | None]) -> None:
        self.cache = cache
        self.fernet = fernet
        self._signature: tuple[int, int] | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.cache.keys)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def changed(self) -> bool:
        return self._stat() != self._signature

    def load(self) -> list[ActiveKey]:
        self._signature = self._stat()
        try:
            entries = read_keys(self.cache)
            fernet = self.fernet()
        except (OSError, ValueError, PostwardenError) as exc:
            log.error("DKIM keys unreadable, signing with no keys: %s", exc)
            return []
        return unseal_keys(entries, fernet)


def unseal_keys(entries: list[dict[str, Any]], fernet: Fernet | None) -> list[ActiveKey]:
    """Active keys as :func:`secrets.active` lists them, loaded; a bad one is logged, left out."""
    loaded: list[ActiveKey] = []
    for entry in entries:
        what = f"DKIM key {entry['selector']} of {entry['domain']}"
        try:
            material = entry["material"].encode("latin-1")
            pem = secrets.unseal(entry["sealed"], material, fernet, what)
            key = keys.parse_private_key(pem, trusted=True)
        except (ValueError, PostwardenError) as exc:
            log.error("%s not loaded: %s", what, exc)
            continue
        algorithm = keys.Algorithm(entry["algorithm"])
        loaded.append(ActiveKey(entry["domain"], entry["selector"], algorithm, key))
    return loaded
