"""The active DKIM keys of every hosted domain, for the milter's view.

Description:
    Keys are loaded when the view is compiled (at start, and when the settings or the DKIM
    state change), never per message. :meth:`KeyRing.changed` is the cheap probe the settings
    watcher polls every second: it notices a ``postwarden dkim verify`` that activated a key
    (on this host or, with a shared store, on any node). Where the keys come from is the
    store's business (:meth:`~postwarden.store.base.DaemonLink.keys`).

Errors:
    A key that cannot be loaded is logged and its domain left to the primary's key; one bad
    key never stops signing for the others. State that cannot be read means no keys
    (logged), never a crash.

Security:
    Key material is never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from postwarden.milter.view import SigningKey
from postwarden.store import ActiveKey, KeySource

log = logging.getLogger("postwarden.milter")


def signing_view(keys: Iterable[ActiveKey]) -> dict[str, SigningKey]:
    """The store's active keys as the milter's view holds them, by domain."""
    return {k.domain: SigningKey(k.domain, k.selector, str(k.algorithm), k.key) for k in keys}


class KeyRing:
    def __init__(self, source: KeySource) -> None:
        self.source = source
        self._in_use: list[str] | None = None

    def changed(self) -> bool:
        """Whether the active keys changed since the last :meth:`load`."""
        return self.source.changed()

    def load(self) -> dict[str, SigningKey]:
        """Every domain's active key, loaded."""
        keys = signing_view(self.source.load())
        self._log_change(keys)
        return keys

    def _log_change(self, keys: dict[str, SigningKey]) -> None:
        """Say which keys sign from now on, when that changed (domains and selectors only)."""
        in_use = [f"d={k.domain} s={k.selector}" for _, k in sorted(keys.items())]
        if in_use != self._in_use:
            self._in_use = in_use
            log.info("DKIM keys in use: %s", ", ".join(in_use) or "none")
