"""Run file operations as the owner of a directory when we are root.

Description:
    The command line runs as root; the daemons run as the unprivileged service user and own
    the state directory. A file root creates there (an SQLite ``-wal``/``-shm`` file, a key)
    would be root's and unusable by the daemons, so root acts as the directory's owner for
    the duration of such work instead of chown-ing afterwards (which races with the daemons).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


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
