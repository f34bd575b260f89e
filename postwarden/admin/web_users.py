"""Users of the web console: server administrators and domain administrators.

Description:
    ``admin`` sees and changes everything; ``domain-admin`` sees and changes one hosted domain
    and its subdomains only (other domains do not exist for it; routes and the list of
    hosted domains are read-only). Passwords are kept as Argon2id hashes (argon2-cffi's
    defaults, RFC 9106's second recommended profile) in the state database; a hash made with
    older parameters is replaced at the next login.

    Login: ten wrong passwords in a row lock the account for :data:`LOCKOUT` seconds (even
    the right password is refused meanwhile, and the answer does not say which); a correct
    login resets the count. Every login, failure and lockout is recorded in the audit trail.

    Sessions are random 256-bit tokens; only their SHA-256 is stored, with the session's
    CSRF token. A session ends after :data:`IDLE` seconds without use, at logout, when its
    user is deleted or its password changed.

Errors:
    :class:`~postwarden.admin.errors.BadInput` for a bad name, role, domain or password.

Security:
    Passwords never reach a log, the audit trail or an error message.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import argon2

from postwarden.admin import scope, trail
from postwarden.admin.errors import BadInput, NotFound
from postwarden.admin.session import Actor, Admin
from postwarden.state.db import StateDB, transaction

ROLES = ("admin", "domain-admin")
MAX_FAILURES = 10
LOCKOUT = 15 * 60
IDLE = 8 * 3600
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_hasher = argon2.PasswordHasher()  # Argon2id


@dataclass(frozen=True)
class WebUser:
    name: str
    role: str
    domain: str | None
    created: float
    failures: int
    locked_until: float
    last_login: float | None

    def actor(self, command: str = "") -> Actor:
        return Actor(
            self.name, "web", command, self.domain if self.role == "domain-admin" else None
        )


@dataclass(frozen=True)
class WebSession:
    token: str  # the cookie value (only on creation)
    user: WebUser
    csrf: str


class LoginRefused(BadInput):
    """Wrong user name or password, or the account is locked for a while."""


_SELECT = "SELECT name, role, domain, created, failures, locked_until, last_login FROM web_users"


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise BadInput(
            f"{name!r} is not a user name (letters, digits, '.', '_', '@', '-'; at most 64)"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise BadInput(f"the password is shorter than {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise BadInput(f"the password is longer than {MAX_PASSWORD} characters")
    return password


def _role(role: str, domain: str | None, admin: Admin) -> str | None:
    if role not in ROLES:
        raise BadInput(f"--role: {role!r} is not one of: {', '.join(ROLES)}")
    if role == "admin":
        if domain:
            raise BadInput("--domain is for domain administrators (--role domain-admin)")
        return None
    if not domain:
        raise BadInput("a domain administrator needs --domain D")
    settings = admin.read().settings
    try:
        return scope.select(settings, admin.actor, domain)
    except NotFound as exc:
        raise BadInput(str(exc)) from None


def _get(db: StateDB, name: str) -> WebUser | None:
    row = db.conn.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
    return WebUser(*row) if row else None


def _event(admin: Admin, what: str) -> None:
    trail.record_event(admin, what, None)


def add(admin: Admin, name: str, role: str, domain: str | None, password: str) -> WebUser:
    admin.actor.require_server_admin("the web console's users")
    _check_name(name)
    owned = _role(role, domain, admin)
    hashed = _hasher.hash(check_password(password))
    with admin.state() as db:
        assert db is not None
        with transaction(db.conn):
            if _get(db, name) is not None:
                raise BadInput(f"a web user named {name!r} exists already")
            db.conn.execute(
                "INSERT INTO web_users (name, hash, role, domain, created) VALUES (?, ?, ?, ?, ?)",
                (name, hashed, role, owned, time.time()),
            )
        user = _get(db, name)
    assert user is not None
    _event(admin, f"web user {name!r} added ({role}{' of ' + owned if owned else ''})")
    return user


def listing(admin: Admin) -> list[WebUser]:
    admin.actor.require_server_admin("the web console's users")
    with admin.state(create=False) as db:
        if db is None:
            return []
        rows = db.conn.execute(_SELECT + " ORDER BY name").fetchall()
    return [WebUser(*row) for row in rows]


def delete(admin: Admin, name: str) -> None:
    admin.actor.require_server_admin("the web console's users")
    with admin.state() as db:
        assert db is not None
        with transaction(db.conn):
            db.conn.execute('DELETE FROM web_sessions WHERE "user" = ?', (name,))
            if not db.conn.execute("DELETE FROM web_users WHERE name = ?", (name,)).rowcount:
                raise BadInput(f"no web user named {name!r}")
    _event(admin, f"web user {name!r} deleted")


def set_password(admin: Admin, name: str, password: str) -> None:
    """A new password; the user's sessions end and a lockout is lifted."""
    if admin.actor.source == "web" and admin.actor.name != name:
        admin.actor.require_server_admin("another user's password")
    hashed = _hasher.hash(check_password(password))
    with admin.state() as db:
        assert db is not None
        with transaction(db.conn):
            changed = db.conn.execute(
                "UPDATE web_users SET hash = ?, failures = 0, locked_until = 0 WHERE name = ?",
                (hashed, name),
            ).rowcount
            if not changed:
                raise BadInput(f"no web user named {name!r}")
            db.conn.execute('DELETE FROM web_sessions WHERE "user" = ?', (name,))
    _event(admin, f"web user {name!r}: password changed")


