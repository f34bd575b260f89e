"""Least privilege: daemons started as root open their sockets, then run as the service user.

The daemons are started here as root (as an init system without ``User=`` would) with unix
sockets in a setgid directory of group postfix, the layout of Postfix's spool; what runs is
read from /proc, what was created from the file system.
"""

from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ServiceUser, service_env
from tests.integration.daemons import Installation, MilterDaemon, Policyd, ServiceDaemon


def _ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid (real, effective, saved, filesystem) and Groups of a running process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Uid", "Gid", "Groups"):
            fields[name] = [int(x) for x in value.split()]
    return fields


@pytest.fixture
def socket_dir(traversable_tmp: Path, service_user: ServiceUser) -> Path:
    """Like /var/spool/postfix/postwarden: the service user's, group postfix, setgid."""
    directory = traversable_tmp / "spool" / "postwarden"
    directory.mkdir(parents=True)
    os.chown(directory, service_user.uid, grp.getgrnam("postfix").gr_gid)
    directory.chmod(0o2750)
    return directory


@pytest.mark.parametrize("name", ["policyd", "milter"])
@pytest.mark.parametrize("as_root", [True, False], ids=["started-as-root", "started-as-user"])
def test_daemons_run_as_the_service_user_with_0660_sockets(
    name: str,
    as_root: bool,
    traversable_tmp: Path,
    service_user: ServiceUser,
    socket_dir: Path,
) -> None:
    installation = Installation(traversable_tmp, service_user)
    daemon: ServiceDaemon = (
        Policyd(installation, socket_dir=socket_dir)
        if name == "policyd"
        else MilterDaemon(installation, socket_path=socket_dir / "milter")
    )
    daemon.start(as_root=as_root)
    try:
        assert daemon.process is not None
        ids = _ids(daemon.process.pid)
        assert ids["Uid"] == [service_user.uid] * 4 and ids["Gid"] == [service_user.gid] * 4
        assert 0 not in ids["Groups"]
        postfix_gid = grp.getgrnam("postfix").gr_gid
        sockets = sorted(socket_dir.iterdir())
        assert sockets
        for path in sockets:
            st = path.stat()
            assert stat.S_ISSOCK(st.st_mode)
            assert (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid) == (
                "0o660",
                service_user.uid,
                postfix_gid,
            ), path
        state = list(installation.state_dir.iterdir())
        assert state and all(p.stat().st_uid == service_user.uid for p in state), state
    finally:
        status = daemon.stop()
    assert status == 0  # a clean stop on SIGTERM, after the connections in progress
    assert list(socket_dir.iterdir()) == []  # each removes its sockets on stop


@pytest.mark.parametrize("module", ["postwarden.policyd.main", "postwarden.milter.main"])
def test_started_as_root_without_its_user_a_daemon_refuses(
    module: str, traversable_tmp: Path, service_user: ServiceUser
) -> None:
    installation = Installation(traversable_tmp, service_user)
    before = sorted(installation.state_dir.iterdir())  # the history of `init`, say
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            "--settings",
            str(installation.settings),
            "--state-dir",
            str(installation.state_dir),
            "--metrics",
            "none",
            "--user",
            "no-such-user",
            *(
                [
                    "--policy",
                    f"unix:{traversable_tmp / 'p'}",
                    "--socketmap",
                    f"unix:{traversable_tmp / 's'}",
                ]
                if "policyd" in module
                else ["--socket", f"unix:{traversable_tmp / 'milter'}"]
            ),
        ],
        env=service_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "there is no user 'no-such-user' to run as" in done.stderr
    assert "postwarden setup" in done.stderr and "--user" in done.stderr
    assert sorted(installation.state_dir.iterdir()) == before  # nothing created as root
