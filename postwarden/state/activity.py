"""What the daemons saw, as the admin tools read it: refused attempts, recent decisions,
and since when each IP list entry has been enforced.

Description:
    Three append-mostly tables of the state database (migration v5):

    ``block_attempts``  one row per refused recipient: time, governing domain, list entry,
                        client, sender, recipient, and which daemon refused it. Written with
                        the block totals (:meth:`StateDB.record_blocks`); bounded by
                        ``block_history.retention_days`` and ``block_history.max_attempts``.
    ``decisions``       every RCPT decision policyd made: the facts the decision module reads
                        (client, sender, recipient, TLS, SASL login) and the outcome (action,
                        rule, governing domain, entry), plus the settings version in force.
                        No message content. Bounded by ``decision_log.*``.
    ``listed_entries``  since when policyd has enforced each entry of each IP list (it notes
                        the lists whenever it loads settings); an entry that leaves a list and
                        comes back starts again.

    Writes come from the daemons' state writer thread
    (:mod:`postwarden.state.writer`), never from a request path; reads from the CLI.

Errors:
    ``sqlite3.Error`` for database trouble.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from postwarden.settings.model import Settings
from postwarden.state.db import StateDB, prune_log, transaction

LISTS = ("allowed_ips", "blocked_ips")


@dataclass(frozen=True)
class Attempt:
    """One refused recipient."""

    time: float
    domain: str
    entry: str
    client_ip: str
    sender: str
    recipient: str
    source: str


@dataclass(frozen=True)
class DecisionRecord:
    """One policy decision as policyd made it: the facts and the outcome."""

    time: float
    client_ip: str
    sender: str
    recipient: str
    tls: bool
    sasl_user: str
    action: str
    rule: str
    domain: str
    entry: str
    digest: str  # the settings version in force (a prefix of its SHA-256)

    def row(self) -> tuple[float, str, str, str, int, str, str, str, str, str, str]:
        """The columns of ``decisions`` (after ``id``), in order."""
        return (
            self.time,
            self.client_ip,
            self.sender,
            self.recipient,
            int(self.tls),
            self.sasl_user,
            self.action,
            self.rule,
            self.domain,
            self.entry,
            self.digest,
        )


@dataclass(frozen=True)
class ListedEntries:
    """Every (governing domain, list, entry) of one settings version."""

    entries: frozenset[tuple[str, str, str]]
    when: float

    @classmethod
    def of(cls, settings: Settings, when: float) -> ListedEntries:
        return cls(
            frozenset(
                (domain, name, entry.text)
                for domain, block in settings.domains.items()
                if block is not None
                for name in LISTS
                for entry in getattr(block, name)
            ),
            when,
        )


def attempts(
    db: StateDB,
    *,
    since: float,
    client: str | None = None,
    domain: str | None = None,
    limit: int = 100,
) -> list[Attempt]:
    """Refused attempts after *since*, newest first."""
    rows = db.conn.execute(
        "SELECT time, domain, entry, client_ip, sender, recipient, source FROM block_attempts"
        " WHERE time >= ? AND (? IS NULL OR client_ip = ?) AND (? IS NULL OR domain = ?)"
        " ORDER BY time DESC, id DESC LIMIT ?",
        (since, client, client, domain, domain, limit),
    )
    return [Attempt(*row) for row in rows]


def record_decisions(db: StateDB, records: Iterable[DecisionRecord]) -> None:
    rows = [r.row() for r in records]
    if rows:
        with transaction(db.conn):
            db.conn.executemany(
                "INSERT INTO decisions (time, client_ip, sender, recipient, tls, sasl_user,"
                " action, rule, domain, entry, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )


def decisions(db: StateDB, *, since: float, batch: int = 5000) -> Iterator[DecisionRecord]:
    """Recorded decisions after *since*, oldest first, read in batches (no full load)."""
    last_id = 0
    while True:
        rows = db.conn.execute(
            "SELECT id, time, client_ip, sender, recipient, tls, sasl_user, action, rule,"
            " domain, entry, digest FROM decisions WHERE time >= ? AND id > ?"
            " ORDER BY id LIMIT ?",
            (since, last_id, batch),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield DecisionRecord(row[1], row[2], row[3], row[4], bool(row[5]), *row[6:])
        last_id = rows[-1][0]


def prune_decisions(db: StateDB, *, cutoff: float, keep: int) -> int:
    with transaction(db.conn):
        return prune_log(db.conn, "decisions", cutoff, keep)


def note_listed(db: StateDB, listed: ListedEntries) -> None:
    """Remember since when each entry is listed; forget entries no longer listed."""
    with transaction(db.conn):
        known = {
            tuple(row) for row in db.conn.execute("SELECT domain, list, entry FROM listed_entries")
        }
        gone = known - listed.entries
        db.conn.executemany(
            "DELETE FROM listed_entries WHERE domain = ? AND list = ? AND entry = ?", gone
        )
        db.conn.executemany(
            "INSERT INTO listed_entries VALUES (?, ?, ?, ?)",
            ((*entry, listed.when) for entry in listed.entries - known),
        )


def listed_since(db: StateDB, domain: str, list_name: str) -> dict[str, float]:
    rows = db.conn.execute(
        "SELECT entry, since FROM listed_entries WHERE domain = ? AND list = ?",
        (domain, list_name),
    )
    return dict(rows.fetchall())


def recording_since(db: StateDB) -> float:
    """When this database began recording (the upgrade to v5 or its creation)."""
    row = db.conn.execute("SELECT value FROM state_meta WHERE name = 'recording_since'").fetchone()
    return float(row[0])
