"""``postwarden status``: are the daemons up, do they run the current settings, DKIM per domain.

Each daemon records where it listens and which settings version it answers with (in the
state database); ``status`` probes those addresses with the daemons' own protocols and
compares the versions with the settings document. With a store shared by a fleet it lists
each node's applied settings version and its lag. Exit status 0 when every daemon that ever
ran is reachable and current, 1 otherwise — usable from a monitoring check.
"""

from __future__ import annotations

import argparse
from typing import Any

from postwarden.admin import status
from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import Environment, ExitStatus


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds per probe (default %(default)s)",
    )


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    data, rows = status.gather(_settings.admin(env), args.timeout)
    daemons, dkim, problems = data["daemons"], data["dkim"], data["problems"]

    def text() -> str:
        if data["valid"]:
            state = f"{data['domains']} hosted domains"
        else:
            state = "INVALID: " + "; ".join(problems)
        lines = [f"settings: {data['settings']} (version {data['digest'][:12]}, {state})"]
        for node in data.get("nodes", []):
            lines.append(f"node {_node_text(node)}")
        if not daemons:
            lines.append("no daemon has reported yet")
        for d, row in zip(daemons, rows, strict=True):
            if d["reachable"] is None:
                reach = f"on node {d['node']}"
            elif d["reachable"]:
                reach = "reachable"
            else:
                reach = "NOT reachable: " + "; ".join(d["problems"])
            current = (
                "current settings"
                if d["settings_current"]
                else ("OLD settings (the file changed and was not loaded: see the daemon's log)")
            )
            lines.append(
                f"{d['name']}: {reach}, pid {d['pid']}, {d['listening']};"
                f" {current}, loaded {status.ago(row.loaded)}"
            )
        lines.append("DKIM:")
        for entry in dkim:
            pending = f"; pending: {', '.join(entry['pending'])}" if entry["pending"] else ""
            lines.append(f"  {entry['domain']}: {entry['signing']['summary']}{pending}")
        lines += [f"warning: {w}" for w in data["warnings"]]
        return "\n".join(lines)

    env.emit(data, text)
    return ExitStatus.OK if data["healthy"] else ExitStatus.ERROR


def _node_text(node: dict[str, Any]) -> str:
    """``mx2: version 41 (current)`` / ``mx3: version 39, 2 behind (lag 5s)``."""
    applied = node.get("applied_version")
    if applied is None:
        return f"{node['name']}: no settings applied yet"
    if not node["behind"]:
        return f"{node['name']}: version {applied} (current)"
    return (
        f"{node['name']}: version {applied}, {node['behind']} behind"
        f" (lag {node['lag_seconds']}s; last heard of {node['last_seen']})"
    )


COMMAND = Command(
    "status",
    "daemons reachable, settings version in force, DKIM state per domain",
    configure,
    run,
)
