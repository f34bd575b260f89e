"""``postwarden what-if PROPOSED.yaml [--since 24h] [--examples N]``: replay recent decisions.

Reads the decisions policyd recorded (``decision_log``) over the last ``--since`` and
decides each again with the proposed settings file, by the same decision module the
daemons run (:mod:`postwarden.what_if`): what would newly be refused, newly allowed,
refused by another rule, or routed differently — counts, grouped by rule and entry, with
examples. The proposed file is validated like ``check`` and never written; exit 1 when it is
invalid or when no decision has been recorded in the window.
"""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.settings.load import load_text
from postwarden.settings.snapshot import compile_settings
from postwarden.state import activity
from postwarden.util.duration import BadDuration, parse_duration
from postwarden.what_if import CATEGORIES, Change, Outcome, replay

LABELS = {
    "newly_refused": "newly refused",
    "newly_allowed": "newly allowed",
    "refused_differently": "refused by another rule",
    "routed_differently": "routed differently",
}


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("proposed", metavar="PROPOSED.yaml", help="the settings file to try")
    parser.add_argument(
        "--since", default="24h", metavar="DURATION", help="how far back (default %(default)s)"
    )
    parser.add_argument(
        "--examples", type=int, default=3, metavar="N", help="examples per group (default 3)"
    )


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _change(change: Change) -> dict[str, Any]:
    r = change.record
    return {
        "time": _when(r.time),
        "client": r.client_ip,
        "sender": r.sender,
        "recipient": r.recipient,
        "before": change.before,
        "after": change.after,
    }


def _data(outcome: Outcome, since: float) -> dict[str, Any]:
    return {
        "since": _when(since),
        "replayed": outcome.replayed,
        "other_versions": outcome.other_versions,
        **{
            category: {
                "count": outcome.count(category),
                "groups": [
                    {
                        "key": g.key,
                        "count": g.count,
                        "examples": [_change(c) for c in g.examples],
                    }
                    for g in sorted(outcome.groups[category].values(), key=lambda g: -g.count)
                ],
            }
            for category in CATEGORIES
        },
    }


def _text(data: dict[str, Any]) -> str:
    lines = [f"replayed {data['replayed']:,} decisions recorded since {data['since']}"]
    if data["other_versions"]:
        lines.append(
            f"note: {data['other_versions']:,} were made under an older settings version;"
            " a difference may come from that change, not from the proposal"
        )
    for category in CATEGORIES:
        part = data[category]
        lines.append(f"{LABELS[category]}: {part['count']:,}")
        for group in part["groups"]:
            lines.append(f"  {group['count']:>7,}  {group['key']}")
            for ex in group["examples"]:
                lines.append(
                    f"           e.g. {ex['time']} [{ex['client']}] <{ex['sender']}> ->"
                    f" <{ex['recipient']}>: {ex['before']} -> {ex['after']}"
                )
    return "\n".join(lines)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    try:
        window = parse_duration(args.since)
    except BadDuration as exc:
        raise BadInput(f"--since: {exc}") from None
    if not 0 <= args.examples <= 100:
        raise BadInput(f"--examples: {args.examples} is not between 0 and 100")
    path = Path(args.proposed)
    proposed = load_text(path.read_bytes(), str(path))  # raises SettingsInvalid: FILE:LINE
    current = _settings.load(env)
    since = time.time() - window
    with _settings.admin(env).state(create=False) as db:
        if db is None:
            raise BadInput(f"no state database in {env.state_dir}: policyd has recorded nothing")
        outcome = replay(
            activity.decisions(db, since=since),
            compile_settings(current.settings, digest=current.digest),
            compile_settings(proposed.settings, digest=proposed.digest),
            examples=args.examples,
        )
    if not outcome.replayed:
        raise BadInput(
            f"no decisions recorded since {_when(since)} (is policyd running with"
            " decision_log.enabled?)"
        )
    data = _data(outcome, since)
    env.emit(data, lambda: _text(data))
    return ExitStatus.OK


COMMAND = Command(
    "what-if",
    "replay recorded decisions with a proposed settings file: what would change",
    configure,
    run,
)
