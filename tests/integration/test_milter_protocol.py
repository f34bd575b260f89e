"""postwarden-milter on the wire: negotiation, whole conversations, bad input, libmilter.

Postfix waits for a milter's reply after every step unless the milter negotiated "no
reply" for it; each wait is a round trip through cleanup per header field. The daemon,
run as the service user, is asked as Postfix asks (SMFIC_OPTNEG offering everything), and
as an MTA without those options would; input that is not the protocol, or a client that
never reads, costs it that connection only. Its actions and verdicts are compared byte for
byte with what libmilter sends for the same calls (``reference_milter.py``).
"""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest

from postwarden.milter import protocol as mp
from tests.harness import ServiceUser, free_port, stop_process, wait_for_port
from tests.integration import reference_milter
from tests.integration.daemons import Installation, MilterDaemon

pytestmark = pytest.mark.postfix

OFFERED_PROTOCOL = 0x1FFFFF  # every step and every no-reply option libmilter knows


SETTINGS = (
    "version: 1\nprimary_domain: hosted.test\nspam_filter: {body_limit: 1024}\n"
    "domains:\n  hosted.test:\n...\n"
)


@pytest.fixture
def milter(traversable_tmp: Path, service_user: ServiceUser) -> Iterator[MilterDaemon]:
    installation = Installation(traversable_tmp, service_user)
    installation.write(SETTINGS)
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


# -- a whole conversation, as an MTA without Postfix's options would hold it ---------------


def _packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def _message(client: str, *, extra_body: bytes = b"") -> list[bytes]:
    """The packets of one message from *client* carrying a forged X-Postwarden-Trusted."""
    return [
        _packet(
            b"C", b"mx.sender.example\x004" + struct.pack("!H", 2525) + client.encode() + b"\0"
        ),
        _packet(b"M", b"<alice@sender.example>\0"),
        _packet(b"R", b"<bob@hosted.test>\0"),
        _packet(b"L", b"From\0alice@sender.example\0"),
        _packet(b"L", b"X-Postwarden-Trusted\0yes\0"),
        _packet(b"L", b"Subject\0hello\0"),
        _packet(b"B", b"hello\r\n" + extra_body),
        _packet(b"D", b"E" + b"i\0" + b"4QUEUEID\0"),
        _packet(b"E"),
    ]


