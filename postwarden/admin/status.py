"""Is the product running as configured: daemons reachable and current, DKIM per domain.

Description:
    Each daemon records where it listens and which settings version it answers with (in the
    state database); :func:`gather` probes those addresses with the daemons' own protocols
    and compares the versions with the settings document. A store shared by a fleet also
    lists every node: the settings version it applies and how far behind it is (only this
    node's daemons are probed: the others' addresses are their own). ``postwarden status``
    and the web console's status page show the same data. A domain administrator sees the
    DKIM state of its own domains only.

    Warnings (``warnings``; they do not make the status unhealthy): a domain that would send
    unsigned mail, an active DKIM key whose DNS record the key watch found wrong, a pending
    key the watch gave up on (:mod:`postwarden.dkim.coverage`), and a domain that receives
    only from its gateway while its MX records point elsewhere (looked up live,
    :mod:`postwarden.mx.gateway`).
"""

from __future__ import annotations

import datetime
import socket
import time
from typing import Any

from postwarden.admin import scope
from postwarden.admin.session import Admin
from postwarden.dkim.coverage import coverage
from postwarden.dkim.store import DkimKeys, Status
from postwarden.mx.gateway import gateway_warnings
from postwarden.server import BadAddress, ListenAddress
from postwarden.settings.load import Loaded, SettingsInvalid
from postwarden.settings.model import Settings
from postwarden.settings.snapshot import compile_settings, hosted_domains
from postwarden.state import daemon_status
from postwarden.state.db import StateDB
from postwarden.util.netstring import encode

PROBES = {
    "policy": (b"request=smtpd_access_policy\nprotocol_state=CONNECT\n\n", b"action="),
    "socketmap": (encode(b"tlspolicy status.postwarden.invalid"), b"NOTFOUND"),
    "milter": (b"", b""),  # a TCP/unix connection is all a milter probe can be
}


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


def ago(when: float) -> str:
    seconds = int(time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _dkim(db: StateDB | None, settings: Settings, domains: list[str]) -> list[dict[str, Any]]:
    """Per visible domain: its keys, the key that signs its mail, and the warnings."""
    store = DkimKeys(db) if db is not None else None
    rows = {d: store.for_domain(d) if store else [] for d in hosted_domains(settings)}
    visible = set(domains)
    result = []
    for entry in coverage(settings, rows, time.time()):
        if entry.domain not in visible:
            continue
        keys = rows[entry.domain]
        active = next((k for k in keys if k.status is Status.ACTIVE), None)
        result.append(
            {
                "domain": entry.domain,
                "active": active.selector if active else None,
                "algorithm": f"{active.algorithm} {active.bits}" if active else None,
                "pending": [k.selector for k in keys if k.status is Status.PENDING],
                "enabled": entry.enabled,
                "signed_by": entry.signer,
                "signed_selector": entry.selector,
                "warnings": entry.warnings,
                "signing": entry.to_data(),  # as `dkim show` says it
            }
        )
    return result


def _daemon_data(row: daemon_status.DaemonStatus, digest: str, timeout: float) -> dict[str, Any]:
    """One daemon's row; only this node's daemons are probed (the addresses are its own)."""
    here = row.here
    problems = [
        p
        for kind, address in (_kinds(row.name, row.listening) if here else [])
        if (p := probe(address, kind, timeout))
    ]
    return {
        "name": row.name,
        **({"node": row.node} if row.node else {}),
        "pid": row.pid,
        "listening": row.listening,
        "reachable": not problems if here else None,
        "problems": problems,
        "settings_current": row.digest == digest,
        "settings_loaded": _iso(row.loaded),
        "snapshot_age_seconds": round(time.time() - row.loaded),
        "up_since": _iso(row.started),
    }


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when).astimezone().isoformat(timespec="seconds")


def gather(admin: Admin, timeout: float) -> tuple[dict[str, Any], list[daemon_status.DaemonStatus]]:
    """The status data (as ``status --json`` shows it) and the daemons' rows."""
    try:
        loaded: Loaded | None = admin.read()
        problems: list[str] = []
    except SettingsInvalid as exc:  # status must still say what the daemons are doing
        loaded, problems = None, [str(f) for f in exc.findings if not f.warning]
    store = admin.store
    digest = loaded.digest if loaded else store.document_digest()
    domains = scope.visible_domains(loaded.settings, admin.actor) if loaded else []
    rows = store.daemons()
    with admin.state(create=False) as db:
        dkim = _dkim(db, loaded.settings, domains) if loaded else []
    daemons = [_daemon_data(row, digest, timeout) for row in rows]
    warnings = [w for entry in dkim for w in entry["warnings"]]
    if loaded is not None:
        settings = loaded.settings
        warnings += gateway_warnings(
            compile_settings(settings),
            nameserver=settings.dns.nameserver or None,
            timeout=min(timeout, float(settings.dns.timeout)),
            only=domains,
        )
    healthy = (
        not problems
        and bool(daemons)
        and all(d["reachable"] is not False and d["settings_current"] for d in daemons)
    )
    nodes = store.nodes()
    data = {
        "settings": store.location,
        "digest": digest,
        "valid": not problems,
        "problems": problems,
        "domains": len(domains),
        "primary_domain": loaded.settings.primary_domain if loaded else None,
        "daemons": daemons,
        "dkim": dkim,
        "warnings": warnings,
        "healthy": healthy,
        **({"nodes": nodes} if nodes else {}),
    }
    return data, rows
