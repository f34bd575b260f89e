"""Moving a site's settings between stores: import a settings file, export the document.

Description:
    :func:`import_file` validates a settings file and makes it the store's document: a new
    version of it (an edit like any other, in the audit trail under the acting user), or the
    first one. :func:`export` is the document exactly as stored, which a file store reads
    as its settings file: ``postwarden --store postgresql://... store export FILE`` then
    ``--store file:`` moves a site back to one host.

Errors:
    :class:`~postwarden.settings.load.SettingsInvalid` naming the file's lines; nothing is
    changed.
"""

from __future__ import annotations

from pathlib import Path

from postwarden.admin.edit import Change, edit_server
from postwarden.admin.session import Admin
from postwarden.settings.load import Loaded
from postwarden.settings.store import SettingsNotFound, read_settings


def import_file(admin: Admin, path: Path) -> tuple[Loaded, Change | None]:
    """Make the settings of *path* the store's; the change (None: the store had none)."""
    loaded = read_settings(path)
    try:
        return loaded, edit_server(admin, "the whole settings", lambda _old: loaded.settings)
    except SettingsNotFound:
        admin.actor.require_server_admin("the whole settings")
        if admin.dry_run:
            return loaded, None
        created, _problem = admin.store.create(loaded.settings, admin.actor.note())
        return created, None


def export(admin: Admin) -> bytes:
    """The settings document as stored (valid: the store only keeps what validated)."""
    return admin.store.document()[0]
