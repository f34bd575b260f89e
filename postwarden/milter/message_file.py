"""A message file read the way the milter receives a message from Postfix.

Description:
    The admin tools that run the milter's own code on a message (``postwarden spam-rule
    test FILE``, ``postwarden dkim test FILE``) need the message as the milter sees it: the
    header fields in order as (name, raw value) with the leading white space after the colon
    removed and folding kept, and the body as bytes with CRLF line ends. Line ends in the
    file may be LF or CRLF.

Errors:
    :class:`NotAMessage` when the file has no header field at all (the message says which
    line is wrong).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postwarden.errors import PostwardenError

MAX_MESSAGE = 64 * 1024 * 1024
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:(.*)", re.DOTALL)


class NotAMessage(PostwardenError):
    """Not an RFC 5322 message."""


@dataclass(frozen=True)
class MessageData:
    headers: list[tuple[str, bytes]]
    body: bytes


def parse_message(data: bytes) -> MessageData:
    """Split *data* into header fields and body (see the module docstring)."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    headers: list[tuple[str, bytes]] = []
    index = 0
    for index, line in enumerate(lines):
        if line == b"":
            break
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
            continue
        match = _FIELD.fullmatch(line)
        if match is None:
            raise NotAMessage(f"line {index + 1} is not a header field: {line[:60]!r}")
        headers.append((match.group(1).decode("ascii"), match.group(2).lstrip(b" \t")))
    else:
        index = len(lines)
    if not headers:
        raise NotAMessage("no header fields")
    body = b"\r\n".join(lines[index + 1 :])
    return MessageData(headers, body)
