"""What postwarden-milter negotiates with the MTA, seen on the wire.

Postfix waits for a milter's reply after every step unless the milter negotiated "no
reply" for it; each wait is a round trip through cleanup per header field. The daemon,
run as the service user, is asked as Postfix asks (SMFIC_OPTNEG offering everything).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from tests.harness import ServiceUser
from tests.integration.daemons import Installation, MilterDaemon

pytestmark = pytest.mark.postfix

OFFERED_PROTOCOL = 0x1FFFFF  # every step and every no-reply option libmilter knows


@pytest.fixture
def milter(traversable_tmp: Path, service_user: ServiceUser) -> Iterator[MilterDaemon]:
    installation = Installation(traversable_tmp, service_user)
    daemon = MilterDaemon(installation)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _negotiate(port: int) -> tuple[int, int, int]:
    """Send SMFIC_OPTNEG (version 6, all actions, all protocol options); the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        data = b"O" + struct.pack("!III", 6, Milter.CURR_ACTS, OFFERED_PROTOCOL)
        conn.sendall(struct.pack("!I", len(data)) + data)
        (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
        reply = conn.recv(length, socket.MSG_WAITALL)
    assert reply[:1] == b"O", reply
    version, actions, protocol = struct.unpack("!III", reply[1:13])
    return version, actions, protocol


def test_steps_are_negotiated_without_replies_and_unused_ones_off(milter: MilterDaemon) -> None:
    _, actions, protocol = _negotiate(milter.port)
    no_reply = (
        Milter.P_NR_CONN | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_HDR | Milter.P_NR_BODY
    )
    assert protocol & no_reply == no_reply  # connect, MAIL, RCPT, headers, body: no waiting
    skipped = Milter.P_NOHELO | Milter.P_NODATA | Milter.P_NOUNKNOWN | Milter.P_NOEOH
    assert protocol & skipped == skipped
    assert not protocol & (Milter.P_SKIP | Milter.P_NOBODY | Milter.P_NOHDRS)
    assert actions & Milter.SETSYMLIST and actions & Milter.ADDHDRS
