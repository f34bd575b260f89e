"""postwarden(8) is generated from the command line's help, and kept current."""

from __future__ import annotations

from pathlib import Path

from postwarden.cli import COMMANDS
from postwarden.cli.manpage import render

MANPAGE = Path(__file__).resolve().parents[2] / "man" / "postwarden.8"


def test_manpage_is_current() -> None:
    assert MANPAGE.read_text() == render(), "run tools/manpage"


def test_manpage_covers_every_command() -> None:
    text = MANPAGE.read_text()
    for command in COMMANDS:
        assert f".SS {command.name}\n" in text
