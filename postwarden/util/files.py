"""Reading files that must be regular files: never through a symbolic link, never a FIFO."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path is not a regular file."""


def read_regular_file_stat(path: Path) -> tuple[bytes, os.stat_result]:
    """The bytes and status of *path*; a symbolic link or a non-regular file is refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(
                f"{path} is a symbolic link; postwarden reads only a regular file"
            ) from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        return f.read(), st


def read_regular_file(path: Path) -> bytes:
    return read_regular_file_stat(path)[0]
