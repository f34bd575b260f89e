"""DKIM key status in the state database, and what the milter signs with.

Description:
    One row per (domain, selector) in the table ``dkim_keys`` (migration v1): algorithm,
    bits, created, status, verified, last_check, last_result. The key itself is a file
    (:mod:`postwarden.dkim.keys`), never stored in the database.

    Statuses: ``pending`` (created or imported, not yet found in DNS), ``active`` (the key
    the milter signs with; at most one per domain — unless the key watch,
    :mod:`postwarden.dkim.watch`, found its published record missing, different or revoked:
    then ``failing`` holds since when, and the domain is signed with the fallback key until
    the record verifies again), ``retired`` (was active, replaced by a
    newer key; kept until deleted). Creating a key for a domain that already signs changes
    nothing for signing: the new key is pending. When its record verifies,
    :meth:`DkimKeys.activate` makes it active and retires the previous active key, in one
    transaction, so a reader sees either the old or the new key, never none or two.

    For the milter: :func:`signing_keys` lists the active keys (domain, selector,
    algorithm, file). :class:`ChangeProbe` tells cheaply whether that list may have changed:

        probe = ChangeProbe(StateDB.open(state_dir), state_dir)  # a long-lived connection
        keys = probe.current()          # at start: load these key files
        ...
        if probe.changed():             # e.g. once a second, or per message
            keys = probe.current()      # then load the new key files (once each)

    ``changed()`` costs one ``PRAGMA data_version`` (no table read; about 3 us measured)
    while no other connection has committed anything. After any commit to the database (a
    block recorded, a key verified) it re-reads the active-key rows (a scan of the small key
    table; about 160 us with 300 active keys) and reports True only if they differ from what
    :meth:`ChangeProbe.current` last returned; it stays True until ``current()`` is called.
    SQLite's ``data_version`` moves only for commits made by *other* connections, so the
    probe's connection must not be used for writing.

Errors:
    :class:`SelectorExists`, :class:`UnknownSelector`, :class:`ActiveKeyInUse`;
    ``sqlite3.Error`` for database trouble.
"""

from __future__ import annotations

import dataclasses
import enum
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from postwarden.dkim.keys import Algorithm, key_path
from postwarden.errors import PostwardenError
from postwarden.state.db import Connection, Duplicate, StateDB, transaction

_SELECT = (
    "SELECT domain, selector, algorithm, bits, created, status, verified, last_check, last_result,"
    " next_check, failures, failing FROM dkim_keys"
)


class SelectorExists(PostwardenError):
    """The domain has a key with this selector already."""


class UnknownSelector(PostwardenError):
    """The domain has no key with this selector."""


class ActiveKeyInUse(PostwardenError):
    """The active key cannot be deleted while it signs mail."""


