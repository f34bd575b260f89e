"""Version 2: recipients Postfix did not know, accepted because a route takes them.

policyd records them when Postfix's recipient validation asks its ``rcptok`` table (Postfix
asks only after its own tables said no); the milter reads them to tell known from unknown
recipients for "keep a local copy".
"""

import sqlite3

VERSION = 2


def upgrade(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE unknown_recipients ("
        " address TEXT PRIMARY KEY NOT NULL,"
        " seen    REAL NOT NULL"
        ") WITHOUT ROWID"
    )
