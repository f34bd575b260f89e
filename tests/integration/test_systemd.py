"""The systemd units: valid for systemd, hardened, and the daemons speak sd_notify."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ServiceUser
from tests.integration.daemons import Installation, MilterDaemon, Policyd

UNITS = sorted((Path(__file__).resolve().parents[2] / "postfix-conf" / "systemd").glob("*.service"))
HARDENING = (
    "User=postwarden",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "CapabilityBoundingSet=\n",
    "StateDirectory=postwarden",
    "Restart=always",
    "Type=notify",
    "WatchdogSec=",
    "ExecReload=",
    "TimeoutStopSec=",
    "UMask=0027",
)


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_is_hardened_and_valid_for_systemd(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    for directive in HARDENING:
        assert directive in text, f"{unit.name} lacks {directive!r}"
    # systemd-analyze checks that ExecStart= exists: point it at this checkout's scripts
    local = tmp_path / unit.name
    local.write_text(text.replace("/usr/bin/", str(Path(sys.executable).parent) + "/"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def _notifications(sock: socket.socket, wanted: set[str], timeout: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not wanted <= seen and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            seen.update(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            break
    return seen


@pytest.mark.parametrize("daemon", [Policyd, MilterDaemon], ids=["policyd", "milter"])
def test_daemons_notify_readiness_and_watchdog(
    traversable_tmp: Path, service_user: ServiceUser, daemon: type
) -> None:
    installation = Installation(traversable_tmp, service_user)
    path = traversable_tmp / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        os.chmod(path, 0o666)  # the daemon runs as the service user
        process = daemon(installation)
        process.start(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        try:
            seen = _notifications(sock, {"READY=1", "WATCHDOG=1"}, timeout=10)
        finally:
            process.stop()
    assert {"READY=1", "WATCHDOG=1"} <= seen, seen