def _replies(conn: socket.socket, until: bytes) -> list[tuple[bytes, bytes]]:
    """Packets from the milter up to and including one whose command is in *until*."""
    got = []
    while True:
        (length,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
        body = conn.recv(length, socket.MSG_WAITALL)
        got.append((body[:1], body[1:]))
        if body[:1] in until:
            return got


def _converse(port: int, protocol: int, packets: list[bytes], *, bytewise: bool = False) -> list:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        data = b"O" + struct.pack("!III", 6, Milter.CURR_ACTS, protocol)
        conn.sendall(_packet(b"O", data[1:]))
        assert _replies(conn, b"O")[0][0] == b"O"
        stream = b"".join(packets)
        if bytewise:
            for i in range(len(stream)):
                conn.send(stream[i : i + 1])
        else:
            conn.sendall(stream)
        return _replies(conn, b"cartyd")


def test_forged_header_is_deleted_with_all_postfix_options(milter: MilterDaemon) -> None:
    replies = _converse(milter.port, OFFERED_PROTOCOL, _message("203.0.113.9"))
    assert replies == [
        (b"m", struct.pack("!I", 1) + b"X-Postwarden-Trusted\0\0"),
        (b"c", b""),
    ]


def test_packets_split_anywhere_give_the_same_answer(milter: MilterDaemon) -> None:
    whole = _converse(milter.port, OFFERED_PROTOCOL, _message("203.0.113.9"))
    split = _converse(milter.port, OFFERED_PROTOCOL, _message("203.0.113.9"), bytewise=True)
    assert split == whole


def test_an_mta_without_no_reply_options_gets_a_reply_per_step(
    milter: MilterDaemon,
) -> None:
    """Every step answered CONTINUE; a body past the spam filter's cap answered SKIP."""
    offered = 0x3FF | Milter.P_SKIP  # the steps, no "no reply" options (Sendmail 8.14)
    big = b"x" * 10_000  # above 4 x body_limit
    packets = _message("203.0.113.9")
    packets[6:7] = [_packet(b"B", big), _packet(b"B", b"more\r\n")]
    with socket.create_connection(("127.0.0.1", milter.port), timeout=10) as conn:
        conn.sendall(_packet(b"O", struct.pack("!III", 6, Milter.CURR_ACTS, offered)))
        assert _replies(conn, b"O")[0][0] == b"O"
        answers = []
        for one in packets:
            conn.sendall(one)
            if one[4:5] != b"D":  # macros get no reply
                answers.append(_replies(conn, b"cstry")[-1][0])
    # connect, MAIL, RCPT, 3 headers: continue; the big chunk: skip the rest; then the
    # end of message (the SKIP made Postfix stop sending; a second chunk still gets one)
    assert answers[:6] == [b"c"] * 6
    assert answers[6] == b"s"
    assert answers[-1] == b"c"


def test_garbage_closes_that_connection_only(milter: MilterDaemon) -> None:
    for garbage in (
        struct.pack("!I", 0),  # empty packet
        struct.pack("!I", 1 << 30) + b"B",  # a length no MTA sends
        _packet(b"Z", b"what"),  # no such command
        _packet(b"L", b"a\0b\0c\0"),  # a header of three strings
    ):
        with socket.create_connection(("127.0.0.1", milter.port), timeout=10) as conn:
            conn.sendall(_packet(b"O", struct.pack("!III", 6, Milter.CURR_ACTS, OFFERED_PROTOCOL)))
            _replies(conn, b"O")
            conn.sendall(garbage)
            assert conn.recv(100) == b"", garbage  # closed, nothing answered
    replies = _converse(milter.port, OFFERED_PROTOCOL, _message("203.0.113.9"))
    assert replies[-1] == (b"c", b"")
    assert "Traceback" not in milter.log_text()


def test_many_connections_interleaved_each_get_their_own_answer(
    milter: MilterDaemon,
) -> None:
    conns = [socket.create_connection(("127.0.0.1", milter.port), timeout=10) for _ in range(40)]
    try:
        for conn in conns:
            conn.sendall(_packet(b"O", struct.pack("!III", 6, Milter.CURR_ACTS, OFFERED_PROTOCOL)))
            _replies(conn, b"O")
        messages = [_message(f"203.0.113.{i}") for i in range(len(conns))]
        for step in range(len(messages[0])):  # every connection's first packet, then ...
            for conn, packets in zip(conns, messages, strict=True):
                conn.sendall(packets[step])
        for conn in conns:
            assert _replies(conn, b"cartyd")[-1] == (b"c", b"")
    finally:
        for conn in conns:
            conn.close()


# -- the same bytes as libmilter -----------------------------------------------------------


@pytest.fixture
def reference_port() -> Iterator[dict[str, int]]:
    """tests/integration/reference_milter.py on libmilter, for both verdicts."""
    ports = {}
    procs = []
    for mode in ("accept", "reject"):
        port = free_port()
        argv = [sys.executable, "-m", "tests.integration.reference_milter"]
        argv += [f"inet:{port}@127.0.0.1", mode]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port("127.0.0.1", port, timeout=15, proc=procs[-1])
        ports[mode] = port
    try:
        yield ports
    finally:
        for proc in procs:
            stop_process(proc)


def _end_of_message_from(port: int) -> list[tuple[bytes, bytes]]:
    """A whole message sent as Sendmail would (a reply per step); what ends it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(_packet(b"O", struct.pack("!III", 6, Milter.CURR_ACTS, 0)))
        _replies(conn, b"O")
        for one in _message("203.0.113.9")[:-2]:
            conn.sendall(one)
            _replies(conn, b"c")
        conn.sendall(_packet(b"E"))
        return _replies(conn, b"cartyd")


def test_actions_and_verdicts_are_the_bytes_libmilter_sends(
    reference_port: dict[str, int],
) -> None:
    ours = [
        mp.encode_change_header("X-Postwarden-Trusted", 1, ""),
        mp.encode_delete_recipient("<bob@hosted.test>"),
        mp.encode_add_recipient("<bob+route@hosted.test>", "ORCPT=rfc822;bob@hosted.test"),
        mp.encode_add_recipient("<carol@hosted.test>"),
        mp.encode_header("DKIM-Signature", reference_milter.SIGNATURE, 0),
        mp.encode_header("X-Postwarden-Spam", "r1"),
        mp.packet(mp.CONTINUE),
    ]
    libmilter = _end_of_message_from(reference_port["accept"])
    assert [mp.packet(command, data) for command, data in libmilter] == ours
    refused = _end_of_message_from(reference_port["reject"])
    assert [mp.packet(c, d) for c, d in refused] == [
        mp.encode_reply("550", "5.7.1", "refused by rule r1")
    ]


def test_a_client_that_never_reads_its_replies_is_cut_off(milter: MilterDaemon) -> None:
    """Every step answered (no no-reply options), none of it read: bounded, then closed."""
    header = _packet(b"L", b"X-Filler\0" + b"x" * 10 + b"\0")
    with socket.create_connection(("127.0.0.1", milter.port), timeout=10) as conn:
        conn.sendall(_packet(b"O", struct.pack("!III", 6, Milter.CURR_ACTS, 0)))
        _replies(conn, b"O")
        conn.sendall(b"".join(_message("203.0.113.9")[:3]))
        cut_off = False
        try:
            for _ in range(400):  # 2,000,000 headers: 10 MB of replies if all were kept
                conn.sendall(header * 5000)
        except (ConnectionResetError, BrokenPipeError):
            cut_off = True
        assert cut_off
    milter.wait_for_log("does not read its replies")
    replies = _converse(milter.port, OFFERED_PROTOCOL, _message("203.0.113.9"))
    assert replies[-1] == (b"c", b"")


def test_sighup_reloads_and_the_milter_serves_on(milter: MilterDaemon) -> None:
    """What ``systemctl reload`` sends (libmilter stopped on it)."""
    assert milter.process is not None
    mark = milter.log_mark()
    milter.process.send_signal(signal.SIGHUP)
    milter.wait_for_log("reload signal: reloading settings", since=mark)
    replies = _converse(milter.port, OFFERED_PROTOCOL, _message("203.0.113.9"))
    assert replies[-1] == (b"c", b"")
    assert milter.process.poll() is None
