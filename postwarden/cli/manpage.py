"""postwarden(8), generated from the command line's own help (``tools/manpage``)."""

from __future__ import annotations

import argparse
import os

from postwarden import __version__
from postwarden.cli import COMMANDS, build_parser

DATE = "2026-11-28"


def _escape(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-").replace("\n.", "\n\\&.")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps no public handle on subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def render() -> str:
    os.environ["COLUMNS"] = "80"  # argparse wraps help to the terminal: make it reproducible
    parser = build_parser()
    commands = _subparsers(parser)
    out = [
        f'.TH POSTWARDEN 8 "{DATE}" "postwarden {__version__}" "System Manager\'s Manual"',
        ".SH NAME",
        "postwarden \\- Send/Receive settings for Postfix",
        ".SH SYNOPSIS",
        ".B postwarden",
        "[\\fIcommon options\\fR] \\fICOMMAND\\fR ...",
        ".SH DESCRIPTION",
        _escape(parser.description or ""),
        "The daemons are postwarden\\-policyd and postwarden\\-milter; each has \\-\\-help.",
        ".SH COMMANDS",
    ]
    for command in COMMANDS:
        sub = commands[command.name]
        out += [
            f".SS {command.name}",
            _escape(command.description or command.help),
            ".nf",
            _escape(sub.format_help().rstrip()),
            ".fi",
        ]
        for name, action_parser in _subparsers(sub).items():
            out += [
                f".TP\n.B {command.name} {name}",
                ".nf",
                _escape(action_parser.format_usage().strip()),
                ".fi",
            ]
    out += [
        ".SH FILES",
        ".TP\n/etc/postwarden/settings.yaml\nthe settings (\\-\\-settings, POSTWARDEN_SETTINGS)",
        ".TP\n/var/lib/postwarden\nstate database, DKIM keys (\\-\\-state\\-dir,"
        " POSTWARDEN_STATE_DIR)",
        ".SH EXIT STATUS",
        "0 done; 1 refused (bad input, invalid settings, an unhealthy status); 2 bad usage.",
        ".SH SEE ALSO",
        "postconf(5), postfix(1), postscreen(8), smtpd(8)",
    ]
    return "\n".join(out) + "\n"
