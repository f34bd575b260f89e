"""State-database migrations, one module per ``PRAGMA user_version``, applied in order.

Each module defines ``VERSION`` (the user_version it produces) and ``upgrade(conn)``, which
runs inside the transaction that also sets the new version, so a failed step leaves the
database as it was.
"""

from postwarden.state.migrations import (
    v1_initial,
    v2_unknown_recipients,
    v3_audit,
    v4_web_console,
    v5_attempts_decisions_watch,
)

MIGRATIONS = (
    v1_initial,
    v2_unknown_recipients,
    v3_audit,
    v4_web_console,
    v5_attempts_decisions_watch,
)
LATEST = MIGRATIONS[-1].VERSION
