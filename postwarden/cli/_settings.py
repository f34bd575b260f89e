"""What the commands share on top of the service layer (:mod:`postwarden.admin`).

Description:
    :func:`admin` makes the :class:`~postwarden.admin.session.Admin` of one command run (the
    login behind sudo as the acting user, the command line for the audit trail, ``--dry-run``);
    :func:`report` prints what an edit did the same way for every command: a parent block
    copied, the warnings this edit introduced (stderr), then under ``--dry-run`` the change and
    the decisions it would alter, then the command's own summary (stdout, or JSON).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from postwarden.admin.edit import Change
from postwarden.admin.entries import require, split
from postwarden.admin.scope import NotHosted
from postwarden.admin.session import Actor, Admin
from postwarden.cli._env import Environment
from postwarden.settings.load import Loaded
from postwarden.state import audit

__all__ = ["NotHosted", "add_domain_option", "add_dry_run", "admin", "load", "report", "tokens"]


def tokens(values: Iterable[str], env: Environment) -> list[str]:
    """Entries given as arguments separated by spaces, commas or line breaks; ``-`` = stdin."""
    return require(split(env.stdin.read() if value == "-" else value for value in values))


def admin(env: Environment, args: argparse.Namespace | None = None) -> Admin:
    actor = Actor(audit.acting_user(), "command", env.command)
    dry_run = bool(getattr(args, "dry_run", False))
    return Admin(env.store(), actor, dry_run=dry_run)


def load(env: Environment) -> Loaded:
    """The settings, for reading: their warnings are `postwarden check`'s to print, once."""
    return env.store().read()


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show the change and the decisions it would alter; write nothing",
    )


def add_domain_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", metavar="D", help="the hosted domain (default: the primary)")


def report(
    env: Environment, change: Change, data: dict[str, Any], text: str | Callable[[], str]
) -> None:
    """Print what *change* did: notes to stderr, the summary (or JSON) to stdout."""
    for note in change.notes():
        env.note(note)
    if change.dry_run:
        data = {**data, **change.as_data()}
        env.emit(data, lambda: _dry_run_text(change, text))
        return
    env.emit({**data, "warnings": change.warnings}, text)


def _dry_run_text(change: Change, text: str | Callable[[], str]) -> str:
    summary = text() if callable(text) else text
    lines = [f"dry run, nothing was written: {summary}"]
    if not change.changed:
        lines.append("the settings would not change")
        return "\n".join(lines)
    lines += ["", change.diff.rstrip("\n"), ""]
    if change.decisions:
        lines.append("decisions that would change:")
        lines += [f"  {d}" for d in change.decisions[:50]]
        if len(change.decisions) > 50 or change.decisions_truncated:
            lines.append(f"  ... and more ({len(change.decisions)} found)")
    else:
        lines.append("no decision of the policy daemon would change")
    return "\n".join(lines)
