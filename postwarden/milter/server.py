"""The asyncio I/O of postwarden-milter: packets in, replies and actions out.

Description:
    One :class:`MilterConnection` per Postfix connection, all on one event loop. It cuts
    the stream into packets (:mod:`postwarden.milter.protocol`), calls the connection's
    :class:`~postwarden.milter.app.PostwardenMilter`, and writes what Postfix waits for
    (with the no-reply options Postfix offers, only the negotiation and the end of
    message), all the replies one read produced in one write.

    libmilter, which this replaces, runs a thread per connection, and every callback then
    takes the interpreter lock from another OS thread: some twenty hand-offs a message,
    which cost more than the rest of the milter's work (``make bench``). Here a message is
    a few reads on one thread.

    End of message normally runs on the loop (planning and signing are CPU work of a
    fraction of a millisecond). Where the plan may ask policyd over the network (a route
    that keeps a local copy asks whether a recipient exists), it runs in a thread instead,
    so a slow answer holds up that message alone.

Protocol:
    A connection idle for :data:`IDLE_TIMEOUT` seconds is closed (Postfix's own milter
    timeouts are far shorter); past :data:`MAX_CONNECTIONS` at once a new one is closed
    unanswered, logged and counted (Postfix then applies ``milter_default_action``), and
    one that leaves :data:`MAX_PENDING_OUTPUT` bytes of replies unread is cut off. When
    the daemon stops, a connection between messages is closed at once, one in a message
    after its verdict.

Errors:
    Bytes that are not the milter protocol are logged and the connection closed (Postfix
    then applies ``milter_default_action``). An exception in a callback is logged; the
    message gets a temporary failure at its end (at negotiation or connect, when who the
    client is may be wrong, the connection is closed). Nothing in a message ends the daemon.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import cast

from postwarden.milter import protocol as mp
from postwarden.milter.app import PostwardenMilter, internal_error
from postwarden.server import IdleTimer, Refusals

log = logging.getLogger("postwarden.milter")

IDLE_TIMEOUT = 600.0
MAX_CONNECTIONS = 1000
MAX_PENDING_OUTPUT = 1 << 20  # bytes of replies a client leaves unread before it is cut off
MAX_PENDING_PACKETS = 100  # packets sent on while a verdict is worked out (Postfix: none)
_STEPS_WITH_REPLY_OPTION = {  # command -> the no-reply option that spares its reply
    mp.CONNECT: mp.P_NR_CONN,
    mp.HELO: mp.P_NR_HELO,
    mp.MAIL: mp.P_NR_MAIL,
    mp.RCPT: mp.P_NR_RCPT,
    mp.DATA: mp.P_NR_DATA,
    mp.HEADER: mp.P_NR_HDR,
    mp.EOH: mp.P_NR_EOH,
    mp.BODY: mp.P_NR_BODY,
    mp.UNKNOWN: mp.P_NR_UNKN,
}
_CONTINUE = mp.packet(mp.CONTINUE)
_SKIP = mp.packet(mp.SKIP)


class Connections:
    """The connections open now, bounded; refusals logged at most every few seconds."""

    def __init__(self, limit: int = MAX_CONNECTIONS) -> None:
        self.limit = limit
        self.members: set[MilterConnection] = set()
        self.stopping = False
        self._refusals = Refusals("postwarden-milter", limit)

    def admit(self, loop: asyncio.AbstractEventLoop, connection: MilterConnection) -> bool:
        if self.stopping:
            return False
        if len(self.members) < self.limit:
            self.members.add(connection)
            return True
        self._refusals.refused(loop.time())
        return False

    def stop(self) -> None:
        """Close the connections between messages now; the others after their message."""
        self.stopping = True
        for connection in list(self.members):
            connection.close_if_idle()


class MilterConnection(asyncio.Protocol):
    """One Postfix connection."""

    def __init__(
        self,
        connections: Connections,
        executor: concurrent.futures.Executor,
        may_block: Callable[[], bool],
    ) -> None:
        self._connections = connections
        self._executor = executor
        self._may_block = may_block  # may end of message wait on the network?
        self._reader = mp.PacketReader()
        self._milter = PostwardenMilter()
        self._transport: asyncio.Transport | None = None
        self._failed = False  # a callback of this message raised: temporary failure
        self._pending: list[tuple[bytes, bytes]] = []  # packets after an end of message
        self._in_eom = False
        self._idle: IdleTimer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        self._transport = cast(asyncio.Transport, transport)
        if not self._connections.admit(loop, self):
            self._transport.abort()
            return
        self._idle = IdleTimer(loop, IDLE_TIMEOUT, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._connections.members.discard(self)
        self._transport = None

    def close_if_idle(self) -> None:
        """Close the connection unless a message is in progress (the daemon stops)."""
        if self._transport is not None and self._milter.facts is None and not self._in_eom:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        if self._idle is not None:
            self._idle.touch()
        try:
            packets = self._reader.feed(data)
        except mp.MalformedPacket as exc:
            log.warning("malformed milter input, closing the connection: %s", exc)
            self._transport.close()
            return
        if self._in_eom:  # an MTA that sends on before our verdict: keep the order
            self._pending += packets
            if len(self._pending) > MAX_PENDING_PACKETS:
                log.warning("milter client sends on without waiting for the verdict; closing")
                self._transport.abort()
            return
        self._handle(packets)
        transport = self._transport
        if transport is not None and transport.get_write_buffer_size() > MAX_PENDING_OUTPUT:
            log.warning("milter client does not read its replies; closing")
            transport.abort()

    def _handle(self, packets: list[tuple[bytes, bytes]]) -> None:
        transport = self._transport
        out: list[bytes] = []
        for index, (command, data) in enumerate(packets):
            if transport is None or transport.is_closing():
                return
            if command == mp.BODYEOB:
                if data:
                    self._step(mp.BODY, data)  # a last chunk may come with the end
                if self._failed or not self._may_block():
                    out += self._end_of_message()
                    continue
                transport.write(b"".join(out))
                self._in_eom = True
                self._pending = packets[index + 1 :] + self._pending
                task = asyncio.get_running_loop().run_in_executor(self._executor, self._milter.eom)
                task.add_done_callback(self._eom_done)
                return
            try:
                reply = self._step(command, data)
            except mp.MalformedPacket as exc:
                log.warning("malformed milter input, closing the connection: %s", exc)
                transport.write(b"".join(out))
                transport.close()
                return
            if reply:
                out.append(reply)
        if out and transport is not None:
            transport.write(b"".join(out))
        if self._connections.stopping:
            self.close_if_idle()

    def _eom_done(self, future: asyncio.Future[list[bytes]]) -> None:
        self._in_eom = False
        try:
            packets = future.result()
        except Exception:  # eom() catches its own; this is the executor failing
            log.exception("end of message failed; temporary failure")
            packets = internal_error()
        if self._transport is not None:
            self._transport.write(b"".join(packets))
        pending, self._pending = self._pending, []
        self._handle(pending)

    def _end_of_message(self) -> list[bytes]:
        if self._failed:
            self._failed = False
            self._milter.abort()
            return internal_error()
        return self._milter.eom()

    def _step(self, command: bytes, data: bytes) -> bytes | None:
        """Handle one packet other than end of message; the reply, if one is due."""
        milter = self._milter
        try:
            if command == mp.HEADER:
                name, value = _two(data)
                milter.header(name.decode("utf-8", "surrogateescape"), value)
            elif command == mp.BODY:
                if milter.body(data) and not milter.protocol & mp.P_NR_BODY:
                    return _SKIP if milter.protocol & mp.P_SKIP else _CONTINUE
            elif command == mp.MACRO:
                stage, values = mp.parse_macros(data)
                milter.macros[stage] = values
                return None
            elif command == mp.RCPT:
                recipient, *params = mp.strings(data) or [b""]
                milter.envrcpt(_text(recipient), tuple(_text(p) for p in params))
            elif command == mp.MAIL:
                sender = (mp.strings(data) or [b""])[0]
                milter.envfrom(_text(sender))
            elif command == mp.CONNECT:
                milter.connect(mp.parse_connect(data))
            elif command == mp.OPTNEG:
                return milter.negotiate(mp.parse_optneg(data))
            elif command == mp.ABORT:
                self._failed = False
                milter.abort()
                _forget_message_macros(milter)
                return None
            elif command == mp.QUIT:
                if self._transport is not None:
                    self._transport.close()
                return None
            elif command == mp.QUIT_NC:  # the next connection follows on this socket
                self._failed = False
                milter.abort()
                milter.macros.clear()
                return None
            elif command not in _STEPS_WITH_REPLY_OPTION:
                raise mp.MalformedPacket(f"unknown command {command!r}")
        except mp.MalformedPacket:
            raise
        except Exception:
            if command in (mp.CONNECT, mp.OPTNEG):  # who the client is, unknown: end here
                log.exception("internal error in a milter callback; closing the connection")
                if self._transport is not None:
                    self._transport.close()
                return None
            log.exception("internal error in a milter callback; the message will be deferred")
            self._failed = True
        if milter.protocol & _STEPS_WITH_REPLY_OPTION[command]:
            return None
        return _CONTINUE

    def eof_received(self) -> bool:
        return False


def _two(data: bytes) -> tuple[bytes, bytes]:
    parts = mp.strings(data)
    if len(parts) == 1:
        return parts[0], b""
    if len(parts) != 2:
        raise mp.MalformedPacket("header packet is not a name and a value")
    return parts[0], parts[1]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _forget_message_macros(milter: PostwardenMilter) -> None:
    for stage in (mp.MAIL, mp.RCPT, mp.DATA, mp.EOH, mp.BODYEOB):
        milter.macros.pop(stage, None)
