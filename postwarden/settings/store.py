"""The settings file on disk: read, create, and edit atomically under a lock.

Description:
    Every change is read-modify-write under an exclusive ``flock`` on ``FILE.lock``: read and
    validate the current file, apply the change, write the canonical text to a temporary file
    in the same directory (same owner, group and mode as the file it replaces), ``fsync``,
    keep the previous version as ``FILE.bak``, ``rename`` over the file and ``fsync`` the
    directory. Readers (the daemons) therefore see the old file or the new one, never a mix,
    and two commands editing at once are serialised: neither loses the other's update.

    A change whose result would not validate is refused and nothing is written. A change that
    produces the same text as before writes nothing (idempotent commands for config tools).

Errors:
    :class:`SettingsNotFound`, :class:`SettingsExist`,
    :class:`~postwarden.settings.load.SettingsInvalid`, ``OSError`` from the file system.

Security:
    A new file is 0640 and group ``postwarden`` when that group exists (the daemons read it),
    else 0644. The file holds no secrets.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from postwarden.errors import PostwardenError
from postwarden.settings.load import Loaded, SettingsInvalid, dump, load_text
from postwarden.settings.model import Settings
from postwarden.util.files import read_regular_file

SERVICE_GROUP = "postwarden"


class SettingsNotFound(PostwardenError):
    """The settings file does not exist (create one with `postwarden init DOMAIN`)."""


class SettingsExist(PostwardenError):
    """The settings file exists already; it is never overwritten."""


@dataclass(frozen=True)
class EditResult:
    """What an edit did: the settings before and after, and whether the file changed."""

    before: Loaded
    after: Loaded
    changed: bool


def read_settings(path: Path) -> Loaded:
    """Read and validate the settings file at *path* (a regular file, as the daemons want)."""
    try:
        data = read_regular_file(path)
    except FileNotFoundError:
        raise SettingsNotFound(
            f"{path}: no such file (create it with `postwarden init DOMAIN`)"
        ) from None
    return load_text(data, str(path))


def create_settings(path: Path, settings: Settings) -> Loaded:
    """Write a new settings file; refuse if anything exists at *path*."""
    text = dump(settings)
    loaded = load_text(text, str(path))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    mode, gid = _new_file_mode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise SettingsExist(f"{path} exists already; it is never overwritten") from None
    try:
        if gid is not None:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return loaded


def edit_settings(
    path: Path, change: Callable[[Settings], Settings], *, dry_run: bool = False
) -> EditResult:
    """Apply *change* to the settings at *path* atomically; see the module description.

    *change* receives the current settings and returns the new ones; it may raise to refuse
    the change, in which case nothing is written. *dry_run* validates and reports the change
    the same way but writes nothing.
    """
    with _locked(path):
        current = read_settings(path)
        new_settings = change(current.settings)
        text = dump(new_settings)
        try:
            loaded = load_text(text, str(path))
        except SettingsInvalid as exc:
            # Line numbers of a text that is never written would mean nothing.
            raise SettingsInvalid([replace(f, line=0) for f in exc.findings]) from None
        if loaded.digest == current.digest:
            return EditResult(current, loaded, changed=False)
        if dry_run:
            return EditResult(current, loaded, changed=True)
        _replace(path, text.encode())
        return EditResult(current, loaded, changed=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + ".lock")
    # Read-only is enough for flock; group-readable so the web console (the service user, in
    # the directory's group) shares the lock with root's commands.
    fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _replace(path: Path, data: bytes) -> None:
    """Write *data* to a temporary file and rename it over *path*, keeping FILE.bak."""
    st = os.stat(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with contextlib.suppress(PermissionError):  # not root: keep our own ownership
            os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, st.st_mode & 0o7777)
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    backup = path.with_name(path.name + ".bak")
    backup_tmp = path.with_name(f".{path.name}.{os.getpid()}.bak")
    backup_tmp.unlink(missing_ok=True)
    os.link(path, backup_tmp)
    os.replace(backup_tmp, backup)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_file_mode() -> tuple[int, int | None]:
    try:
        return 0o640, grp.getgrnam(SERVICE_GROUP).gr_gid
    except KeyError:
        return 0o644, None
