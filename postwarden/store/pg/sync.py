"""A daemon's local copy of the shared settings and DKIM keys, kept current in the background.

Description:
    Each daemon keeps, under ``STATE_DIR/cache/DAEMON/``, the newest settings document it
    fetched (``settings.yaml``, byte for byte as stored, so its digest is the version's)
    and, the milter only, the active DKIM keys (``dkim-keys.json``, 0600). The daemon
    answers from these through the same :class:`~postwarden.settings.source.SnapshotSource`
    a single host uses, so a node restarted while the database is down starts on its cache,
    and nothing a request does ever waits for the database.

    :class:`DocumentSync` is the thread that keeps the cache current: it ``LISTEN``\\ s on
    the store's channel (a trigger announces every new settings version and every change of
    DKIM keys at commit), fetches what changed, replaces the cached file atomically and
    pokes the daemon's settings watcher, which compiles the new snapshot off the event loop.
    Every ``poll_seconds`` of the store URL (30 by default) it also compares versions without
    a notification (a lost notification, a connection through a pooler that drops
    ``LISTEN``). A lost connection is logged once, retried with back-off, and the daemon
    goes on with what it has.

Errors:
    :meth:`DocumentSync.first` raises
    :class:`~postwarden.store.base.StoreUnavailable` only when the database cannot be
    reached *and* there is no cache to start on.

Security:
    The cache directory is 0700 and the key cache 0600, the service user's; keys stay as
    sealed as the database keeps them (see :mod:`~postwarden.store.pg.secrets`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from postwarden.store.base import StoreUnavailable
from postwarden.store.pg import document, schema, secrets
from postwarden.store.pg.connect import Target, connect

log = logging.getLogger(__name__)

RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0)
CACHE_DIR = "cache"


class Cache:
    """The cached settings and keys of one daemon."""

    def __init__(self, state_dir: Path, daemon: str) -> None:
        self.directory = state_dir / CACHE_DIR / daemon
        self.settings = self.directory / "settings.yaml"
        self.keys = self.directory / "dkim-keys.json"

    def prepare(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def settings_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.settings.read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    def keys_text(self) -> str | None:
        try:
            return self.keys.read_text()
        except FileNotFoundError:
            return None

    def replace(self, path: Path, data: bytes) -> None:
        """Write *data* to *path* atomically (a temporary file, fsync, rename), mode 0600."""
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".new-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class DocumentSync:
    """Keep a :class:`Cache` current (see the module description)."""

    def __init__(self, target: Target, cache: Cache, daemon: str) -> None:
        self.target = target
        self.cache = cache
        self.daemon = daemon
        self.poke: Callable[[], None] = lambda: None
        self.want_keys = False  # only the milter signs: other daemons keep no keys
        self.connected = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-sync", daemon=True)

    def first(self) -> None:
        """Fetch once at start; with the database away, start on the cache if there is one."""
        self.cache.prepare()
        try:
            with connect(self.target) as conn:
                schema.require_current(conn, self.target.shown)
                self._fetch(conn)
        except (StoreUnavailable, psycopg.Error) as exc:
            if self.cache.settings_digest() is None:
                raise StoreUnavailable(
                    f"{exc}; and there are no cached settings in {self.cache.directory} to start on"
                ) from None
            log.warning(
                "%s; starting on the settings cached in %s: changes made meanwhile apply"
                " once the database is back",
                exc,
                self.cache.directory,
            )

    def start(self, poke: Callable[[], None]) -> None:
        self.poke = poke
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                with connect(self.target) as conn:
                    conn.execute("LISTEN postwarden")
                    if self._fetch(conn):
                        self.poke()
                    if failures:
                        log.info("settings database %s is back", self.target.shown)
                    failures = 0
                    self.connected = True
                    self._listen(conn)
            except (StoreUnavailable, psycopg.Error, OSError) as exc:
                self.connected = False
                if failures == 0:
                    log.error(
                        "settings database %s lost (%s): answering with the settings in"
                        " force; retrying",
                        self.target.shown,
                        " ".join(str(exc).split()),
                    )
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                self._stopping.wait(delay)

    def _listen(self, conn: psycopg.Connection) -> None:
        """Wait for announcements (a second at a time, to notice stop); poll now and then."""
        waited = 0.0
        while not self._stopping.is_set():
            heard = {n.payload for n in conn.notifies(timeout=1.0, stop_after=1)}
            if heard:
                heard.update(n.payload for n in conn.notifies(timeout=0.0))
            else:
                waited += 1.0
                if waited < self.target.poll_seconds:
                    continue
                heard = {"settings", "dkim"}
            waited = 0.0
            if self._fetch(conn, settings="settings" in heard, keys="dkim" in heard):
                self.poke()

    def _fetch(self, conn: psycopg.Connection, *, settings: bool = True, keys: bool = True) -> bool:
        """Bring the cache up to the database; True when anything in it changed."""
        changed = False
        if settings:
            row = conn.execute(
                "SELECT version, digest FROM settings_versions ORDER BY version DESC LIMIT 1"
            ).fetchone()
            if row is not None and row[1] != self.cache.settings_digest():
                found = document.latest(conn)
                if found is not None:
                    self.cache.replace(self.cache.settings, found[1].encode())
                    log.info("settings version %s fetched from %s", found[0], self.target.shown)
                    changed = True
        if keys and self.want_keys:
            text = json.dumps(secrets.active(conn), sort_keys=True)
            if text != self.cache.keys_text():
                self.cache.replace(self.cache.keys, text.encode())
                changed = True
        return changed


def read_keys(cache: Cache) -> list[dict[str, Any]]:
    text = cache.keys_text()
    return list(json.loads(text)) if text else []
