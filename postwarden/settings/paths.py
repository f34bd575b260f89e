"""Where the settings file and the state directory are, for the CLI and the daemons alike."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DEFAULT_SETTINGS = Path("/etc/postwarden/settings.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/postwarden")


def settings_path(given: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--settings``, else ``POSTWARDEN_SETTINGS``, else the default."""
    return Path(given or environ.get("POSTWARDEN_SETTINGS") or DEFAULT_SETTINGS)


def state_dir(given: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--state-dir``, else ``POSTWARDEN_STATE_DIR``, else the default."""
    return Path(given or environ.get("POSTWARDEN_STATE_DIR") or DEFAULT_STATE_DIR)
