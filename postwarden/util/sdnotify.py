"""systemd's notification protocol (sd_notify): readiness, status, watchdog keep-alives.

Description:
    With ``Type=notify`` systemd considers a daemon started when it sends ``READY=1``, and
    with ``WatchdogSec=`` restarts it when the ``WATCHDOG=1`` keep-alives stop. The protocol
    is one datagram to the socket named by ``$NOTIFY_SOCKET`` (``@`` = abstract namespace);
    without that variable every call is a no-op, so the daemons run the same anywhere.
"""

from __future__ import annotations

import os
import socket


def notify(*states: str) -> bool:
    """Send ``KEY=value`` lines to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between keep-alives (half of WatchdogSec=), or None without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
