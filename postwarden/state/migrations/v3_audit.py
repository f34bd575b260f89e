"""Version 3: the audit trail of settings changes (``postwarden history``), and what each
daemon last said about itself (``postwarden status``)."""

import sqlite3

VERSION = 3


def upgrade(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE audit ("
        " id      INTEGER PRIMARY KEY,"
        " time    REAL NOT NULL,"
        " user    TEXT NOT NULL,"
        " source  TEXT NOT NULL,"  # 'command' (postwarden ...) or 'file' (edited otherwise)
        " command TEXT NOT NULL,"
        " before  TEXT NOT NULL,"  # settings digests
        " after   TEXT NOT NULL,"
        " diff    TEXT NOT NULL"
        ")"
    )
    conn.execute("CREATE INDEX audit_after ON audit (after)")
    conn.execute(
        "CREATE TABLE daemon_status ("
        " name      TEXT PRIMARY KEY NOT NULL,"
        " pid       INTEGER NOT NULL,"
        " started   REAL NOT NULL,"
        " loaded    REAL NOT NULL,"  # when its settings snapshot was loaded
        " digest    TEXT NOT NULL,"  # of the settings it answers with
        " listening TEXT NOT NULL"
        ") WITHOUT ROWID"
    )
