"""Where the settings file and the state directory are, for the CLI and the daemons alike."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from postwarden.errors import PostwardenError

SERVICE_USER = "postwarden"

DEFAULT_SETTINGS = Path("/etc/postwarden/settings.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/postwarden")


def settings_path(given: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--settings``, else ``POSTWARDEN_SETTINGS``, else the default."""
    return Path(given or environ.get("POSTWARDEN_SETTINGS") or DEFAULT_SETTINGS)


def state_dir(given: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--state-dir``, else ``POSTWARDEN_STATE_DIR``, else the default."""
    return Path(given or environ.get("POSTWARDEN_STATE_DIR") or DEFAULT_STATE_DIR)


class StateDirUnusable(PostwardenError):
    """The state directory cannot be made the daemons'."""


def ensure_state_dir(directory: Path, user: str = SERVICE_USER) -> None:
    """Make sure *directory* exists and belongs to the service user before root writes there.

    Root creates a missing directory (0750) owned by *user*; a directory that exists but
    belongs to root is refused, as is a missing service user: state made there by root
    would lock the daemons out. Anyone but root just creates the directory if missing (the
    daemons then run as that same user).
    """
    if os.geteuid() != 0:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        return
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise StateDirUnusable(
            f"there is no service user {user!r} to own the state directory {directory}:"
            " run `postwarden setup` first"
        ) from None
    if not directory.exists():
        directory.mkdir(mode=0o750, parents=True)
        os.chown(directory, account.pw_uid, account.pw_gid)
        return
    if directory.stat().st_uid == 0:
        raise StateDirUnusable(
            f"the state directory {directory} belongs to root, but the daemons write there as"
            f" {user}: `chown {user}: {directory}` (or run `postwarden setup`); nothing was"
            " changed"
        )