def _hash_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(admin: Admin, name: str, password: str, client: str) -> WebSession:
    """Check a password; a new session on success. :raises LoginRefused: otherwise."""
    now = time.time()
    with admin.state() as db:
        assert db is not None
        row = db.conn.execute(
            "SELECT hash, locked_until FROM web_users WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            _hasher.hash(password[:MAX_PASSWORD])  # the same work as a real check: no timing hint
            outcome = "unknown user"
        elif row[1] > now:
            outcome = "account locked"
        else:
            outcome = _verify(db, name, row[0], password, now)
        if outcome == "ok":
            session = _new_session(db, name, now)
    who = Admin(admin.store, Actor(name[:64], "web", f"login from {client}"))
    if outcome != "ok":
        _event(who, f"web login refused for {name[:64]!r} from {client}: {outcome}")
        raise LoginRefused("wrong user name or password, or the account is locked for a while")
    _event(who, f"web login of {name!r} from {client}")
    return session


def _verify(db: StateDB, name: str, hashed: str, password: str, now: float) -> str:
    try:
        _hasher.verify(hashed, password)
    except argon2.exceptions.VerificationError:
        with transaction(db.conn):
            db.conn.execute("UPDATE web_users SET failures = failures + 1 WHERE name = ?", (name,))
            failures = db.conn.execute(
                "SELECT failures FROM web_users WHERE name = ?", (name,)
            ).fetchone()[0]
            if failures >= MAX_FAILURES:
                db.conn.execute(
                    "UPDATE web_users SET failures = 0, locked_until = ? WHERE name = ?",
                    (now + LOCKOUT, name),
                )
                return f"wrong password ({failures} in a row): locked for {LOCKOUT // 60} min"
        return f"wrong password ({failures} in a row)"
    except argon2.exceptions.InvalidHashError:
        return "stored hash unreadable"
    with transaction(db.conn):
        if _hasher.check_needs_rehash(hashed):
            db.conn.execute(
                "UPDATE web_users SET hash = ? WHERE name = ?", (_hasher.hash(password), name)
            )
        db.conn.execute(
            "UPDATE web_users SET failures = 0, locked_until = 0, last_login = ? WHERE name = ?",
            (now, name),
        )
    return "ok"


def _new_session(db: StateDB, name: str, now: float) -> WebSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with transaction(db.conn):
        db.conn.execute("DELETE FROM web_sessions WHERE last_seen < ?", (now - IDLE,))
        db.conn.execute(
            'INSERT INTO web_sessions (id_hash, "user", csrf, created, last_seen)'
            " VALUES (?, ?, ?, ?, ?)",
            (_hash_of(token), name, csrf, now, now),
        )
    user = _get(db, name)
    assert user is not None
    return WebSession(token, user, csrf)


def session(admin: Admin, token: str) -> WebSession | None:
    """The live session of cookie value *token*, its idle time renewed; None if none."""
    if not token or len(token) > 100:
        return None
    now = time.time()
    with admin.state(create=False) as db:
        if db is None:
            return None
        row = db.conn.execute(
            'SELECT "user", csrf, last_seen FROM web_sessions WHERE id_hash = ?', (_hash_of(token),)
        ).fetchone()
        if row is None or row[2] < now - IDLE:
            return None
        user = _get(db, row[0])
        if user is None:
            return None
        if now - row[2] > 60:  # renew at most once a minute: no write per page view
            with transaction(db.conn):
                db.conn.execute(
                    "UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?",
                    (now, _hash_of(token)),
                )
    return WebSession("", user, row[1])


def logout(admin: Admin, token: str) -> None:
    with admin.state(create=False) as db:
        if db is not None:
            with transaction(db.conn):
                db.conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (_hash_of(token),))
