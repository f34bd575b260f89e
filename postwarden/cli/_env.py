"""What every command receives: streams, which store holds the settings, output format.

Description:
    Commands never read ``sys.argv``, ``os.environ`` or the real streams themselves; they get
    an :class:`Environment`, so tests call ``main(argv, env)`` and look at what was written.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from postwarden.admin.errors import BadInput
from postwarden.settings import paths
from postwarden.store import Store, open_store, store_url

__all__ = ["BadInput", "Environment", "ExitStatus", "table"]


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1  # bad input, invalid settings, refused change
    USAGE = 2  # the command line itself is wrong (argparse)


@dataclass
class Environment:
    """The outside world of one command run."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    json: bool = False
    command: str = "postwarden"  # the command line, for the audit trail
    settings_path: Path = paths.DEFAULT_SETTINGS
    state_dir: Path = paths.DEFAULT_STATE_DIR
    store_url: str = "file:"

    def configure(
        self,
        settings: str | None,
        state_dir: str | None,
        as_json: bool,
        store: str | None = None,
    ) -> None:
        """Apply the common options, falling back to the environment, then the defaults."""
        self.json = as_json
        self.settings_path = paths.settings_path(settings, self.environ)
        self.state_dir = paths.state_dir(state_dir, self.environ)
        self.store_url = store_url(store, self.environ)

    def store(self) -> Store:
        """The store ``--store`` names (not connected until used)."""
        return open_store(
            self.store_url, settings_path=self.settings_path, state_dir=self.state_dir
        )

    def emit(self, data: Any, text: str | Callable[[], str]) -> None:
        """Print *data* as JSON under ``--json``, else the human *text*."""
        if self.json:
            json.dump(data, self.stdout, indent=2, sort_keys=False)
            self.stdout.write("\n")
        else:
            rendered = text() if callable(text) else text
            if rendered:
                self.stdout.write(rendered.rstrip("\n") + "\n")

    def note(self, message: str) -> None:
        """A remark for a human (stderr, so ``--json`` output stays parseable)."""
        self.stderr.write(f"postwarden: {message}\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain left-aligned text table."""
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
