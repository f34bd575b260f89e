"""The policy protocol and netstrings: parsing and formatting, apart from any socket."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postwarden.policyd.protocol import (
    MAX_REQUEST,
    MalformedRequest,
    format_reply,
    parse_request,
)
from postwarden.util.netstring import BadNetstring, NetstringDecoder, encode

REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n"
    b"client_name=mx.example.net\nsender=a@example.net\nrecipient=b@example.com\n"
    b"queue_id=\nsasl_username=\nencryption_protocol=TLSv1.3\nnew_in_postfix_9=x\n"
    b"ccert_subject=Caf\xc3\xa9"
)


def test_parse_request() -> None:
    request = parse_request(REQUEST)
    assert (request.protocol_state, request.client_address, request.sender, request.recipient) == (
        "RCPT",
        "192.0.2.1",
        "a@example.net",
        "b@example.com",
    )
    assert request.tls is True
    assert parse_request(REQUEST.replace(b"TLSv1.3", b"")).tls is False


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (b"request=smtpd_access_policy\nno equals sign", "line is not name=value"),
        (b"request=smtpd_access_policy\nBAD-NAME=x", "line is not name=value"),
        (b"protocol_state=RCPT", "unsupported request type (none)"),
        (b"request=junk", "unsupported request type 'junk'"),
        (b"request=smtpd_access_policy\nx=" + b"a" * MAX_REQUEST, "larger than"),
    ],
)
def test_malformed_requests(block: bytes, message: str) -> None:
    with pytest.raises(MalformedRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_request(block)


def test_reply_cannot_be_split_by_a_newline() -> None:
    assert format_reply("REJECT a\nb") == b"action=REJECT a b\n\n"


def test_netstrings_arriving_byte_by_byte() -> None:
    stream = encode(b"tlspolicy example.com") + encode(b"") + encode(b"x" * 100)
    decoder = NetstringDecoder(1000)
    frames = [frame for byte in stream for frame in decoder.feed(bytes([byte]))]
    assert frames == [b"tlspolicy example.com", b"", b"x" * 100]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"abcdefgh", "length prefix missing"),
        (b"x:", "not a decimal"),
        (b"01:a,", "not a decimal"),
        (b"3:abc;", "does not end with a comma"),
        (b"2000:", "longer than 1000"),
        (b"99999:", "too long"),
    ],
)
def test_bad_netstrings(data: bytes, message: str) -> None:
    with pytest.raises(BadNetstring, match=message):
        list(NetstringDecoder(1000).feed(data))


@given(st.binary(max_size=300))
def test_netstring_decoder_never_fails_unexpectedly(data: bytes) -> None:
    try:
        frames = list(NetstringDecoder(100).feed(data))
    except BadNetstring:
        return
    assert all(len(frame) <= 100 for frame in frames)


@given(st.binary(max_size=2000))
def test_request_parser_only_raises_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedRequest):
        parse_request(data)
