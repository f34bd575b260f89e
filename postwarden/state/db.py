"""The state database: what the daemons learn at run time (block history, DKIM key status).

Description:
    SQLite in WAL mode (readers never wait for the writer), one file ``state.db`` in the state
    directory, schema versioned by ``PRAGMA user_version`` and upgraded on open by the
    migrations in :mod:`postwarden.state.migrations`, each in its own transaction.

    Block history has one row per (governing domain, list entry, client address) with first
    and last time and a count, so a flood from one address is one row, not a million; each
    single refused attempt (sender, recipient) is also kept, in a bounded log of its own
    (``block_attempts``, read by :mod:`postwarden.state.activity`).
    :meth:`StateDB.prune` applies the retention limits (age, then row count).

    Shared queries (the service layer's, the audit trail's) are written in the SQL that
    SQLite and PostgreSQL both speak, with ``?`` placeholders; a PostgreSQL store hands out
    a :class:`StateDB` whose ``conn`` translates them (:mod:`postwarden.store.pg.adapter`).

Errors:
    :class:`StateTooNew` when the database was written by a newer postwarden;
    ``sqlite3.Error`` for I/O problems (the daemons log them and keep answering);
    :class:`StateError` (:class:`Duplicate` for a key that exists) from a database server.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from postwarden.errors import PostwardenError
from postwarden.state.migrations import LATEST, MIGRATIONS

FILENAME = "state.db"


class StateTooNew(PostwardenError):
    """The state database was written by a newer postwarden."""


class StateError(PostwardenError):
    """The state database failed (a database server's error, in words)."""


class Duplicate(StateError):
    """A row with this key exists already."""


# What a caller that keeps going after a failed state write catches, whatever the backend.
STATE_ERRORS = (sqlite3.Error, StateError)


class Connection(Protocol):
    """What shared queries use of a connection: sqlite3's, or a server's behind an adapter."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class BlockEvent:
    """One rejected recipient: which domain's list, which entry, which client, when.

    *sender* and *recipient* go only into the single-attempt history (``block_attempts``);
    *source* says which daemon refused: ``policyd`` at RCPT, ``milter`` for gateway mail.
    """

    domain: str
    entry: str
    client_ip: str
    when: float
    sender: str = ""
    recipient: str = ""
    source: str = "policyd"


@dataclass(frozen=True)
class EntryActivity:
    """How recently and how often one list entry blocked something."""

    entry: str
    last_seen: float
    count: int
    clients: int


class StateDB:
    """A connection to the state database."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @classmethod
    def open(cls, state_dir: Path, *, handed_over: bool = False) -> StateDB:
        """Open (creating and upgrading as needed) ``state.db`` in *state_dir*.

        *handed_over*: the connection is opened in one thread and then used by another
        (never by two at once), which sqlite3 refuses unless told.
        """
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        return cls(open_sqlite(state_dir / FILENAME, _migrate, handed_over=handed_over))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record_blocks(self, events: Iterable[BlockEvent]) -> None:
        """Add a batch of blocks in one transaction: the totals and each single attempt."""
        events = list(events)
        if not events:
            return
        with transaction(self.conn):
            self.conn.executemany(
                "INSERT INTO block_history VALUES (?, ?, ?, ?, ?, 1)"
                " ON CONFLICT (domain, entry, client_ip) DO UPDATE SET"
                " last_seen = max(last_seen, excluded.last_seen), count = count + 1",
                [(e.domain, e.entry, e.client_ip, e.when, e.when) for e in events],
            )
            self.conn.executemany(
                "INSERT INTO block_attempts"
                " (time, domain, entry, client_ip, sender, recipient, source)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (e.when, e.domain, e.entry, e.client_ip, e.sender, e.recipient, e.source)
                    for e in events
                ],
            )

    def record_unknown(self, notes: Iterable[tuple[str, float]]) -> None:
        """Note recipients (address, when) Postfix did not know but accepted for a route."""
        rows = [(address.lower(), when) for address, when in notes]
        if rows:
            with transaction(self.conn):
                self.conn.executemany(
                    "INSERT INTO unknown_recipients VALUES (?, ?) ON CONFLICT (address)"
                    " DO UPDATE SET seen = excluded.seen",
                    rows,
                )

    def is_unknown(self, address: str, *, since: float) -> bool:
        """Whether *address* was noted unknown after *since*."""
        row = self.conn.execute(
            "SELECT 1 FROM unknown_recipients WHERE address = ? AND seen >= ?",
            (address.lower(), since),
        ).fetchone()
        return row is not None

    def prune(
        self,
        *,
        retention_days: int,
        max_entries: int,
        max_attempts: int = 100_000,
        now: float | None = None,
    ) -> int:
        """Forget blocks older than the retention time, then the oldest beyond the limits.

        *max_entries* bounds the (entry, client) totals, *max_attempts* the single attempts;
        the count of totals rows removed is returned. Unknown-recipient notes are kept a
        day: they only have to outlive one transaction.
        """
        now = now if now is not None else time.time()
        cutoff = now - retention_days * 86400
        with transaction(self.conn):
            self.conn.execute("DELETE FROM unknown_recipients WHERE seen < ?", (now - 86400,))
            removed = self.conn.execute(
                "DELETE FROM block_history WHERE last_seen < ?", (cutoff,)
            ).rowcount
            removed += self.conn.execute(
                "DELETE FROM block_history WHERE (domain, entry, client_ip) IN ("
                " SELECT domain, entry, client_ip FROM block_history"
                " ORDER BY last_seen DESC LIMIT -1 OFFSET ?)",
                (max_entries,),
            ).rowcount
            prune_log(self.conn, "block_attempts", cutoff, max_attempts)
        return removed

    def entry_activity(self, domain: str) -> dict[str, EntryActivity]:
        """Per list entry of *domain*: last block, total count, distinct clients."""
        rows = self.conn.execute(
            "SELECT entry, max(last_seen), sum(count), count(*) FROM block_history"
            " WHERE domain = ? GROUP BY entry",
            (domain,),
        )
        return {row[0]: EntryActivity(*row) for row in rows}

    def recent_blocks(self, domain: str, limit: int = 100) -> list[tuple[str, str, float, int]]:
        """The latest blocks of *domain*: (entry, client, last seen, count), newest first."""
        return self.conn.execute(
            "SELECT entry, client_ip, last_seen, count FROM block_history WHERE domain = ?"
            " ORDER BY last_seen DESC LIMIT ?",
            (domain, limit),
        ).fetchall()


