"""Who acts, on which store: the :class:`Admin` every operation receives.

Description:
    An :class:`Actor` is the user the audit trail names: for the command line the login (the
    one behind sudo), for the web console the web user. A web domain administrator carries
    the one domain (and its subdomains) it may see and change; everything else is invisible
    to it, and server-wide settings (routes, the list of hosted domains) are read-only.

Security:
    The state database is opened as the state directory's owner (the service user) when
    running as root, so nothing in it becomes unreadable to the daemons.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from postwarden.admin.errors import Forbidden
from postwarden.settings import paths
from postwarden.settings.load import Loaded
from postwarden.settings.state import FILENAME, StateDB
from postwarden.settings.store import read_settings
from postwarden.util.privileges import as_owner_of


@dataclass(frozen=True)
class Actor:
    """The user behind a change.

    ``source`` is ``command`` or ``web``; ``command`` is what the audit trail shows as the
    action; ``domain`` is a domain administrator's domain (None: a server administrator).
    """

    name: str
    source: str = "command"
    command: str = ""
    domain: str | None = None

    @property
    def server_admin(self) -> bool:
        return self.domain is None

    def reaches(self, domain: str) -> bool:
        """Whether this user may see and change *domain*'s settings."""
        if self.domain is None:
            return True
        return domain == self.domain or domain.endswith("." + self.domain)

    def require_server_admin(self, what: str) -> None:
        if self.domain is not None:
            raise Forbidden(
                f"{what} is a server-wide setting: only a server administrator may change it"
            )


@dataclass(frozen=True)
class Admin:
    """One administrative session: the store, the acting user, and whether to write."""

    settings_path: Path
    state_dir: Path
    actor: Actor
    dry_run: bool = False

    def read(self) -> Loaded:
        """The current, validated settings (warnings are ``check``'s to print, not ours)."""
        return read_settings(self.settings_path)

    @contextlib.contextmanager
    def state(self, *, create: bool = True) -> Iterator[StateDB | None]:
        """The state database, opened as its directory's owner; None if absent and not *create*."""
        if not create and not (self.state_dir / FILENAME).exists():
            yield None
            return
        paths.ensure_state_dir(self.state_dir)
        with as_owner_of(self.state_dir), StateDB.open(self.state_dir) as db:
            yield db
