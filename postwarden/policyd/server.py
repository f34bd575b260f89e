"""The asyncio I/O of postwarden-policyd: bytes in, frames out, replies back.

Description:
    One :class:`FramedProtocol` per Postfix connection; connections are persistent and many
    run at once (each smtpd keeps its own). The protocol cuts the byte stream into frames —
    policy request blocks ending with an empty line, or netstrings — hands each to a
    synchronous answer function, and writes the reply. Nothing here parses attributes or
    decides anything.

Protocol:
    Idle connections are closed after :data:`IDLE_TIMEOUT` seconds, longer than Postfix's own
    ``smtpd_policy_service_max_idle`` (300 s), so Postfix, not we, ends idle connections.

Errors:
    A malformed frame is logged and the connection closed without a reply (what
    SMTPD_POLICY_README asks of a policy server "in case of trouble"); an unexpected error
    while answering is logged with its traceback and answered with a temporary failure, and
    the daemon goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import cast

from postwarden import metrics
from postwarden.errors import PostwardenError
from postwarden.policyd.protocol import MAX_REQUEST
from postwarden.server import CountedProtocol, IdleTimer
from postwarden.util.netstring import NetstringDecoder, encode

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 600.0
MAX_PENDING_OUTPUT = 1 << 20


class FramedProtocol(CountedProtocol):
    """Frames in, replies out, over one connection."""

    def __init__(
        self,
        frames: Callable[[bytes], Iterator[bytes]],
        answer: Callable[[bytes], bytes],
        on_error: bytes | None,
        name: str,
    ) -> None:
        self._frames = frames
        self._answer = answer
        self._on_error = on_error
        self._name = name
        self._transport: asyncio.Transport | None = None
        self._idle: IdleTimer | None = None
        self._peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self._idle = IdleTimer(asyncio.get_running_loop(), IDLE_TIMEOUT, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._transport = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._idle is not None:
            self._idle.touch()
        replies: list[bytes] = []
        try:
            for frame in self._frames(data):
                replies.append(self._reply(frame))
        except PostwardenError as exc:
            transport.write(b"".join(replies))  # the requests before the bad one are answered
            log.warning("%s: malformed input from %s, closing: %s", self._name, self._peer, exc)
            transport.close()
            return
        transport.write(b"".join(replies))
        if transport.get_write_buffer_size() > MAX_PENDING_OUTPUT:
            log.warning("%s: %s does not read its replies, closing", self._name, self._peer)
            transport.abort()

    def _reply(self, frame: bytes) -> bytes:
        try:
            return self._answer(frame)
        except PostwardenError:
            raise
        except Exception:
            if self._on_error is None:
                raise
            metrics.ERRORS.inc()
            log.exception(
                "%s: internal error answering %s; temporary failure", self._name, self._peer
            )
            return self._on_error

    def eof_received(self) -> bool:
        return False  # a half-closed connection is closed: there is no one left to answer


class PolicyFraming:
    """Cut a stream into policy request blocks (terminated by an empty line).

    A partial request is kept up to :data:`MAX_REQUEST` bytes, and each byte is searched
    once however slowly it arrives (no quadratic re-scan of a request sent a byte at a time).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # the buffer holds no terminator before this offset

    def __call__(self, data: bytes) -> Iterator[bytes]:
        if not self._buffer and data.endswith(b"\n\n") and data.find(b"\n\n") == len(data) - 2:
            if len(data) - 2 > MAX_REQUEST:
                raise _TooLarge(f"request larger than {MAX_REQUEST} bytes")
            yield data[:-2]  # the usual case: exactly one whole request
            return
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\n\n", max(0, self._scanned - 1))
            if end < 0:
                if len(buffer) > MAX_REQUEST:
                    raise _TooLarge(f"request larger than {MAX_REQUEST} bytes")
                self._scanned = len(buffer)
                return
            block = bytes(buffer[:end])
            del buffer[: end + 2]
            self._scanned = 0
            yield block


class _TooLarge(PostwardenError):
    """A request without end."""


def socketmap_framing(max_length: int = 10_000) -> Callable[[bytes], Iterator[bytes]]:
    return NetstringDecoder(max_length).feed


def netstring_reply(answer: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return lambda frame: encode(answer(frame))
