"""The settings document in PostgreSQL: versioned rows, optimistic edits, the audit with them.

Description:
    Each version of the document is a row of ``settings_versions``: its canonical text (as
    :func:`~postwarden.settings.load.dump` writes it and every node loads it, so the digest
    is the same everywhere) and digest. An edit reads the newest version N, applies the
    change outside any transaction, validates the result, and inserts version N+1 together
    with its audit entry in one transaction. When another edit (from any node) inserted
    N+1 first, the key collides, nothing is written, and the change is applied again to
    the newer settings — both edits land, neither is lost, and a change that no longer
    applies (an entry deleted meanwhile) is refused like any other. The insert announces
    the new version to every node (``NOTIFY``, by trigger). The newest
    :data:`KEEP_VERSIONS` versions are kept; the audit trail keeps every diff.

Errors:
    :class:`~postwarden.settings.store.SettingsNotFound`,
    :class:`~postwarden.settings.store.SettingsExist`,
    :class:`~postwarden.settings.load.SettingsInvalid`, :class:`EditContention` (the
    change lost :data:`MAX_TRIES` races in a row).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace

import psycopg
import psycopg.errors

from postwarden.settings.load import Loaded, SettingsInvalid, dump, load_text
from postwarden.settings.model import Settings
from postwarden.settings.store import EditResult, SettingsExist, SettingsNotFound
from postwarden.state import audit
from postwarden.state.activity import ListedEntries
from postwarden.state.db import StateError
from postwarden.store.base import AuditNote, Change, Edited
from postwarden.store.pg.connect import Target

MAX_TRIES = 30
KEEP_VERSIONS = 1000


class EditContention(StateError):
    """Other edits kept landing first; nothing was changed (try again)."""


def latest(conn: psycopg.Connection) -> tuple[int, str] | None:
    """The newest version's number and text; None when there is no document yet."""
    row = conn.execute(
        "SELECT version, text FROM settings_versions ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def source_name(target: Target, version: int) -> str:
    return f"{target.shown} (version {version})"


def read(conn: psycopg.Connection, target: Target) -> tuple[int, Loaded]:
    """The newest version, validated."""
    found = latest(conn)
    if found is None:
        raise SettingsNotFound(
            f"{target.shown} holds no settings yet (create them with `postwarden init DOMAIN`"
            " or `postwarden store import FILE`)"
        )
    version, text = found
    return version, load_text(text, source_name(target, version))


def create(conn: psycopg.Connection, target: Target, settings: Settings, note: AuditNote) -> Loaded:
    """Version 1. :raises SettingsExist: when the database holds settings already."""
    text = dump(settings)
    loaded = load_text(text, source_name(target, 1))
    try:
        _insert(conn, 1, loaded, text, note, "", audit.text_diff("", text))
    except psycopg.errors.UniqueViolation:
        raise SettingsExist(
            f"{target.shown} holds settings already; they are never overwritten"
        ) from None
    return loaded


def edit(
    conn: psycopg.Connection,
    target: Target,
    change: Change,
    note: Callable[[], AuditNote],
    *,
    dry_run: bool = False,
) -> Edited:
    """Apply *change* to the newest version (see the module description)."""
    for attempt in range(MAX_TRIES):
        version, current = read(conn, target)
        new_settings = change(current.settings)
        text = dump(new_settings)
        try:
            loaded = load_text(text, source_name(target, version + 1))
        except SettingsInvalid as exc:
            # Line numbers of a text that is never stored would mean nothing.
            raise SettingsInvalid([replace(f, line=0) for f in exc.findings]) from None
        if loaded.digest == current.digest:
            return Edited(EditResult(current, loaded, changed=False))
        if dry_run:
            return Edited(EditResult(current, loaded, changed=True))
        diff = audit.text_diff(dump(current.settings), text)
        try:
            _insert(conn, version + 1, loaded, text, note(), current.digest, diff)
        except psycopg.errors.UniqueViolation:
            # Another edit landed first: a moment's random back-off, then again.
            time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # noqa: S311
            continue
        return Edited(EditResult(current, loaded, changed=True))
    raise EditContention(
        f"{target.shown}: {MAX_TRIES} other edits landed first; nothing was changed, try again"
    )


def _insert(
    conn: psycopg.Connection,
    version: int,
    loaded: Loaded,
    text: str,
    note: AuditNote,
    before: str,
    diff: str,
) -> None:
    now, digest = time.time(), loaded.digest
    with conn.transaction():
        conn.execute(
            "INSERT INTO settings_versions (version, text, digest, created)"
            " VALUES (%s, %s, %s, %s)",
            (version, text, digest, now),
        )
        conn.execute(
            'INSERT INTO audit (time, "user", source, command, before, after, diff, domain,'
            " version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (now, note.user, note.source, note.command, before, digest, diff, note.domain, version),
        )
        conn.execute(
            "DELETE FROM settings_versions WHERE version <= %s", (version - KEEP_VERSIONS,)
        )
        _note_listed(conn, ListedEntries.of(loaded.settings, now))


def _note_listed(conn: psycopg.Connection, listed: ListedEntries) -> None:
    """Since when each IP list entry is listed (``block prune``); entries gone are forgotten.

    As :func:`postwarden.state.activity.note_listed` on one host, but kept by the edit that
    lists them: the nodes apply it within seconds.
    """
    known = {
        (str(d), str(n), str(e))
        for d, n, e in conn.execute("SELECT domain, list, entry FROM listed_entries")
    }
    with conn.cursor() as cursor:
        cursor.executemany(
            "DELETE FROM listed_entries WHERE domain = %s AND list = %s AND entry = %s",
            list(known - listed.entries),
        )
        cursor.executemany(
            "INSERT INTO listed_entries VALUES (%s, %s, %s, %s)",
            [(*entry, listed.when) for entry in listed.entries - known],
        )