LOG_TABLES = frozenset({"block_attempts", "decisions"})


def prune_log(conn: Connection, table: str, cutoff: float, keep: int) -> int:
    """Delete rows of an append-only log table older than *cutoff*, then beyond *keep* rows.

    The tables have an ``id`` in insertion order and an index on ``time``, so both deletes
    are range deletes, never a sort of the whole table.
    """
    if table not in LOG_TABLES:
        raise ValueError(f"{table!r} is not a log table")
    # The table name is one of LOG_TABLES, never input: S608 does not apply.
    removed = conn.execute(f"DELETE FROM {table} WHERE time < ?", (cutoff,)).rowcount  # noqa: S608
    newest = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0]  # noqa: S608
    if newest is not None:
        removed += conn.execute(
            f"DELETE FROM {table} WHERE id <= ?",  # noqa: S608
            (newest - keep,),
        ).rowcount
    return removed


def open_sqlite(
    path: Path, prepare: Callable[[sqlite3.Connection], None], *, handed_over: bool = False
) -> sqlite3.Connection:
    """An autocommit connection in WAL mode (readers never wait for the writer), *prepare*d.

    *handed_over*: opened in one thread, then used by another (never by two at once).
    """
    conn = sqlite3.connect(
        path, timeout=5.0, isolation_level=None, check_same_thread=not handed_over
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        prepare(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``/``ROLLBACK`` on an autocommit connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > LATEST:
        raise StateTooNew(
            f"the state database is version {version}; this postwarden knows up to {LATEST}"
        )
    for migration in (m for m in MIGRATIONS if version < m.VERSION):
        with transaction(conn):
            # Re-read under the write lock: another process may have migrated meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] >= migration.VERSION:
                continue
            migration.upgrade(conn)
            conn.execute(f"PRAGMA user_version = {int(migration.VERSION)}")
