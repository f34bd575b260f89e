"""``postwarden setup``: what it makes, with which owners and modes; again, it changes nothing.

Paths go to a temporary tree (``--settings``, ``--state-dir``, ``--unit-dir`` and a Postfix
configuration whose queue directory is there); the service user is the tests' own.
README "Install on a server" runs it with the real paths (tests/integration/test_install.py).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ServiceUser, spawn_as_service_user


class Tree:
    """A server's paths under *base*."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.settings = base / "etc" / "postwarden" / "settings.yaml"
        self.state = base / "var" / "lib" / "postwarden"
        self.units = base / "etc" / "systemd" / "system"
        self.postfix = base / "etc" / "postfix"
        self.spool = base / "var" / "spool" / "postfix"
        self.postfix.mkdir(parents=True)
        self.spool.mkdir(parents=True)
        (self.postfix / "main.cf").write_text(f"queue_directory = {self.spool}\n")

    def argv(self, *more: str) -> list[str]:
        return [
            *(sys.executable, "-m", "postwarden.cli", "--settings", str(self.settings)),
            *("--state-dir", str(self.state), "setup", "--unit-dir", str(self.units)),
            *("--postfix-config-dir", str(self.postfix), *more),
        ]

    def setup(self, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*more), capture_output=True, text=True, timeout=60, check=False
        )

    def setup_json(self, *more: str) -> dict[str, Any]:
        done = self.setup("--json", *more)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def files(self) -> dict[str, tuple[int, int, int, bytes]]:
        """Every path under the tree with owner, group, mode and (files) content."""
        found = {}
        for path in sorted(self.base.rglob("*")):
            st = path.lstat()
            content = path.read_bytes() if path.is_file() else b""
            found[str(path)] = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), content)
        return found


def _owner(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return (
        pwd.getpwuid(st.st_uid).pw_name,
        grp.getgrgid(st.st_gid).gr_name,
        f"{stat.S_IMODE(st.st_mode):04o}",
    )


@pytest.fixture
def tree(traversable_tmp: Path, service_user: ServiceUser) -> Tree:
    return Tree(traversable_tmp)


def test_dry_run_changes_nothing(tree: Tree) -> None:
    before = tree.files()
    data = tree.setup_json("--dry-run")
    assert tree.files() == before
    states = {s["what"].split()[0]: s["state"] for s in data["steps"]}
    assert states[str(tree.state)] == "would create"
    assert states[str(tree.units / "postwarden-milter.service")] == "would write"


def test_setup_makes_the_layout_and_a_second_run_changes_nothing(tree: Tree) -> None:
    data = tree.setup_json()
    assert _owner(tree.settings.parent) == ("root", "postwarden", "0750")
    assert _owner(tree.state) == ("postwarden", "postwarden", "0750")
    assert _owner(tree.spool / "postwarden") == ("postwarden", "postfix", "2750")
    for name in ("postwarden-policyd.service", "postwarden-milter.service"):
        unit = (tree.units / name).read_text()
        assert _owner(tree.units / name) == ("root", "root", "0644")
        assert f"ExecStart={Path(sys.executable).parent}/{name.split('.')[0]} " in unit
        assert f"--state-dir {tree.state} --syslog" in unit
        assert f"ReadWritePaths={tree.spool / 'postwarden'}" in unit
        done = subprocess.run(
            ["systemd-analyze", "verify", str(tree.units / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    steps = "\n".join(data["next_steps"])
    assert "init YOUR-PRIMARY-DOMAIN" in steps and "systemctl enable --now" in steps
    assert f"--milter unix:{tree.spool}/postwarden/milter" in steps
    before = tree.files()
    again = tree.setup_json()
    assert {s["state"] for s in again["steps"]} == {"ok"}
    assert tree.files() == before


def test_setup_repairs_what_drifted(tree: Tree, service_user: ServiceUser) -> None:
    tree.setup_json()
    tree.settings.write_text("version: 1\n")  # as root, 0644 root:root
    os.chmod(tree.settings, 0o644)
    (tree.state / "state.db").write_text("")  # a daemon once run by hand as root
    data = tree.setup_json()
    fixed = {s["what"].split()[0]: s for s in data["steps"] if s["state"] != "ok"}
    assert set(fixed) == {str(tree.settings), "everything"}
    assert fixed[str(tree.settings)]["was"] == "is root:root 0644"
    assert _owner(tree.settings) == ("root", "postwarden", "0640")
    assert (tree.state / "state.db").stat().st_uid == service_user.uid


def test_setup_refuses_without_postfix_configuration_or_root(
    tree: Tree, service_user: ServiceUser
) -> None:
    (tree.postfix / "main.cf").unlink()
    done = tree.setup()
    assert done.returncode == 1
    assert "cannot read Postfix's configuration" in done.stderr
    assert "--postfix-config-dir" in done.stderr
    as_user = spawn_as_service_user(
        tree.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, err = as_user.communicate(timeout=60)
    assert as_user.returncode == 1 and "setup must run as root" in err
    assert not tree.state.exists() and not tree.units.exists()
