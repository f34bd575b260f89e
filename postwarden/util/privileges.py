"""Least privilege: daemons drop from root to the service user; root acts as a directory's owner.

Description:
    A daemon started as root (by hand, by an init system without ``User=``) opens its
    listeners first — a port below 1024, a socket in a directory only root may write — and
    then becomes the service user for good (:func:`drop_to`), as Postfix's own daemons do:
    primary group, the user's supplementary groups (as systemd's ``User=`` sets them), then
    the user id, real, effective and saved alike, so root cannot be regained. Unix sockets
    opened as root are first handed over (:func:`hand_over`) so that they look as if the
    service user had made them. Started as anyone else, a daemon stays who it is.

    The command line runs as root; the daemons own the state directory. A file root creates
    there (an SQLite ``-wal``/``-shm`` file, a key) would be root's and unusable by the
    daemons, so root acts as the directory's owner for the duration of such work
    (:func:`as_owner_of`) instead of chown-ing afterwards (which races with the daemons).

Errors:
    :class:`CannotDrop` when the service user does not exist or is root.

Security:
    After :func:`drop_to` the process has no way back to root (checked, not assumed).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from postwarden.errors import PostwardenError


class CannotDrop(PostwardenError):
    """Cannot become the service user."""


@dataclass(frozen=True)
class Account:
    """A user to run as: name, uid and primary gid."""

    name: str
    uid: int
    gid: int


def account(name: str) -> Account:
    """The account *name*; :class:`CannotDrop` (saying how to fix it) when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise CannotDrop(
            f"there is no user {name!r} to run as: create it with `postwarden setup`,"
            " or name another with --user"
        ) from None
    if entry.pw_uid == 0:
        raise CannotDrop(f"--user {name} is root: a daemon must not keep root's privileges")
    return Account(name, entry.pw_uid, entry.pw_gid)


def running_as_root() -> bool:
    return os.geteuid() == 0


def drop_to(user: Account) -> None:
    """Become *user* for good (root only): groups first, then the user ids, then verify."""
    os.initgroups(user.name, user.gid)
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    if os.getresuid() != (user.uid,) * 3 or os.getresgid() != (user.gid,) * 3:
        raise CannotDrop(f"could not become {user.name}")
    with contextlib.suppress(PermissionError):
        os.setuid(0)
        raise CannotDrop(f"still able to become root after switching to {user.name}")


def blocked_for(path: Path, user: Account) -> Path | None:
    """The first directory on the way to *path* that *user* cannot pass, or *path* itself if
    the user may not execute it; None when the user can run *path*."""
    groups = {user.gid, *os.getgrouplist(user.name, user.gid)}

    def may(st: os.stat_result, bit: int) -> bool:
        if st.st_uid == user.uid:
            return bool(st.st_mode & (bit << 6))
        if st.st_gid in groups:
            return bool(st.st_mode & (bit << 3))
        return bool(st.st_mode & bit)

    for directory in reversed(path.parents):
        if not may(os.stat(directory), 1):
            return directory
    return None if may(os.stat(path), 1) else path


def hand_over(path: str | Path, user: Account) -> None:
    """Give a socket root created to *user*: its owner, and its group unless the directory
    hands down its own (setgid, e.g. group postfix in Postfix's spool)."""
    setgid_dir = bool(os.stat(Path(path).parent).st_mode & stat.S_ISGID)
    os.chown(path, user.uid, -1 if setgid_dir else user.gid)


@contextlib.contextmanager
def as_owner_of(directory: Path) -> Iterator[None]:
    """Switch effective uid/gid to *directory*'s owner while inside (only when root)."""
    if os.geteuid() != 0:
        yield
        return
    st = os.stat(directory)
    if st.st_uid == 0:
        yield
        return
    os.setegid(st.st_gid)
    os.seteuid(st.st_uid)
    mask = os.umask(0o027)  # what is created here is the owner's, readable by its group only
    try:
        yield
    finally:
        os.umask(mask)
        os.seteuid(0)
        os.setegid(0)
