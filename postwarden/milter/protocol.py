"""The milter protocol, version 6, as Postfix speaks it: packets in, packets out.

Description:
    Pure parsing and formatting; no sockets (the I/O is :mod:`postwarden.milter.server`).
    The constants are libmilter's (``mfdef.h``, ``mfapi.h``); a unit test checks them
    against pymilter's copies.

Protocol:
    Every packet is a 32-bit length in network order, a command byte and its data; the
    length counts the command byte. Strings are NUL-terminated. :class:`PacketReader`
    cuts a byte stream into ``(command, data)`` pairs; the ``encode_*`` functions make the
    replies and the end-of-message actions.

Errors:
    :class:`MalformedPacket` for a length of zero or above :data:`MAX_PACKET`, or data a
    command cannot carry (safe to log: it names no content).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from postwarden.errors import PostwardenError

VERSION = 6
MAX_PACKET = 1 << 20  # Postfix sends body chunks of at most 64 KB; anything larger is wrong

# Commands from the MTA (SMFIC_*).
ABORT, BODY, CONNECT, MACRO, BODYEOB = b"A", b"B", b"C", b"D", b"E"
HELO, QUIT_NC, HEADER, MAIL, EOH = b"H", b"K", b"L", b"M", b"N"
OPTNEG, QUIT, RCPT, DATA, UNKNOWN = b"O", b"Q", b"R", b"T", b"U"

# Replies and actions (SMFIR_*).
ADDRCPT, DELRCPT, ADDRCPT_PAR = b"+", b"-", b"2"
ACCEPT, CONTINUE, DISCARD, REJECT, SKIP, TEMPFAIL = b"a", b"c", b"d", b"r", b"s", b"t"
ADDHEADER, INSHEADER, CHGHEADER, REPLYCODE = b"h", b"i", b"m", b"y"

# Actions the milter may take (SMFIF_*).
F_ADDHDRS, F_ADDRCPT, F_DELRCPT, F_CHGHDRS = 0x1, 0x4, 0x8, 0x10
F_ADDRCPT_PAR, F_SETSYMLIST = 0x80, 0x100

# Protocol options (SMFIP_*): steps the MTA need not send, replies it need not wait for.
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT, P_NOBODY = 0x1, 0x2, 0x4, 0x8, 0x10
P_NOHDRS, P_NOEOH, P_NR_HDR, P_NOUNKNOWN, P_NODATA = 0x20, 0x40, 0x80, 0x100, 0x200
P_SKIP, P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x400, 0x1000, 0x2000, 0x4000, 0x8000
P_NR_DATA, P_NR_UNKN, P_NR_EOH, P_NR_BODY = 0x10000, 0x20000, 0x40000, 0x80000

# Macro stages for the macro list (SMFIM_*).
M_CONNECT, M_HELO, M_ENVFROM, M_ENVRCPT, M_DATA, M_EOM, M_EOH = range(7)

_LENGTH = struct.Struct("!I")
_OPTNEG = struct.Struct("!III")
_INDEX = struct.Struct("!I")


class MalformedPacket(PostwardenError):
    """Bytes that are not the milter protocol."""


class PacketReader:
    """Cut a byte stream into packets; a partial packet waits for the rest."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        buffer = self._buffer
        buffer += data
        packets = []
        offset, end = 0, len(buffer)
        while end - offset >= 4:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if not 0 < length <= MAX_PACKET:
                raise MalformedPacket(f"packet length {length}")
            if end - offset - 4 < length:
                break
            start = offset + 4
            command = bytes(buffer[start : start + 1])
            packets.append((command, bytes(buffer[start + 1 : start + length])))
            offset = start + length
        del buffer[:offset]
        return packets


def packet(command: bytes, data: bytes = b"") -> bytes:
    return _LENGTH.pack(len(data) + 1) + command + data


def strings(data: bytes) -> list[bytes]:
    """The NUL-terminated strings of *data* (a missing last NUL is forgiven)."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


@dataclass(frozen=True)
class Options:
    """What the MTA offers in SMFIC_OPTNEG."""

    version: int
    actions: int
    protocol: int


def parse_optneg(data: bytes) -> Options:
    if len(data) < _OPTNEG.size:
        raise MalformedPacket("option negotiation too short")
    return Options(*_OPTNEG.unpack_from(data))


def encode_optneg(actions: int, protocol: int, macros: dict[int, tuple[str, ...]]) -> bytes:
    """The negotiation reply, with the macros wanted per stage (needs F_SETSYMLIST)."""
    lists = b"".join(
        _INDEX.pack(stage) + " ".join(names).encode("ascii") + b"\0"
        for stage, names in macros.items()
    )
    return packet(OPTNEG, _OPTNEG.pack(VERSION, actions, protocol) + lists)


def parse_macros(data: bytes) -> tuple[bytes, dict[str, str]]:
    """The stage's command byte and its macros, names without braces."""
    if not data:
        raise MalformedPacket("macro packet without a command")
    items = strings(data[1:])
    return data[:1], {
        _bare(items[i].decode("utf-8", "surrogateescape")): items[i + 1].decode(
            "utf-8", "surrogateescape"
        )
        for i in range(0, len(items) - 1, 2)
    }


def _bare(name: str) -> str:
    return name[1:-1] if name.startswith("{") and name.endswith("}") else name


def parse_connect(data: bytes) -> str | None:
    """The client's IP address, or None (unix socket, unknown, local submission)."""
    end = data.find(b"\0")
    if end < 0 or end + 1 >= len(data):
        raise MalformedPacket("connect without a family")
    family = data[end + 1 : end + 2]
    if family not in (b"4", b"6"):
        return None
    address = strings(data[end + 4 :])  # after the family byte and the 16-bit port
    if not address:
        raise MalformedPacket("connect without an address")
    return address[0].decode("ascii", "replace")


def encode_reply(code: str, xcode: str, text: str) -> bytes:
    """SMFIR_REPLYCODE: "550 5.7.1 text" (one line; a line break would end the reply)."""
    line = f"{code} {xcode} {text}".replace("\r", " ").replace("\n", " ")
    return packet(REPLYCODE, line.encode("utf-8", "replace") + b"\0")


def encode_header(name: str, value: str, index: int | None = None) -> bytes:
    """Add a header field at the end, or insert it at *index* (0: first)."""
    fields = _text(name) + _text(value)
    if index is None:
        return packet(ADDHEADER, fields)
    return packet(INSHEADER, _INDEX.pack(index) + fields)


def encode_change_header(name: str, index: int, value: str) -> bytes:
    """Change the *index*-th (from 1) field called *name*; an empty value deletes it."""
    return packet(CHGHEADER, _INDEX.pack(index) + _text(name) + _text(value))


def encode_add_recipient(address: str, params: str = "") -> bytes:
    if params:
        return packet(ADDRCPT_PAR, _text(address) + _text(params))
    return packet(ADDRCPT, _text(address))


def encode_delete_recipient(address: str) -> bytes:
    return packet(DELRCPT, _text(address))


def _text(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape").replace(b"\0", b"") + b"\0"
