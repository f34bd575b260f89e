"""The shape of a subcommand: a name, a help line, its arguments and its ``run``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from postwarden.cli._env import Environment, ExitStatus

Runner = Callable[[Environment, argparse.Namespace], ExitStatus]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser, argparse.ArgumentParser], None]
    run: Runner
    description: str = ""


def actions(
    parser: argparse.ArgumentParser, common: argparse.ArgumentParser
) -> Callable[[str, str], argparse.ArgumentParser]:
    """Sub-actions (``list``, ``add``, ...) of a command; each gets the common options."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    return add
