"""``postwarden history [--limit N] [--diff]``: the audit trail of settings changes.

Newest first: when, who (the user behind sudo for commands, the web user for the console),
how (a ``postwarden`` command, a web console action, or the file edited some other way,
noticed by the policy daemon or the next command, at the file's modification time) and what
changed: a diff of the settings, or for what is not a settings edit (DKIM keys, web users,
logins) what happened.
"""

from __future__ import annotations

import argparse
import datetime

from postwarden.admin import history
from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import Environment, ExitStatus


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help="the N latest changes (default %(default)s)",
    )
    parser.add_argument("--diff", action="store_true", help="show what changed")


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    rows = history.entries(_settings.admin(env), max(args.limit, 1))
    data = [
        {
            "time": datetime.datetime.fromtimestamp(r.time)
            .astimezone()
            .isoformat(timespec="seconds"),
            "user": r.user,
            "source": r.source,
            "command": r.command,
            "before": r.before,
            "after": r.after,
            "diff": r.diff,
        }
        for r in rows
    ]

    def text() -> str:
        if not data:
            return "no settings changes recorded"
        lines = []
        for row in data:
            what = "the file was edited" if row["source"] == "file" else row["command"]
            lines.append(
                f"{row['time']}  {row['user']:<10} {what}  ({history.summary(row['diff'])})"
            )
            if args.diff:
                lines.extend("    " + x for x in row["diff"].splitlines())
        return "\n".join(lines)

    env.emit(data, text)
    return ExitStatus.OK


COMMAND = Command("history", "show the audit trail of settings changes", configure, run)
