"""Run-time state of a node: buffered on local disk first, shipped to the database after.

Description:
    A daemon records blocks and decisions through its state writer as on a single host; with
    a shared store the writer puts them in the node's spool, ``STATE_DIR/spool.db`` (SQLite,
    WAL), each of its batches as one row per kind under a sequence number (a row per event
    cost an SQLite insert per request), and never waits for the database. The spool has a
    random node id, made when it is created: the node's identity in the database.
    (Unknown-recipient notes stay in the node's ``state.db``: only its own milter asks. The
    IP list entries' listing times are kept by the edits themselves.)

    :class:`Shipper` (a thread of each daemon) moves the spool to the database in batches
    of up to :data:`BATCH`: in one transaction it locks the node's row, skips what that row
    says was shipped already, adds the rest — blocks to ``block_history`` (count, first and
    last time per domain, entry and client) and ``block_attempts``, decisions to
    ``decisions`` — and moves the row's mark; then it removes the shipped rows from the
    spool. Each event is spooled as the line PostgreSQL's ``COPY`` reads: a batch is
    ``COPY`` into a temporary table and two ``INSERT ... SELECT`` (the server sums the
    totals), so per event the daemon only formats a line and joins it to the others, which
    keeps shipping cheap for the daemon and the database alike. A batch shipped twice (the
    process died between the commit and the removal; two daemons of a node shipping at
    once) is therefore counted once, and nothing is lost while the database is away: the
    spool grows up to :data:`MAX_EVENTS` (then new events are dropped, counted and logged)
    and drains when it returns. The same
    transaction copies the node's daemon status rows (which version each daemon answers
    with) and applies the retention limits of the block history and the decision log once
    an hour.

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

from postwarden.settings.model import BlockHistory, DecisionLog
from postwarden.state import daemon_status
from postwarden.state.activity import DecisionRecord
from postwarden.state.db import FILENAME, BlockEvent, StateDB, open_sqlite, transaction
from postwarden.state.writer import Event, StateWriter, UnknownRecipient
from postwarden.store.base import StoreUnavailable
from postwarden.store.pg.connect import Target, connect

log = logging.getLogger(__name__)

SPOOL = "spool.db"
BATCH = 20_000
MAX_EVENTS = 1_000_000
SHIP_SECONDS = 0.25
HEARTBEAT_SECONDS = 30.0
PRUNE_SECONDS = 3600.0
NODE_ENV = "POSTWARDEN_NODE"
LOG_TABLES = ("block_attempts", "decisions")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # line: n COPY text rows of BLOCK_COLUMNS (kind 'block') or DECISION_COLUMNS ('decision')
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL, line TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 1)",
)
BLOCK_COLUMNS = "time, domain, entry, client_ip, sender, recipient, source"
DECISION_COLUMNS = (
    "time, client_ip, sender, recipient, tls, sasl_user, action, rule, domain, entry, digest"
)
# COPY's text format: these characters are escaped, the fields joined by tabs.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
Row = tuple[int, str, str, int]  # seq, kind, lines, how many


def node_name() -> str:
    """This node's name in ``status``: ``POSTWARDEN_NODE``, else the host name."""
    return os.environ.get(NODE_ENV) or socket.gethostname()


def _prepare(conn: sqlite3.Connection) -> None:
    """The spool's tables, and the node id it is made with."""
    with transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        if "n" not in columns:  # a spool of an event per row: each row holds one
            conn.execute("ALTER TABLE events ADD COLUMN n INTEGER NOT NULL DEFAULT 1")
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

    def add(self, events: Iterable[Event]) -> int:
        """Buffer blocks and decisions; how many were dropped because the spool is full.

        One row per kind; when the spool is nearly full, blocks are kept before decisions.
        """
        lines: dict[str, list[str]] = {"block": [], "decision": []}
        for spooled in map(_spooled, events):
            if spooled is not None:
                lines[spooled[0]].append(spooled[1])
        wanted = sum(map(len, lines.values()))
        if not wanted:
            return 0
        kept = 0
        with transaction(self.conn):
            room = max(MAX_EVENTS - self.backlog(), 0)
            for kind, batch in lines.items():
                taken = batch[: room - kept]
                if taken:
                    self.conn.execute(
                        "INSERT INTO events (kind, line, n) VALUES (?, ?, ?)",
                        (kind, "".join(taken), len(taken)),
                    )
                    kept += len(taken)
        return wanted - kept

    def pending(self, limit: int = BATCH) -> list[Row]:
        """The oldest rows, up to about *limit* events (always one row when there is one)."""
        rows: list[Row] = []
        count = 0
        cursor = self.conn.execute("SELECT seq, kind, line, n FROM events ORDER BY seq")
        try:
            for row in cursor:
                rows.append(row)
                count += row[3]
                if count >= limit:
                    break
        finally:
            cursor.close()
        return rows

    def forget(self, upto: int) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM events WHERE seq <= ?", (upto,))

    def backlog(self) -> int:
        """Events waiting."""
        return int(self.conn.execute("SELECT coalesce(sum(n), 0) FROM events").fetchone()[0])


def _spooled(event: Event) -> tuple[str, str] | None:
    """(kind, COPY line) of an event the database takes; None for what stays on the node."""
    if isinstance(event, BlockEvent):
        e = event
        return "block", _line(
            e.when, e.domain, e.entry, e.client_ip, e.sender, e.recipient, e.source
        )
    if isinstance(event, DecisionRecord):
        return "decision", _line(*event.row())
    return None


