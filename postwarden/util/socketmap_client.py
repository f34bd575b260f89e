"""A client of Postfix's socketmap protocol, for one daemon asking another on this host.

Description:
    :class:`SocketmapClient` keeps one connection (re-opened after any error) and sends
    ``name key`` requests as Postfix's ``dict_sockmap`` does; the answer is the data of
    ``OK data``, ``None`` for ``NOTFOUND``. Calls are serialised with a lock, so threads
    may share one client.

Protocol:
    socketmap_table(5): each request and reply is one netstring; replies ``OK data``,
    ``NOTFOUND ``, ``TEMP reason``, ``TIMEOUT reason``, ``PERM reason``.

Errors:
    :class:`SocketmapError` for a TEMP/TIMEOUT/PERM answer or one that cannot be read;
    ``OSError`` when the server cannot be reached or does not answer within the timeout.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from postwarden.errors import PostwardenError
from postwarden.util.netstring import NetstringDecoder, encode

MAX_REPLY = 100_000  # Postfix's own limit on a socketmap reply


class SocketmapError(PostwardenError):
    """The socketmap server gave no usable answer."""


class SocketmapClient:
    """``lookup(name, key)`` over one persistent connection made by *connect*."""

    def __init__(self, connect: Callable[[], socket.socket], timeout: float = 2.0) -> None:
        self._connect = connect
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: socket.socket | None = None

    def lookup(self, name: str, key: str) -> str | None:
        with self._lock:
            try:
                return self._lookup(name, key)
            except (OSError, SocketmapError):
                self._close()
                raise

    def _lookup(self, name: str, key: str) -> str | None:
        if self._conn is None:
            self._conn = self._connect()
            self._conn.settimeout(self._timeout)
        self._conn.sendall(encode(f"{name} {key}".encode()))
        decoder = NetstringDecoder(MAX_REPLY)
        while True:
            data = self._conn.recv(4096)
            if not data:
                raise SocketmapError("the server closed the connection")
            for reply in decoder.feed(data):
                return _answer(reply.decode("utf-8", "replace"))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()


def _answer(reply: str) -> str | None:
    status, _, data = reply.partition(" ")
    if status == "OK":
        return data
    if status == "NOTFOUND":
        return None
    raise SocketmapError(f"socketmap answered {reply[:200]!r}")
