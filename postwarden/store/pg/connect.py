"""Connections to the store's PostgreSQL database, and its errors in words.

Description:
    A store URL is libpq's URI (``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB?PARAMS``),
    passed to libpq as it is, with ``connect_timeout`` (3 s) and ``application_name``
    added unless given. Keep the password out of the URL: libpq reads it from a password
    file (``passfile=`` parameter, or ``PGPASSFILE``), and client certificates work too.

    postwarden's own parameters are removed before libpq sees the URL:
    ``dkim_key_file=PATH`` names the file whose key encrypts DKIM private keys in the
    database (:mod:`~postwarden.store.pg.secrets`); ``poll_seconds=N`` (default 30, at
    least 1) is how often a daemon compares versions when no notification came (a
    connection pooler in transaction mode drops ``LISTEN``).

Errors:
    :func:`unavailable` turns a connection failure into
    :class:`~postwarden.store.base.StoreUnavailable`, naming the database (never its
    password); other server errors become :class:`~postwarden.state.db.StateError`.

Security:
    :func:`describe` is the only form of the URL that reaches a message or a log.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import psycopg

from postwarden.state.db import StateError
from postwarden.store.base import BadStoreUrl, StoreUnavailable

CONNECT_TIMEOUT = 3
OWN_PARAMETERS = ("dkim_key_file", "poll_seconds")
POLL_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """A parsed store URL: what libpq gets, what messages show, and our own parameters."""

    conninfo: str
    shown: str
    dkim_key_file: str | None = None
    poll_seconds: float = POLL_SECONDS

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname and "host=" not in parts.query:
            raise BadStoreUrl(f"--store: {describe(url)} names no database host")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k in OWN_PARAMETERS}
        rest = [(k, v) for k, v in query if k not in OWN_PARAMETERS]
        names = {k for k, _ in rest}
        if "connect_timeout" not in names:
            rest.append(("connect_timeout", str(CONNECT_TIMEOUT)))
        if "application_name" not in names:
            rest.append(("application_name", "postwarden"))
        conninfo = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
        return cls(conninfo, describe(url), own.get("dkim_key_file"), _poll_seconds(url, own))


def _poll_seconds(url: str, own: dict[str, str]) -> float:
    text = own.get("poll_seconds")
    if text is None:
        return POLL_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 86_400:
        raise BadStoreUrl(
            f"--store: {describe(url)}: poll_seconds={text!r} is not a number of seconds"
            " from 1 to 86400"
        )
    return seconds


def describe(url: str) -> str:
    """*url* without its password and parameters: how messages name the database."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username + '@' if parts.username else ''}{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def connect(target: Target, *, autocommit: bool = True) -> psycopg.Connection:
    """A new connection. :raises StoreUnavailable: naming the database when it fails."""
    try:
        return psycopg.connect(target.conninfo, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise unavailable(target, exc) from None


def unavailable(target: Target, exc: BaseException) -> StoreUnavailable:
    """The error of a database that cannot be reached, in one line."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return StoreUnavailable(
        f"the settings database {target.shown} is unavailable ({reason}); nothing was changed"
    )


def state_error(target: Target, exc: psycopg.Error) -> StateError:
    """A server error that is not about reaching it, in one line."""
    if isinstance(exc, psycopg.OperationalError):
        return unavailable(target, exc)
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return StateError(f"the settings database {target.shown}: {reason}")
