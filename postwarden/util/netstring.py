"""Netstrings (``<length>:<bytes>,``), the framing of Postfix's socketmap protocol.

Description:
    Pure encoding and incremental decoding; no sockets. :class:`NetstringDecoder` accepts
    bytes as they arrive and yields complete payloads.

Protocol:
    ``12:hello world!,`` — decimal length without leading zeros beyond one, a colon, exactly
    that many bytes, a comma (socketmap_table(5), src/util/netstring.c).

Errors:
    :class:`BadNetstring` for a malformed frame or one longer than the decoder's limit; the
    stream cannot be resynchronised after that, so the caller closes the connection.
"""

from __future__ import annotations

from collections.abc import Iterator

from postwarden.errors import PostwardenError


class BadNetstring(PostwardenError):
    """A malformed netstring."""


def encode(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Incremental decoder with a maximum payload size."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._digits = len(str(max_length))

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Add *data*; yield every payload now complete."""
        self._buffer += data
        while True:
            colon = self._buffer.find(b":", 0, self._digits + 1)
            if colon < 0:
                if len(self._buffer) > self._digits:
                    raise BadNetstring("length prefix missing or too long")
                return
            digits = bytes(self._buffer[:colon])
            if not digits.isdigit() or (len(digits) > 1 and digits[0:1] == b"0"):
                raise BadNetstring("length is not a decimal number")
            length = int(digits)
            if length > self.max_length:
                raise BadNetstring(f"netstring longer than {self.max_length} bytes")
            end = colon + 1 + length
            if len(self._buffer) <= end:
                return
            if self._buffer[end] != ord(","):
                raise BadNetstring("netstring does not end with a comma")
            payload = bytes(self._buffer[colon + 1 : end])
            del self._buffer[: end + 1]
            yield payload
