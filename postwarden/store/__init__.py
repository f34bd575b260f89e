"""The store's front door: open the backend a store URL names.

Description:
    ``--store URL`` (env ``POSTWARDEN_STORE``) names the store of every command and daemon:

    ``file:``                   the settings file (``--settings``) and the state directory
                                (``--state-dir``): one host, the default
    ``postgresql://...``        a PostgreSQL database shared by a fleet of MX hosts (libpq's
                                URI; ``postgres://`` too); the state directory keeps this
                                node's cached settings and buffered state

    Everything above opens the store here and talks to :class:`~postwarden.store.base.Store`
    only.

Errors:
    :class:`~postwarden.store.base.BadStoreUrl` naming the URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from postwarden.store.base import (
    ActiveKey,
    AuditNote,
    BadStoreUrl,
    DaemonLink,
    Edited,
    KeySource,
    Store,
    StoreUnavailable,
)

DEFAULT_URL = "file:"
ENV = "POSTWARDEN_STORE"
PG_SCHEMES = ("postgresql://", "postgres://")

__all__ = [
    "ActiveKey",
    "AuditNote",
    "BadStoreUrl",
    "DaemonLink",
    "Edited",
    "KeySource",
    "Store",
    "StoreUnavailable",
    "open_store",
    "redact",
    "store_url",
]


def store_url(given: str | None, environ: Mapping[str, str]) -> str:
    """``--store``, else ``POSTWARDEN_STORE``, else ``file:``."""
    return given or environ.get(ENV) or DEFAULT_URL


def redact(text: str) -> str:
    """*text* with the password of a store URL in it replaced (for the audit trail, logs)."""
    for scheme in PG_SCHEMES:
        at = text.find(scheme)
        if at < 0:
            continue
        rest = text[at + len(scheme) :]
        userinfo, sep, _ = rest.partition("@")
        if sep and ":" in userinfo and "/" not in userinfo:
            user = userinfo.split(":", 1)[0]
            return text[:at] + scheme + user + ":***@" + rest[len(userinfo) + 1 :]
    return text


def open_store(url: str, *, settings_path: Path, state_dir: Path) -> Store:
    """The store *url* names (nothing is connected or read yet)."""
    if url in {"file:", "file"}:
        from postwarden.store.file import FileStore

        return FileStore(settings_path, state_dir)
    if url.startswith(PG_SCHEMES):
        from postwarden.store.pg.store import PgStore

        return PgStore(url, state_dir)
    raise BadStoreUrl(f"--store: {url!r} is not file: or postgresql://...")
