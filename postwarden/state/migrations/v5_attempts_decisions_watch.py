"""Version 5: single refused attempts, the recent-decision log, IP entries' listing time,
and the DKIM key watch's schedule.

- ``block_attempts``: one row per refused recipient (``postwarden block history``), beside
  the per-(entry, client) totals of ``block_history``.
- ``decisions``: facts and outcome of recent policy decisions, no message content
  (``postwarden what-if``).
- ``listed_entries``: since when policyd has enforced each IP list entry, so that
  ``postwarden block prune`` never calls an entry unused that was listed only yesterday.
- ``state_meta``: when recording began (``recording_since``): history older than the
  upgrade does not exist, and prune must not pretend it does.
- ``dkim_keys``: ``next_check``, ``failures`` (checks in a row that did not verify) and
  ``failing`` (since when an active key's published record is wrong; the milter then
  signs with the fallback key).
"""

import sqlite3
import time

VERSION = 5

STATEMENTS = (
    """CREATE TABLE block_attempts (
        id         INTEGER PRIMARY KEY,
        time       REAL NOT NULL,
        domain     TEXT NOT NULL,
        entry      TEXT NOT NULL,
        client_ip  TEXT NOT NULL,
        sender     TEXT NOT NULL,
        recipient  TEXT NOT NULL,
        source     TEXT NOT NULL
    )""",
    "CREATE INDEX block_attempts_time ON block_attempts (time)",
    """CREATE TABLE decisions (
        id         INTEGER PRIMARY KEY,
        time       REAL NOT NULL,
        client_ip  TEXT NOT NULL,
        sender     TEXT NOT NULL,
        recipient  TEXT NOT NULL,
        tls        INTEGER NOT NULL,
        sasl_user  TEXT NOT NULL,
        action     TEXT NOT NULL,
        rule       TEXT NOT NULL,
        domain     TEXT NOT NULL,
        entry      TEXT NOT NULL,
        digest     TEXT NOT NULL
    )""",
    "CREATE INDEX decisions_time ON decisions (time)",
    """CREATE TABLE listed_entries (
        domain     TEXT NOT NULL,
        list       TEXT NOT NULL,
        entry      TEXT NOT NULL,
        since      REAL NOT NULL,
        PRIMARY KEY (domain, list, entry)
    ) WITHOUT ROWID""",
    """CREATE TABLE state_meta (
        name       TEXT PRIMARY KEY NOT NULL,
        value      TEXT NOT NULL
    ) WITHOUT ROWID""",
    "ALTER TABLE dkim_keys ADD COLUMN next_check REAL",
    "ALTER TABLE dkim_keys ADD COLUMN failures INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE dkim_keys ADD COLUMN failing REAL",
)


def upgrade(conn: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        conn.execute(statement)
    conn.execute("INSERT INTO state_meta VALUES ('recording_since', ?)", (repr(time.time()),))
