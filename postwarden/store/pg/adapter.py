"""The shared state queries on a PostgreSQL connection.

Description:
    The service layer and the audit trail write their queries once, in the SQL SQLite and
    PostgreSQL both speak, with ``?`` placeholders, against
    :class:`~postwarden.state.db.StateDB`. :class:`PgConnection` runs them on psycopg: ``?``
    becomes ``%s`` (a literal ``%`` is doubled), SQLite's ``BEGIN IMMEDIATE`` a plain
    ``BEGIN`` (the connection is in autocommit mode, so transactions are explicit, as on
    SQLite), a ``numeric`` result an int or float as SQLite returns, and psycopg's errors
    become the state layer's (:class:`~postwarden.state.db.Duplicate` for a unique key,
    :class:`~postwarden.store.base.StoreUnavailable` for a lost connection).

    Translations are cached per statement text; the statements are the program's own.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg.errors

from postwarden.state.db import Duplicate, StateDB
from postwarden.store.pg.connect import Target, state_error


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """SQLite's dialect of the shared queries to PostgreSQL's (see the module description)."""
    if sql.strip().upper() == "BEGIN IMMEDIATE":
        return "BEGIN"
    out: list[str] = []
    quoted = False
    for char in sql:
        if char == "'":
            quoted = not quoted
        if char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def _plain(value: Any) -> Any:
    """A ``numeric`` (what ``sum()`` of a bigint is) as SQLite would give it: int or float."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Rows:
    """The result of one statement, as sqlite3's cursor offers it."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class PgConnection:
    """A psycopg connection that runs the shared queries (see the module description)."""

    def __init__(self, conn: psycopg.Connection, target: Target) -> None:
        # Parameters bound on the client, as SQLite binds them: ``? IS NULL`` with None is
        # then NULL IS NULL, where a server-side parameter of no type would be refused.
        conn.cursor_factory = psycopg.ClientCursor
        self.raw = conn
        self.target = target

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows:
        try:
            cursor = self.raw.execute(translate(sql), tuple(parameters) or None)
            rows = cursor.fetchall() if cursor.description is not None else []
            return Rows([tuple(map(_plain, row)) for row in rows], cursor.rowcount)
        except psycopg.errors.UniqueViolation as exc:
            raise Duplicate(str(exc).splitlines()[0]) from None
        except psycopg.Error as exc:
            raise state_error(self.target, exc) from None

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> Rows:
        try:
            with self.raw.cursor() as cursor:
                cursor.executemany(translate(sql), [tuple(p) for p in parameters])
                return Rows([], cursor.rowcount)
        except psycopg.errors.UniqueViolation as exc:
            raise Duplicate(str(exc).splitlines()[0]) from None
        except psycopg.Error as exc:
            raise state_error(self.target, exc) from None

    def close(self) -> None:
        self.raw.close()


class PgStateDB(StateDB):
    """The shared state in the store's database (block history, keys, audit, web users)."""

    conn: PgConnection
