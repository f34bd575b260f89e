"""The systemd units of the two daemons, written for one installation's paths and user.

Description:
    :func:`render` gives the text of ``postwarden-policyd.service`` and
    ``postwarden-milter.service`` for an :class:`Install`: the scripts of the virtual
    environment postwarden is installed in (never a guessed ``/usr/bin``), the settings file
    and state directory, the service user, and unix sockets in Postfix's spool where a
    chrooted smtpd reaches them. ``postwarden setup`` writes them; ``tools/units`` writes the
    copies shipped in ``postfix-conf/systemd/`` (for ``/opt/postwarden``) from the same code.

    Both daemons log through syslog (``--syslog``, mail facility: next to Postfix's own
    lines), start as ``Type=notify`` with a watchdog, restart always, and run with no
    capabilities in a read-only view of the system where only their state directory and
    socket directory are writable.

Security:
    The sockets are 0660 in a directory of group postfix (see :mod:`postwarden.deploy.layout`):
    only Postfix and the service user reach them. TCP on loopback would let any local user ask
    the milter to sign a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from postwarden import listeners
from postwarden.settings import paths

POLICYD_UNIT = "postwarden-policyd.service"
MILTER_UNIT = "postwarden-milter.service"
DOCUMENTATION = "https://github.com/postwarden/postwarden#readme"

_HARDENING = """\
UMask=0027
# Least privilege: no capabilities, no new privileges, a read-only view of the system.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged @resources
"""


@dataclass(frozen=True)
class Install:
    """Where one installation lives and who runs it."""

    bindir: Path  # the virtual environment's bin/, holding postwarden-policyd and -milter
    user: str = paths.SERVICE_USER
    settings: Path = paths.DEFAULT_SETTINGS
    state_dir: Path = paths.DEFAULT_STATE_DIR
    socket_dir: Path = Path("/var/spool/postfix") / listeners.SPOOL_SOCKET_DIR

    @property
    def policy(self) -> str:
        return f"unix:{self.socket_dir / 'policy'}"

    @property
    def socketmap(self) -> str:
        return f"unix:{self.socket_dir / 'socketmap'}"

    @property
    def milter(self) -> str:
        return f"unix:{self.socket_dir / 'milter'}"


def render(install: Install) -> dict[str, str]:
    """Unit file name -> text."""
    for path in (install.bindir, install.settings, install.state_dir, install.socket_dir):
        if any(c.isspace() or c in "\"'\\%$" for c in str(path)):
            raise ValueError(f"{path}: a path for a systemd unit must not hold blanks or quotes")
    common = f"--settings {install.settings} --state-dir {install.state_dir} --syslog"
    return {
        POLICYD_UNIT: _unit(
            install,
            description="postwarden policy daemon for Postfix (IP lists, gateway, TLS policies)",
            exec_start=f"{install.bindir / 'postwarden-policyd'} {common}"
            f" --policy {install.policy} --socketmap {install.socketmap}",
            reload="ExecReload=/bin/kill -HUP $MAINPID",
            stop="TimeoutStopSec=15s",
            extra="MemoryDenyWriteExecute=yes\n",
        ),
        MILTER_UNIT: _unit(
            install,
            description="postwarden milter for Postfix (DKIM signing, spam tagging, headers)",
            exec_start=f"{install.bindir / 'postwarden-milter'} {common} --socket {install.milter}",
            reload="ExecReload=/bin/kill -HUP $MAINPID",
            # The milter stops once the messages in progress have their verdict (10 s at most).
            stop="TimeoutStopSec=15s",
            extra="",
        ),
    }


def _unit(
    install: Install, *, description: str, exec_start: str, reload: str, stop: str, extra: str
) -> str:
    if install.state_dir == paths.DEFAULT_STATE_DIR:  # systemd creates and chowns it
        state = "StateDirectory=postwarden\nStateDirectoryMode=0750\n"
    else:
        state = f"ReadWritePaths={install.state_dir}\n"
    return f"""\
# Written by `postwarden setup` (or tools/units) for one installation: run it again after
# moving anything.
[Unit]
Description={description}
Documentation={DOCUMENTATION}
After=network.target
Before=postfix.service

[Service]
Type=notify
NotifyAccess=main
WatchdogSec=30s
User={install.user}
Group={install.user}
ExecStart={exec_start}
{reload}
Restart=always
RestartSec=1s
{stop}
# The state database and DKIM keys; the sockets, in Postfix's spool for a chrooted smtpd.
{state}ReadWritePaths={install.socket_dir}
{_HARDENING}{extra}
[Install]
WantedBy=multi-user.target
"""
