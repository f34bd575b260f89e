"""Version 1: block history and DKIM key status."""

import sqlite3

VERSION = 1

STATEMENTS = (
    # One row per (governing domain, list entry, client address) that caused a block.
    """CREATE TABLE block_history (
        domain     TEXT    NOT NULL,
        entry      TEXT    NOT NULL,
        client_ip  TEXT    NOT NULL,
        first_seen REAL    NOT NULL,
        last_seen  REAL    NOT NULL,
        count      INTEGER NOT NULL,
        PRIMARY KEY (domain, entry, client_ip)
    ) WITHOUT ROWID""",
    "CREATE INDEX block_history_recent ON block_history (last_seen)",
    # DKIM keys known per domain; the key material itself is a 0600 file, never stored here.
    """CREATE TABLE dkim_keys (
        domain      TEXT    NOT NULL,
        selector    TEXT    NOT NULL,
        algorithm   TEXT    NOT NULL,
        bits        INTEGER,
        created     REAL    NOT NULL,
        status      TEXT    NOT NULL,
        verified    REAL,
        last_check  REAL,
        last_result TEXT,
        PRIMARY KEY (domain, selector)
    )""",
)


def upgrade(conn: sqlite3.Connection) -> None:
    for statement in STATEMENTS:
        conn.execute(statement)
