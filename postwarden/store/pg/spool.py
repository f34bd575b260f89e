"""Run-time state of a node: buffered on local disk first, shipped to the database after.

Description:
    A daemon records blocks through its state writer as on a single host; with a shared
    store the writer puts them in the node's spool, ``STATE_DIR/spool.db`` (SQLite, WAL),
    each under a sequence number, and never waits for the database. The spool has a random
    node id, made when it is created: the node's identity in the database.

    :class:`Shipper` (a thread of each daemon) moves the spool to the database in batches
    of up to :data:`BATCH`: in one transaction it locks the node's row, skips what that row
    says was shipped already, adds the rest to ``block_history`` (count, first and last
    time per domain, entry and client) and moves the row's mark; then it removes the
    shipped rows from the spool. A batch shipped twice (the process died between the commit
    and the removal; two daemons of a node shipping at once) is therefore counted once, and
    nothing is lost while the database is away: the spool grows up to :data:`MAX_ROWS`
    (then new blocks are dropped, counted and logged) and drains when it returns. The same
    transaction copies the node's daemon status rows (which version each daemon answers
    with) and applies the retention limits of the block history once an hour.

Errors:
    A failing database is logged once per outage; the spool keeps everything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psycopg

from postwarden.settings.model import BlockHistory
from postwarden.state import daemon_status
from postwarden.state.db import FILENAME, BlockEvent, StateDB, open_sqlite, transaction
from postwarden.state.writer import Event, StateWriter, UnknownRecipient
from postwarden.store.base import StoreUnavailable
from postwarden.store.pg.connect import Target, connect

log = logging.getLogger(__name__)

SPOOL = "spool.db"
BATCH = 5000
MAX_ROWS = 1_000_000
SHIP_SECONDS = 0.25
HEARTBEAT_SECONDS = 30.0
PRUNE_SECONDS = 3600.0
NODE_ENV = "POSTWARDEN_NODE"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS blocks ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " domain TEXT NOT NULL, entry TEXT NOT NULL, client_ip TEXT NOT NULL, time REAL NOT NULL)",
)


def node_name() -> str:
    """This node's name in ``status``: ``POSTWARDEN_NODE``, else the host name."""
    return os.environ.get(NODE_ENV) or socket.gethostname()


def _prepare(conn: sqlite3.Connection) -> None:
    """The spool's tables, and the node id it is made with."""
    with transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('node_id', ?)", (uuid.uuid4().hex,))


class Spool:
    """The node's local buffer of run-time state (see the module description)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, state_dir: Path, *, handed_over: bool = False) -> Spool:
        return cls(open_sqlite(state_dir / SPOOL, _prepare, handed_over=handed_over))

    def close(self) -> None:
        self.conn.close()

    def node_id(self) -> str:
        return str(self.conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()[0])

    def add(self, events: Iterable[BlockEvent]) -> int:
        """Buffer blocks; how many were dropped because the spool is full."""
        rows = [(e.domain, e.entry, e.client_ip, e.when) for e in events]
        if not rows:
            return 0
        with transaction(self.conn):
            room = MAX_ROWS - self.backlog()
            self.conn.executemany(
                "INSERT INTO blocks (domain, entry, client_ip, time) VALUES (?, ?, ?, ?)",
                rows[: max(room, 0)],
            )
        return max(len(rows) - max(room, 0), 0)

    def pending(self, limit: int = BATCH) -> list[tuple[int, str, str, str, float]]:
        return self.conn.execute(
            "SELECT seq, domain, entry, client_ip, time FROM blocks ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()

    def forget(self, upto: int) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM blocks WHERE seq <= ?", (upto,))

    def backlog(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM blocks").fetchone()[0])


def local_node_id(state_dir: Path) -> str | None:
    """The node id of *state_dir*'s spool, without creating one."""
    if not (state_dir / SPOOL).exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{state_dir / SPOOL}?mode=ro", uri=True)) as c:
        try:
            row = c.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
        except sqlite3.Error:
            return None
    return str(row[0]) if row else None


class SpoolingWriter(StateWriter):
    """The state writer of a node: blocks to the spool, unknown recipients to ``state.db``.

    Unknown recipients stay on the node: only its own milter asks about them.
    """

    _spool: Spool | None = None

    def _write(self, db: StateDB, events: list[Event]) -> None:
        if self._spool is None:
            self._spool = Spool.open(self.state_dir, handed_over=True)
        dropped = self._spool.add(e for e in events if isinstance(e, BlockEvent))
        if dropped:
            self.dropped += dropped
            self._log_error(RuntimeError(f"the spool is full ({MAX_ROWS} blocks waiting)"))
        db.record_unknown((e.address, e.when) for e in events if isinstance(e, UnknownRecipient))


