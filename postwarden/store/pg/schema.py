"""The PostgreSQL store's schema: its version, and upgrading it (``postwarden store init``).

Description:
    The table ``postwarden_schema`` holds the schema version. :func:`upgrade` applies the
    missing migrations (:mod:`~postwarden.store.pg.migrations`), each with its version in one
    transaction, under an advisory lock so two nodes initialising at once do not collide.
    Commands and daemons only check the version (:func:`require_current`): upgrading is an
    administrator's deliberate step.

Errors:
    :class:`SchemaMissing` (run ``postwarden store init``), :class:`SchemaTooNew`.

Security:
    The migrations run as the role that connects (postwarden's own, which then owns every
    table); the private-key table is revoked from PUBLIC.
"""

from __future__ import annotations

import psycopg

from postwarden.errors import PostwardenError
from postwarden.store.pg.migrations import LATEST, MIGRATIONS

LOCK_KEY = 0x706F7374  # "post": the advisory lock of schema upgrades


class SchemaMissing(PostwardenError):
    """The database has no postwarden schema (run `postwarden store init URL`)."""


class SchemaTooNew(PostwardenError):
    """The database was upgraded by a newer postwarden."""


def version(conn: psycopg.Connection) -> int:
    """The schema version; 0 when there is no postwarden schema."""
    found = conn.execute("SELECT to_regclass('postwarden_schema') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM postwarden_schema").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def require_current(conn: psycopg.Connection, shown: str) -> None:
    """Refuse a database without the schema, or with a newer one."""
    found = version(conn)
    if found == 0:
        raise SchemaMissing(
            f"{shown} has no postwarden tables: run `postwarden store init {shown}` first"
        )
    if found > LATEST:
        raise SchemaTooNew(f"{shown} is at schema version {found}; this postwarden knows {LATEST}")
    if found < LATEST:
        raise SchemaMissing(
            f"{shown} is at schema version {found}, this postwarden needs {LATEST}:"
            f" run `postwarden store init {shown}` to upgrade it"
        )


def upgrade(conn: psycopg.Connection) -> list[int]:
    """Apply the missing migrations; the versions applied (none: it was current)."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS postwarden_schema (version integer NOT NULL)")
        current = version(conn)
        if current > LATEST:
            raise SchemaTooNew(f"the database is at schema version {current}; this knows {LATEST}")
        for migration in MIGRATIONS:
            if current >= migration.VERSION:
                continue
            for statement in migration.STATEMENTS:
                conn.execute(statement)
            conn.execute("INSERT INTO postwarden_schema VALUES (%s)", (migration.VERSION,))
            applied.append(migration.VERSION)
    return applied
