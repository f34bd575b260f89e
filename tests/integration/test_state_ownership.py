"""State made by the command line (run as root) is the daemons' (run as the service user).

A fresh state directory: the command line creates it and everything in it as the service
user, or refuses saying how to fix it, and a read-only command creates nothing at all. Then
the daemons, as the service user, record what they learn there.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.harness import ServiceUser
from tests.harness.wait import wait_until
from tests.integration.daemons import Installation, MilterDaemon, Policyd

BLOCKED_REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.9\n"
    b"sender=a@elsewhere.example\nrecipient=bob@hosted.test\n\n"
)


def postwarden(settings: Path, state_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``postwarden ARGV`` as root, on these settings and this state directory."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "postwarden.cli",
            "--settings",
            str(settings),
            "--state-dir",
            str(state_dir),
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_read_only_command_creates_no_state(
    traversable_tmp: Path, service_user: ServiceUser
) -> None:
    installation = Installation(traversable_tmp, service_user)
    new = traversable_tmp / "new-state"
    for argv in (["dkim", "show"], ["history"], ["block", "list", "--sort", "recent"]):
        done = postwarden(installation.settings, new, *argv)
        assert done.returncode == 0, done.stderr
        assert not new.exists(), f"{argv} created {new}"
    assert "no DKIM keys" in postwarden(installation.settings, new, "dkim", "show").stdout


def test_state_the_cli_creates_as_root_is_the_daemons(
    traversable_tmp: Path, service_user: ServiceUser
) -> None:
    installation = Installation(traversable_tmp, service_user)
    state = traversable_tmp / "var" / "lib" / "postwarden"  # does not exist yet
    for argv in (
        ["dkim", "create"],  # the first to touch the new directory
        ["block", "add", "203.0.113.0/24"],
        ["dkim", "create", "--selector", "second", "--algorithm", "ed25519"],
        ["dkim", "delete", "--selector", "second"],
    ):
        done = postwarden(installation.settings, state, *argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "not recorded" not in done.stderr
    made = [state, *state.rglob("*")]
    assert {p.relative_to(state.parent).as_posix(): p.stat().st_uid for p in made} == {
        p.relative_to(state.parent).as_posix(): service_user.uid for p in made
    }
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    # the daemons, as the service user, on that state directory
    installation.state_dir = state
    policyd, milter = Policyd(installation), MilterDaemon(installation)
    policyd.start()
    milter.start()
    try:
        with socket.create_connection(("127.0.0.1", policyd.policy_port), timeout=5) as conn:
            conn.sendall(BLOCKED_REQUEST)
            assert conn.recv(4096).startswith(b"action=554")
        wait_until(lambda: _blocks(installation, state) == 1, "the block recorded", interval=0.2)
    finally:
        milter.stop()
        policyd.stop()
    for daemon in (policyd, milter):
        assert "not recorded" not in daemon.log_text() and "unable to open" not in daemon.log_text()
    assert all(p.stat().st_uid == service_user.uid for p in state.rglob("*"))


def _blocks(installation: Installation, state: Path) -> int:
    """How many blocks the history has for the first entry of ``block list --sort recent``."""
    done = postwarden(installation.settings, state, "block", "list", "--sort", "recent", "--json")
    return int(json.loads(done.stdout)["entries"][0]["blocks"])


def test_a_root_owned_state_directory_is_refused_before_any_change(
    traversable_tmp: Path, service_user: ServiceUser
) -> None:
    installation = Installation(traversable_tmp, service_user)
    state = traversable_tmp / "root-state"
    state.mkdir(mode=0o755)  # as root: the daemons could not write here
    before = installation.settings.read_bytes()
    for argv in (["block", "add", "192.0.2.1"], ["dkim", "create"]):
        done = postwarden(installation.settings, state, *argv)
        assert done.returncode == 1, (argv, done.stdout)
        assert f"the state directory {state} belongs to root" in done.stderr
        assert f"chown postwarden: {state}" in done.stderr and "postwarden setup" in done.stderr
    assert installation.settings.read_bytes() == before
    assert list(state.iterdir()) == []
    os.chown(state, service_user.uid, service_user.gid)  # as the message says
    assert postwarden(installation.settings, state, "block", "add", "192.0.2.1").returncode == 0
