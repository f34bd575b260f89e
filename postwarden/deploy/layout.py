"""What an installation consists of on disk, who owns it, and how to make it so (idempotent).

Description:
    :func:`plan` lists the :class:`Step` s of ``postwarden setup``; each checks whether the
    system already is as it should be and, if not, says why and can make it so:

    ====================================  ======================  ======
    what                                  owner                   mode
    ====================================  ======================  ======
    the service group and user            system account, no login, no home
    the settings directory (/etc/...)     root:SERVICE            0750
    the settings file                     root:SERVICE            0640
    the state directory (/var/lib/...)    SERVICE:SERVICE         0750
    everything in the state directory     SERVICE
    the socket directory (spool/...)      SERVICE:POSTFIX-GROUP   2750
    the systemd units                     root:root               0644
    ====================================  ======================  ======

    The settings are root's to change and the daemons' to read; the state is the daemons'
    (the command line writes it as its owner); the socket directory is setgid, so that the
    sockets the daemons create there get Postfix's group (0660: Postfix connects, nobody
    else), and lies inside Postfix's queue directory, which a chrooted smtpd sees as its /.

Errors:
    :class:`SetupError` when a step cannot be taken (the message says which and why).

Security:
    Nothing is made group- or world-writable; nothing outside the listed paths is touched.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postwarden.errors import PostwardenError


class SetupError(PostwardenError):
    """A setup step failed."""


@dataclass(frozen=True)
class Step:
    """One thing setup makes sure of."""

    what: str
    check: Callable[[], str | None]  # None: already so; else what is wrong
    apply: Callable[[], None]
    verb: str = "create"  # what applying means when the thing is missing


def plan(
    *,
    user: str,
    settings: Path,
    state_dir: Path,
    socket_dir: Path,
    socket_group: str,
    units: dict[Path, str],
) -> list[Step]:
    """The steps, in the order they must run (accounts before what they own)."""
    steps = [_group(user), _user(user)]
    steps.append(_directory(settings.parent, "root", user, 0o750))
    steps.append(_file_mode(settings, "root", user, 0o640))
    steps.append(_directory(state_dir, user, user, 0o750))
    steps.append(_contents(state_dir, user))
    steps.append(_directory(socket_dir, user, socket_group, 0o2750))
    steps += [_unit(path, text) for path, text in units.items()]
    return steps


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise SetupError(f"{' '.join(argv)}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _group(name: str) -> Step:
    def check() -> str | None:
        try:
            grp.getgrnam(name)
        except KeyError:
            return "missing"
        return None

    return Step(f"group {name} (system group)", check, lambda: _run(["groupadd", "--system", name]))


def _user(name: str) -> Step:
    def check() -> str | None:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return "missing"
        if entry.pw_uid == 0:
            raise SetupError(f"user {name} is root: name a service user of its own (--user)")
        return None

    argv = ["useradd", "--system", "--gid", name, "--no-create-home", "--home-dir"]
    argv += ["/nonexistent", "--shell", "/usr/sbin/nologin", "--comment", "postwarden", name]
    return Step(f"user {name} (system user: no login, no home)", check, lambda: _run(argv))


def _ids(owner: str, group: str) -> tuple[int, int]:
    try:
        return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise SetupError(f"no such user or group: {exc.args[0]}") from None


def _names(st: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{owner}:{group} {stat.S_IMODE(st.st_mode):04o}"


def _wrong(path: Path, owner: str, group: str, mode: int) -> str | None:
    """None if *path* has this owner, group and mode; else what it has."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise SetupError(f"{path} is a symbolic link: setup does not follow it")
    try:
        uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    except KeyError:
        return f"is {_names(st)}"  # the account is made by an earlier step
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (uid, gid, mode):
        return f"is {_names(st)}"
    return None


def _directory(path: Path, owner: str, group: str, mode: int) -> Step:
    def check() -> str | None:
        if not path.exists():
            return "missing"
        if not path.is_dir():
            raise SetupError(f"{path} exists and is not a directory")
        return _wrong(path, owner, group, mode)

    def apply() -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # no moment with a wider mode
        os.chown(path, *_ids(owner, group))
        os.chmod(path, mode)

    return Step(f"{path}  {owner}:{group} {mode:04o}", check, apply)


def _file_mode(path: Path, owner: str, group: str, mode: int) -> Step:
    def check() -> str | None:
        if not path.exists():
            return None  # `postwarden init` creates it, with these very owner and mode
        return _wrong(path, owner, group, mode)

    def apply() -> None:
        os.chown(path, *_ids(owner, group))
        os.chmod(path, mode)

    return Step(f"{path}  {owner}:{group} {mode:04o}", check, apply, verb="fix")


def _contents(directory: Path, owner: str) -> Step:
    """Files in the state directory made by root (an older postwarden, a hand-run daemon)."""

    def strays() -> list[Path]:
        if not directory.is_dir():
            return []
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            return []
        return [p for p in directory.rglob("*") if p.lstat().st_uid != uid]

    def check() -> str | None:
        found = strays()
        if not found:
            return None
        shown = ", ".join(str(p.relative_to(directory)) for p in found[:3])
        return f"{len(found)} not the service user's ({shown}{', ...' if len(found) > 3 else ''})"

    def apply() -> None:
        uid, gid = _ids(owner, owner)
        for path in strays():
            os.lchown(path, uid, gid)

    return Step(f"everything in {directory}  owned by {owner}", check, apply, verb="fix")


def _unit(path: Path, text: str) -> Step:
    def check() -> str | None:
        if not path.exists():
            return "missing"
        return None if path.read_text() == text else "differs from this installation's"

    def apply() -> None:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    return Step(f"{path}", check, apply, verb="write")
