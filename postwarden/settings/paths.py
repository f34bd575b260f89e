"""Where the settings file and the state directory are, for the CLI and the daemons alike."""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

SERVICE_USER = "postwarden"

DEFAULT_SETTINGS = Path("/etc/postwarden/settings.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/postwarden")


def settings_path(given: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--settings``, else ``POSTWARDEN_SETTINGS``, else the default."""
    return Path(given or environ.get("POSTWARDEN_SETTINGS") or DEFAULT_SETTINGS)


def state_dir(given: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--state-dir``, else ``POSTWARDEN_STATE_DIR``, else the default."""
    return Path(given or environ.get("POSTWARDEN_STATE_DIR") or DEFAULT_STATE_DIR)


def ensure_state_dir(directory: Path) -> None:
    """Create the state directory (0750) if missing, owned by the service user when root.

    The daemons write there as the service user; a directory root created for itself
    would lock them out.
    """
    if directory.exists():
        return
    directory.mkdir(mode=0o750, parents=True)
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return
        os.chown(directory, user.pw_uid, user.pw_gid)
