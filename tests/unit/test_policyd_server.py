"""The policyd I/O layer in-process: framing, errors, half-closed connections."""

from __future__ import annotations

import asyncio

from postwarden.errors import PostwardenError
from postwarden.policyd.server import FramedProtocol, PolicyFraming


def _answer(frame: bytes) -> bytes:
    if frame == b"boom":
        raise ZeroDivisionError("a bug")
    if frame == b"bad":
        raise PostwardenError("malformed")
    return b"action=" + frame + b"\n\n"


async def _exchange(data: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FramedProtocol(PolicyFraming(), _answer, b"action=451 4.3.5 tempfail\n\n", "t"),
        "127.0.0.1",
        0,
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    writer.write_eof()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    server.close()
    await server.wait_closed()
    return reply


def test_requests_split_anywhere_are_answered_in_order() -> None:
    assert asyncio.run(_exchange(b"OK\n\nDUNNO\n\n")) == b"action=OK\n\naction=DUNNO\n\n"


def test_an_internal_error_is_a_temporary_failure_for_that_request_only() -> None:
    reply = asyncio.run(_exchange(b"OK\n\nboom\n\nDUNNO\n\n"))
    assert reply == b"action=OK\n\naction=451 4.3.5 tempfail\n\naction=DUNNO\n\n"


def test_malformed_input_closes_after_answering_what_came_before() -> None:
    assert asyncio.run(_exchange(b"OK\n\nbad\n\nDUNNO\n\n")) == b"action=OK\n\n"


def test_half_closed_connection_mid_request_gets_no_answer() -> None:
    assert asyncio.run(_exchange(b"OK\n\nincomplete")) == b"action=OK\n\n"
