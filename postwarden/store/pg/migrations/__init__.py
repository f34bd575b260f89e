"""Schema migrations of the PostgreSQL store, one module per version, applied in order.

Each module defines ``VERSION`` and ``STATEMENTS``; :mod:`~postwarden.store.pg.schema`
runs a migration's statements and records its version in one transaction, so a failed step
leaves the database as it was.
"""

from postwarden.store.pg.migrations import v1_initial

MIGRATIONS = (v1_initial,)
LATEST = MIGRATIONS[-1].VERSION