def _line(*fields: object) -> str:
    """One row in COPY's text format (no field is ever NULL)."""
    return "\t".join(str(f).translate(_COPY_ESCAPES) for f in fields) + "\n"


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
    """The state writer of a node: blocks and decisions to the spool, the rest stays.

    Unknown recipients go to the node's ``state.db`` (only its own milter asks about them);
    listed entries are not written at all (every edit keeps them in the database).
    """

    _spool: Spool | None = None
    # Fewer, larger transactions than on a single host: each adds a row to the spool and
    # first counts the backlog, a sum over the whole spool (5 ms batches: -8 to -16 % in
    # tests.bench fleet, against -1 % with these).
    batch = 500
    gather = 0.05

    def _write(self, db: StateDB, events: list[Event]) -> None:
        if self._spool is None:
            self._spool = Spool.open(self.state_dir, handed_over=True)
        dropped = self._spool.add(events)
        if dropped:
            self.dropped += dropped
            self._log_error(RuntimeError(f"the spool is full ({MAX_EVENTS} events waiting)"))
        db.record_unknown((e.address, e.when) for e in events if isinstance(e, UnknownRecipient))

    def _prune(self, db: StateDB) -> None:
        """The node's own state: unknown-recipient notes (the database prunes the rest)."""
        db.prune(retention_days=1, max_entries=0, max_attempts=0)


class Shipper:
    """Ship the node's spool and daemon status to the database (see the module description)."""

    def __init__(
        self,
        target: Target,
        state_dir: Path,
        limits: Callable[[], BlockHistory],
        decision_log: Callable[[], DecisionLog],
    ) -> None:
        self.target = target
        self.state_dir = state_dir
        self.limits = limits
        self.decision_log = decision_log
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
                    while self._ship(conn, spool) >= BATCH:
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
        """One batch in one transaction; how many events it covered."""
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
            _add_blocks(conn, "".join(row[2] for row in fresh if row[1] == "block"))
            _add_decisions(conn, "".join(row[2] for row in fresh if row[1] == "decision"))
            if rows:
                conn.execute(
                    "UPDATE nodes SET shipped_seq = greatest(shipped_seq, %s) WHERE node_id = %s",
                    (rows[-1][0], node),
                )
            for status in statuses:
                _put_status(conn, node, status, now)
            if time.monotonic() >= self._next_prune:
                _prune(conn, self.limits(), self.decision_log(), now)
                self._next_prune = time.monotonic() + PRUNE_SECONDS
        if rows:
            spool.forget(rows[-1][0])
        self.shipped += sum(row[3] for row in fresh)
        self._status_sent = statuses
        self._next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        return sum(row[3] for row in rows)


def _add_blocks(conn: psycopg.Connection, lines: str) -> None:
    """Every single attempt, and the totals per (domain, entry, client), summed by the server."""
    if not lines:
        return
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS shipped_blocks (time double precision, domain text,"
        " entry text, client_ip text, sender text, recipient text, source text)"
        " ON COMMIT DELETE ROWS"
    )
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY shipped_blocks ({BLOCK_COLUMNS}) FROM STDIN") as copy,
    ):
        copy.write(lines)
    conn.execute(  # the column list is a constant of this module: S608 does not apply
        f"INSERT INTO block_attempts ({BLOCK_COLUMNS}) SELECT {BLOCK_COLUMNS}"  # noqa: S608
        " FROM shipped_blocks ORDER BY time"
    )
    conn.execute(
        "INSERT INTO block_history"
        " SELECT domain, entry, client_ip, min(time), max(time), count(*) FROM shipped_blocks"
        " GROUP BY domain, entry, client_ip"
        " ON CONFLICT (domain, entry, client_ip) DO UPDATE SET"
        " first_seen = least(block_history.first_seen, excluded.first_seen),"
        " last_seen = greatest(block_history.last_seen, excluded.last_seen),"
        " count = block_history.count + excluded.count"
    )


def _add_decisions(conn: psycopg.Connection, lines: str) -> None:
    if not lines:
        return
    with (
        conn.cursor() as cursor,
        cursor.copy(f"COPY decisions ({DECISION_COLUMNS}) FROM STDIN") as copy,
    ):
        copy.write(lines)


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


def _prune(
    conn: psycopg.Connection, limits: BlockHistory, log_limits: DecisionLog, now: float
) -> None:
    """The retention limits of the block history and the decision log: age, then rows."""
    cutoff = now - limits.retention_days * 86400
    conn.execute("DELETE FROM block_history WHERE last_seen < %s", (cutoff,))
    conn.execute(
        "DELETE FROM block_history WHERE (domain, entry, client_ip) IN ("
        " SELECT domain, entry, client_ip FROM block_history"
        " ORDER BY last_seen DESC OFFSET %s)",
        (limits.max_entries,),
    )
    _prune_log(conn, "block_attempts", cutoff, limits.max_attempts)
    _prune_log(conn, "decisions", now - log_limits.retention_hours * 3600, log_limits.max_entries)


def _prune_log(conn: psycopg.Connection, table: str, cutoff: float, keep: int) -> None:
    """An append-only log (ids in insertion order): older than *cutoff*, beyond *keep* rows."""
    if table not in LOG_TABLES:
        raise ValueError(f"{table!r} is not a log table")
    # The table name is one of LOG_TABLES, never input: S608 does not apply.
    conn.execute(f"DELETE FROM {table} WHERE time < %s", (cutoff,))  # noqa: S608
    conn.execute(
        f"DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - %s",  # noqa: S608
        (keep,),
    )


@contextlib.contextmanager
def opened(state_dir: Path) -> Iterator[Spool]:
    spool = Spool.open(state_dir)
    try:
        yield spool
    finally:
        spool.close()
