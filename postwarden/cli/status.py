"""``postwarden status``: are the daemons up, do they run the current settings, DKIM per domain.

Each daemon records where it listens and which settings version it answers with (in the
state database); ``status`` probes those addresses with the daemons' own protocols and
compares the versions with the settings file. Exit status 0 when every daemon that ever
ran is reachable and current, 1 otherwise — usable from a monitoring check.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import socket
import time
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import Environment, ExitStatus
from postwarden.dkim.store import DkimKeys, KeyRow
from postwarden.server import BadAddress, ListenAddress
from postwarden.settings import daemon_status
from postwarden.settings.load import Loaded, SettingsInvalid
from postwarden.settings.snapshot import hosted_domains
from postwarden.settings.state import FILENAME, StateDB
from postwarden.util.netstring import encode
from postwarden.util.privileges import as_owner_of

PROBES = {
    "policy": (b"request=smtpd_access_policy\nprotocol_state=CONNECT\n\n", b"action="),
    "socketmap": (encode(b"tlspolicy status.postwarden.invalid"), b"NOTFOUND"),
    "milter": (b"", b""),  # a TCP/unix connection is all a milter probe can be
}


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="seconds per probe (default %(default)s)",
    )


def probe(address: str, kind: str, timeout: float) -> str | None:
    """None when the daemon answered as expected, else what went wrong."""
    try:
        target = ListenAddress.parse(address)
    except BadAddress as exc:
        return str(exc)
    request, expected = PROBES[kind]
    family = (
        socket.AF_UNIX
        if target.path
        else (socket.AF_INET6 if ":" in target.host else socket.AF_INET)
    )
    try:
        with socket.socket(family, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(target.path or (target.host, target.port))
            if not request:
                return None
            conn.sendall(request)
            answer = conn.recv(4096)
    except OSError as exc:
        return f"{address}: {exc.strerror or exc}"
    return None if expected in answer else f"{address}: unexpected answer {answer[:40]!r}"


def _kinds(name: str, listening: str) -> list[tuple[str, str]]:
    addresses = listening.split()
    if name.endswith("policyd") and len(addresses) == 2:
        return [("policy", addresses[0]), ("socketmap", addresses[1])]
    return [("milter", address) for address in addresses]


def _ago(when: float) -> str:
    seconds = int(time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _dkim(db: StateDB | None, domains: list[str]) -> list[dict[str, Any]]:
    store = DkimKeys(db) if db is not None else None
    result = []
    for domain in domains:
        keys: list[KeyRow] = store.for_domain(domain) if store else []
        active = next((k for k in keys if k.status == "active"), None)
        result.append(
            {
                "domain": domain,
                "active": active.selector if active else None,
                "algorithm": f"{active.algorithm} {active.bits}" if active else None,
                "pending": [k.selector for k in keys if k.status == "pending"],
            }
        )
    return result


def _daemon_data(row: daemon_status.DaemonStatus, digest: str, timeout: float) -> dict[str, Any]:
    problems = [
        p
        for kind, address in _kinds(row.name, row.listening)
        if (p := probe(address, kind, timeout))
    ]
    return {
        "name": row.name,
        "pid": row.pid,
        "listening": row.listening,
        "reachable": not problems,
        "problems": problems,
        "settings_current": row.digest == digest,
        "settings_loaded": _iso(row.loaded),
        "snapshot_age_seconds": round(time.time() - row.loaded),
        "up_since": _iso(row.started),
    }


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    try:
        loaded: Loaded | None = _settings.load(env)
        problems: list[str] = []
    except SettingsInvalid as exc:  # status must still say what the daemons are doing
        loaded, problems = None, [str(f) for f in exc.findings if not f.warning]
    digest = loaded.digest if loaded else hashlib.sha256(env.settings_path.read_bytes()).hexdigest()
    domains = hosted_domains(loaded.settings) if loaded else []
    rows: list[daemon_status.DaemonStatus] = []
    db: StateDB | None = None
    with contextlib.ExitStack() as stack:
        if (env.state_dir / FILENAME).exists():
            stack.enter_context(as_owner_of(env.state_dir))
            db = stack.enter_context(StateDB.open(env.state_dir))
            rows = daemon_status.read_all(db)
        dkim = _dkim(db, domains)
    daemons = [_daemon_data(row, digest, args.timeout) for row in rows]
    healthy = (
        not problems
        and bool(daemons)
        and all(d["reachable"] and d["settings_current"] for d in daemons)
    )
    data = {
        "settings": str(env.settings_path),
        "digest": digest,
        "valid": not problems,
        "problems": problems,
        "domains": len(domains),
        "daemons": daemons,
        "dkim": dkim,
        "healthy": healthy,
    }
    primary = loaded.settings.primary_domain if loaded else "the primary domain"

    def text() -> str:
        state = f"{len(domains)} hosted domains" if loaded else "INVALID: " + "; ".join(problems)
        lines = [f"settings: {env.settings_path} (version {digest[:12]}, {state})"]
        if not daemons:
            lines.append("no daemon has reported yet")
        for d, row in zip(daemons, rows, strict=True):
            reach = "reachable" if d["reachable"] else "NOT reachable: " + "; ".join(d["problems"])
            current = (
                "current settings"
                if d["settings_current"]
                else ("OLD settings (the file changed and was not loaded: see the daemon's log)")
            )
            lines.append(
                f"{d['name']}: {reach}, pid {d['pid']}, {d['listening']};"
                f" {current}, loaded {_ago(row.loaded)}"
            )
        lines.append("DKIM:")
        for entry in dkim:
            if entry["active"]:
                sign = f"signs with {entry['active']} ({entry['algorithm']})"
            else:
                sign = f"no active key: signed with {primary}'s, if any"
            pending = f"; pending: {', '.join(entry['pending'])}" if entry["pending"] else ""
            lines.append(f"  {entry['domain']}: {sign}{pending}")
        return "\n".join(lines)

    env.emit(data, text)
    return ExitStatus.OK if healthy else ExitStatus.ERROR


COMMAND = Command(
    "status",
    "daemons reachable, settings version in force, DKIM state per domain",
    configure,
    run,
)
