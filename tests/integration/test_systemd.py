"""The systemd units: valid for systemd, hardened, and the daemons speak sd_notify."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postwarden.deploy.units import Install, render
from tests.harness import ServiceUser
from tests.integration.daemons import Installation, MilterDaemon, Policyd

BINDIR = Path(sys.executable).parent
SHIPPED = Path(__file__).resolve().parents[2] / "postfix-conf" / "systemd"
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
    " --syslog",  # one mail-log line per decision, in the mail facility
)


def test_shipped_units_are_current() -> None:
    """postfix-conf/systemd/ is what `postwarden setup` writes for /opt/postwarden."""
    for name, text in render(Install(bindir=Path("/opt/postwarden/bin"))).items():
        assert (SHIPPED / name).read_text() == text, "run tools/units"


@pytest.mark.parametrize("unit", sorted(render(Install(bindir=BINDIR))), ids=str)
def test_unit_is_hardened_and_valid_for_systemd(unit: str, tmp_path: Path) -> None:
    """Units for this checkout's environment, whose scripts exist: systemd accepts them."""
    text = render(Install(bindir=BINDIR))[unit]
    for directive in HARDENING:
        assert directive in text, f"{unit} lacks {directive!r}"
    assert f"ExecStart={BINDIR}/postwarden-" in text
    (tmp_path / unit).write_text(text)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        check=False,
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