class Shipper:
    """Ship the node's spool and daemon status to the database (see the module description)."""

    def __init__(self, target: Target, state_dir: Path, limits: Callable[[], BlockHistory]) -> None:
        self.target = target
        self.state_dir = state_dir
        self.limits = limits
        self.name = node_name()
        self.shipped = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-ship", daemon=True)
        self._status_sent: list[daemon_status.DaemonStatus] = []
        self._next_heartbeat = 0.0
        self._next_prune = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ship what is waiting (if the database is there), then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        failures = 0
        spool: Spool | None = None
        conn: psycopg.Connection | None = None
        while True:
            stopping = self._stopping.is_set()
            try:
                spool = spool or Spool.open(self.state_dir, handed_over=True)
                if self._due(spool):
                    conn = conn if conn is not None and not conn.closed else connect(self.target)
                    while self._ship(conn, spool) == BATCH:
                        pass
                if failures:
                    log.info("block history shipping to %s again", self.target.shown)
                failures = 0
            except (StoreUnavailable, psycopg.Error, sqlite3.Error, OSError) as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                if failures == 0:
                    log.error(
                        "block history kept on this node until %s is back: %s",
                        self.target.shown,
                        " ".join(str(exc).split()),
                    )
                failures += 1
            if stopping:
                break
            self._wake.wait(SHIP_SECONDS if not failures else min(5.0, SHIP_SECONDS * failures))
            self._wake.clear()
        if conn is not None:
            conn.close()
        if spool is not None:
            spool.close()

    def _due(self, spool: Spool) -> bool:
        now = time.monotonic()
        return bool(
            spool.pending(1) or self._statuses() != self._status_sent or now >= self._next_heartbeat
        )

    def _statuses(self) -> list[daemon_status.DaemonStatus]:
        if not (self.state_dir / FILENAME).exists():
            return []
        with contextlib.closing(StateDB.open(self.state_dir)) as db:
            return daemon_status.read_all(db)

    def _ship(self, conn: psycopg.Connection, spool: Spool) -> int:
        """One batch in one transaction; how many spool rows it covered."""
        rows = spool.pending()
        statuses = self._statuses()
        node = spool.node_id()
        now = time.time()
        with conn.transaction():
            conn.execute(
                "INSERT INTO nodes (node_id, name, last_seen) VALUES (%s, %s, %s)"
                " ON CONFLICT (node_id) DO UPDATE SET name = excluded.name,"
                " last_seen = excluded.last_seen",
                (node, self.name, now),
            )
            mark = conn.execute(
                "SELECT shipped_seq FROM nodes WHERE node_id = %s FOR UPDATE", (node,)
            ).fetchone()
            shipped = int(mark[0]) if mark else 0
            fresh = [row for row in rows if row[0] > shipped]
            _add_blocks(conn, fresh)
            if rows:
                conn.execute(
                    "UPDATE nodes SET shipped_seq = greatest(shipped_seq, %s) WHERE node_id = %s",
                    (rows[-1][0], node),
                )
            for status in statuses:
                _put_status(conn, node, status, now)
            if time.monotonic() >= self._next_prune:
                _prune(conn, self.limits(), now)
                self._next_prune = time.monotonic() + PRUNE_SECONDS
        if rows:
            spool.forget(rows[-1][0])
        self.shipped += len(fresh)
        self._status_sent = statuses
        self._next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        return len(rows)


def _add_blocks(conn: psycopg.Connection, rows: list[tuple[int, str, str, str, float]]) -> None:
    totals: dict[tuple[str, str, str], list[float]] = {}
    for _seq, domain, entry, client, when in rows:
        seen = totals.setdefault((domain, entry, client), [when, when, 0])
        seen[0], seen[1], seen[2] = min(seen[0], when), max(seen[1], when), seen[2] + 1
    if not totals:
        return
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO block_history VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (domain, entry, client_ip) DO UPDATE SET"
            " first_seen = least(block_history.first_seen, excluded.first_seen),"
            " last_seen = greatest(block_history.last_seen, excluded.last_seen),"
            " count = block_history.count + excluded.count",
            [(*key, first, last, int(count)) for key, (first, last, count) in totals.items()],
        )


def _put_status(
    conn: psycopg.Connection, node: str, status: daemon_status.DaemonStatus, now: float
) -> None:
    conn.execute(
        "INSERT INTO daemon_status VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (node_id, name) DO UPDATE SET pid = excluded.pid,"
        " started = excluded.started, loaded = excluded.loaded, digest = excluded.digest,"
        " listening = excluded.listening, reported = excluded.reported",
        (
            node,
            status.name,
            status.pid,
            status.started,
            status.loaded,
            status.digest,
            status.listening,
            now,
        ),
    )


def _prune(conn: psycopg.Connection, limits: BlockHistory, now: float) -> None:
    """The block history's retention limits: age, then the oldest beyond the row limit."""
    conn.execute(
        "DELETE FROM block_history WHERE last_seen < %s", (now - limits.retention_days * 86400,)
    )
    conn.execute(
        "DELETE FROM block_history WHERE (domain, entry, client_ip) IN ("
        " SELECT domain, entry, client_ip FROM block_history"
        " ORDER BY last_seen DESC OFFSET %s)",
        (limits.max_entries,),
    )


@contextlib.contextmanager
def opened(state_dir: Path) -> Iterator[Spool]:
    spool = Spool.open(state_dir)
    try:
        yield spool
    finally:
        spool.close()
