"""Version 4: the web console's users and sessions, and the domain each audit entry changed.

``web_users`` holds Argon2id hashes only (never a password); ``failures`` and
``locked_until`` implement the login lockout. ``web_sessions`` keys a session by the SHA-256
of its cookie value, so a copy of the database does not hand out live sessions.
``audit.domain`` lets a domain administrator see the history of its own domains only.
"""

import sqlite3

VERSION = 4


def upgrade(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE web_users ("
        " name         TEXT PRIMARY KEY NOT NULL,"
        " hash         TEXT NOT NULL,"  # Argon2id, PHC string format
        " role         TEXT NOT NULL,"  # 'admin' or 'domain-admin'
        " domain       TEXT,"  # the domain of a domain administrator
        " created      REAL NOT NULL,"
        " failures     INTEGER NOT NULL DEFAULT 0,"  # wrong passwords in a row
        " locked_until REAL NOT NULL DEFAULT 0,"
        " last_login   REAL"
        ") WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE web_sessions ("
        " id_hash   TEXT PRIMARY KEY NOT NULL,"  # sha256 of the cookie value
        " user      TEXT NOT NULL REFERENCES web_users (name) ON DELETE CASCADE,"
        " csrf      TEXT NOT NULL,"
        " created   REAL NOT NULL,"
        " last_seen REAL NOT NULL"
        ") WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX web_sessions_user ON web_sessions (user)")
    conn.execute("ALTER TABLE audit ADD COLUMN domain TEXT")