class Status(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class KeyRow:
    """One key's state."""

    domain: str
    selector: str
    algorithm: Algorithm
    bits: int | None
    created: float
    status: Status
    verified: float | None = None
    last_check: float | None = None
    last_result: str | None = None
    next_check: float | None = None  # when the key watch checks it next
    failures: int = 0  # checks in a row that did not verify
    failing: float | None = None  # active, but since then its published record is wrong

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> KeyRow:
        domain, selector, algorithm, bits, created, status, verified, check, result = row[:9]
        next_check, failures, failing = row[9:12]
        return cls(
            str(domain),
            str(selector),
            Algorithm(str(algorithm)),
            bits if isinstance(bits, int) else None,
            float(created),  # type: ignore[arg-type]
            Status(str(status)),
            verified,  # type: ignore[arg-type]
            check,  # type: ignore[arg-type]
            result,  # type: ignore[arg-type]
            next_check,  # type: ignore[arg-type]
            int(failures or 0),  # type: ignore[call-overload]
            failing,  # type: ignore[arg-type]
        )

    @property
    def signs(self) -> bool:
        """Whether the milter signs with this key: active, and its record is not wrong."""
        return self.status is Status.ACTIVE and self.failing is None


@dataclass(frozen=True)
class SigningKey:
    """An active key as the milter needs it."""

    domain: str
    selector: str
    algorithm: Algorithm
    path: Path


class DkimKeys:
    """The ``dkim_keys`` table over an open state database."""

    def __init__(self, db: StateDB) -> None:
        self.conn = db.conn

    def add(
        self,
        domain: str,
        selector: str,
        algorithm: Algorithm,
        bits: int | None,
        *,
        now: float | None = None,
    ) -> KeyRow:
        """A new pending key. :raises SelectorExists: if the selector is taken."""
        row = KeyRow(domain, selector, algorithm, bits, _now(now), Status.PENDING)
        try:
            with transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO dkim_keys (domain, selector, algorithm, bits, created, status)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (domain, selector, algorithm.value, bits, row.created, row.status.value),
                )
        except (sqlite3.IntegrityError, Duplicate):
            raise SelectorExists(f"{domain} has a key with selector {selector!r} already") from None
        return row

    def get(self, domain: str, selector: str) -> KeyRow | None:
        found = self.conn.execute(
            _SELECT + " WHERE domain = ? AND selector = ?",
            (domain, selector),
        ).fetchone()
        return KeyRow.from_row(found) if found else None

    def require(self, domain: str, selector: str) -> KeyRow:
        row = self.get(domain, selector)
        if row is None:
            raise UnknownSelector(f"{domain} has no DKIM key with selector {selector!r}")
        return row

    def for_domain(self, domain: str) -> list[KeyRow]:
        """The keys of *domain*, newest first."""
        rows = self.conn.execute(
            _SELECT + " WHERE domain = ? ORDER BY created DESC, selector",
            (domain,),
        )
        return [KeyRow.from_row(r) for r in rows]

    def active(self, domain: str) -> KeyRow | None:
        return next((k for k in self.for_domain(domain) if k.status is Status.ACTIVE), None)

    def newest_pending(self, domain: str) -> KeyRow | None:
        return next((k for k in self.for_domain(domain) if k.status is Status.PENDING), None)

    def record_check(
        self, domain: str, selector: str, result: str, *, now: float | None = None
    ) -> KeyRow:
        """Note a DNS check that did not verify the key; its status stays as it was."""
        with transaction(self.conn):
            self._update_check(domain, selector, result, _now(now))
        return self.require(domain, selector)

    def activate(
        self, domain: str, selector: str, result: str, *, now: float | None = None
    ) -> KeyRow | None:
        """Mark *selector* verified and active; retire the domain's previous active key.

        Returns the retired key's row, or None when there was none (or it was this one).
        """
        when = _now(now)
        with transaction(self.conn):
            self._update_check(domain, selector, result, when)
            previous = self.conn.execute(
                _SELECT + " WHERE domain = ? AND status = 'active' AND selector != ?",
                (domain, selector),
            ).fetchall()
            self.conn.execute(
                "UPDATE dkim_keys SET status = 'retired'"
                " WHERE domain = ? AND status = 'active' AND selector != ?",
                (domain, selector),
            )
            self.conn.execute(
                "UPDATE dkim_keys SET status = 'active', verified = ?, failing = NULL,"
                " failures = 0, next_check = NULL WHERE domain = ? AND selector = ?",
                (when, domain, selector),
            )
        if not previous:
            return None
        return dataclasses.replace(KeyRow.from_row(previous[0]), status=Status.RETIRED)

    def watched(self) -> list[KeyRow]:
        """The pending and active keys of every domain (what the key watch looks after)."""
        rows = self.conn.execute(_SELECT + " WHERE status IN ('pending', 'active')")
        return [KeyRow.from_row(r) for r in rows]

    def note_watch(
        self,
        domain: str,
        selector: str,
        result: str,
        *,
        next_check: float,
        failures: int,
        failing: float | None,
        now: float | None = None,
    ) -> None:
        """Keep a key watch check: its result, the next check, and the failing state."""
        with transaction(self.conn):
            self._update_check(domain, selector, result, _now(now))
            self.conn.execute(
                "UPDATE dkim_keys SET next_check = ?, failures = ?, failing = ?"
                " WHERE domain = ? AND selector = ?",
                (next_check, failures, failing, domain, selector),
            )

    def delete(self, domain: str, selector: str) -> KeyRow:
        """Forget a pending or retired key. :raises ActiveKeyInUse: for the active one."""
        with transaction(self.conn):
            row = self.require(domain, selector)
            if row.status is Status.ACTIVE:
                raise ActiveKeyInUse(
                    f"{selector!r} is the active key of {domain}; verify another selector first"
                )
            self.conn.execute(
                "DELETE FROM dkim_keys WHERE domain = ? AND selector = ?", (domain, selector)
            )
        return row

    def _update_check(self, domain: str, selector: str, result: str, when: float) -> None:
        changed = self.conn.execute(
            "UPDATE dkim_keys SET last_check = ?, last_result = ?"
            " WHERE domain = ? AND selector = ?",
            (when, result, domain, selector),
        ).rowcount
        if not changed:
            raise UnknownSelector(f"{domain} has no DKIM key with selector {selector!r}")


def signing_keys(db: StateDB, state_dir: Path) -> list[SigningKey]:
    """The active key of every domain that has one, sorted by domain."""
    return [
        SigningKey(domain, selector, Algorithm(algorithm), key_path(state_dir, domain, selector))
        for domain, selector, algorithm, _created in _active_rows(db.conn)
    ]


class ChangeProbe:
    """Tells cheaply whether the set of active keys changed (see the module docstring)."""

    def __init__(self, db: StateDB, state_dir: Path) -> None:
        self.db = db
        self.state_dir = state_dir
        self._version: int | None = None
        self._rows: list[tuple[str, str, str, float]] | None = None

    def current(self) -> list[SigningKey]:
        """The active keys now; later :meth:`changed` calls compare against these."""
        self._version = self._data_version()
        self._rows = _active_rows(self.db.conn)
        return [
            SigningKey(d, s, Algorithm(a), key_path(self.state_dir, d, s))
            for d, s, a, _created in self._rows
        ]

    def changed(self) -> bool:
        """True if the active keys differ from what :meth:`current` last returned.

        Stays True until :meth:`current` is called.
        """
        version = self._data_version()
        if version == self._version:
            return False
        if _active_rows(self.db.conn) != self._rows:
            return True
        self._version = version
        return False

    def _data_version(self) -> int:
        return int(self.db.conn.execute("PRAGMA data_version").fetchone()[0])


def _active_rows(conn: Connection) -> list[tuple[str, str, str, float]]:
    """(domain, selector, algorithm, created) of the keys that sign, by domain.

    An active key whose published record the key watch found wrong (``failing``) does not
    sign: the milter falls back to the primary domain's key rather than make signatures
    that fail. ``created`` tells a key deleted and made again under the same selector from
    the old one.
    """
    return [
        (str(d), str(s), str(a), float(c))
        for d, s, a, c in conn.execute(
            "SELECT domain, selector, algorithm, created FROM dkim_keys"
            " WHERE status = 'active' AND failing IS NULL ORDER BY domain, selector"
        )
    ]


def _now(now: float | None) -> float:
    return time.time() if now is None else now
