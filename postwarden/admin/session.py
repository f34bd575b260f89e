"""Who acts, on which store: the :class:`Admin` every operation receives.

Description:
    An :class:`Actor` is the user the audit trail names: for the command line the login (the
    one behind sudo), for the web console the web user. A web domain administrator carries
    the one domain (and its subdomains) it may see and change; everything else is invisible
    to it, and server-wide settings (routes, the list of hosted domains) are read-only.

    The store (:class:`~postwarden.store.base.Store`) is the settings file and state
    directory of one host or a database shared by a fleet; nothing here knows which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from postwarden.admin.errors import Forbidden
from postwarden.settings.load import Loaded
from postwarden.state.db import StateDB
from postwarden.store import AuditNote, Store


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

    def note(self, domain: str | None = None) -> AuditNote:
        """How the audit trail names this user's change of *domain* (None: server-wide)."""
        return AuditNote(self.name, self.source, self.command, domain)


@dataclass(frozen=True)
class Admin:
    """One administrative session: the store, the acting user, and whether to write."""

    store: Store
    actor: Actor
    dry_run: bool = False

    def read(self) -> Loaded:
        """The current, validated settings (warnings are ``check``'s to print, not ours)."""
        return self.store.read()

    @contextlib.contextmanager
    def state(self, *, create: bool = True) -> Iterator[StateDB | None]:
        """The shared state database; None if absent and not *create*."""
        with self.store.state(create=create) as db:
            yield db
