"""The milter protocol codec: libmilter's numbers, packets cut anywhere, replies as bytes."""

from __future__ import annotations

import asyncio
import struct

import Milter
import pytest
from hypothesis import given
from hypothesis import strategies as st

from postwarden.milter import protocol as mp


def test_constants_are_libmilters_as_pymilter_has_them() -> None:
    ours = {name: getattr(mp, name) for name in dir(mp) if name.startswith(("P_", "M_"))}
    assert ours == {name: getattr(Milter, name) for name in ours}
    flags = {"F_ADDHDRS": "ADDHDRS", "F_ADDRCPT": "ADDRCPT", "F_DELRCPT": "DELRCPT",
             "F_CHGHDRS": "CHGHDRS", "F_ADDRCPT_PAR": "ADDRCPT_PAR",
             "F_SETSYMLIST": "SETSYMLIST"}  # fmt: skip
    for name, theirs in flags.items():
        assert getattr(mp, name) == getattr(Milter, theirs), name


PACKETS = st.lists(
    st.tuples(st.sampled_from(b"ABCDELMNOQRTU"), st.binary(max_size=300)), max_size=8
)


@given(PACKETS, st.lists(st.integers(1, 64), min_size=1))
def test_a_stream_cut_anywhere_gives_the_same_packets(
    packets: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(mp.packet(bytes([c]), data) for c, data in packets)
    reader, got, at = mp.PacketReader(), [], 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        got += reader.feed(stream[at : at + size])
        at += size
    assert got == [(bytes([c]), data) for c, data in packets]


@pytest.mark.parametrize("length", [0, mp.MAX_PACKET + 1, 0xFFFFFFFF])
def test_impossible_lengths_are_malformed(length: int) -> None:
    with pytest.raises(mp.MalformedPacket):
        mp.PacketReader().feed(struct.pack("!I", length) + b"B")


def test_connect_gives_the_ip_or_none() -> None:
    assert mp.parse_connect(b"mx\x004\x09\xc4192.0.2.1\0") == "192.0.2.1"
    assert mp.parse_connect(b"mx\x006\x09\xc42001:db8::1\0") == "2001:db8::1"
    assert mp.parse_connect(b"localhost\0L\0\0/run/x\0") is None
    assert mp.parse_connect(b"unknown\0U") is None
    with pytest.raises(mp.MalformedPacket):
        mp.parse_connect(b"no family")


def test_macros_lose_their_braces() -> None:
    stage, values = mp.parse_macros(b"M{auth_authen}\0alice\0{daemon_name}\0x\0")
    assert stage == b"M" and values == {"auth_authen": "alice", "daemon_name": "x"}


def test_replies_and_actions_as_libmilter_writes_them() -> None:
    assert mp.encode_reply("550", "5.7.1", "no\r\nway") == mp.packet(b"y", b"550 5.7.1 no  way\0")
    assert mp.encode_header("X-A", "1") == mp.packet(b"h", b"X-A\x001\0")
    assert mp.encode_header("X-A", "1", 0) == mp.packet(b"i", b"\0\0\0\0X-A\x001\0")
    assert mp.encode_change_header("X-A", 2, "") == mp.packet(b"m", b"\0\0\0\x02X-A\0\0")
    assert mp.encode_add_recipient("<a@b>") == mp.packet(b"+", b"<a@b>\0")
    assert mp.encode_add_recipient("<a@b>", "NOTIFY=NEVER") == mp.packet(
        b"2", b"<a@b>\0NOTIFY=NEVER\0"
    )
    assert mp.encode_delete_recipient("<a@b>") == mp.packet(b"-", b"<a@b>\0")
    negotiated = mp.encode_optneg(0x101, 0x2, {mp.M_EOM: ("i",)})
    assert negotiated == mp.packet(b"O", struct.pack("!IIII", 6, 0x101, 0x2, 5) + b"i\0")


def test_connections_past_the_limit_are_refused_and_counted() -> None:
    from postwarden import metrics
    from postwarden.milter.server import Connections

    loop = asyncio.new_event_loop()
    try:
        connections = Connections(limit=2)
        members = [object(), object(), object()]

        def refused() -> float | None:
            return metrics.registry.get_sample_value("postwarden_connections_refused_total")

        before = refused() or 0.0
        admitted = [connections.admit(loop, m) for m in members]  # type: ignore[arg-type]
        assert admitted == [True, True, False]
        assert refused() == before + 1
        connections.members.discard(members[0])  # type: ignore[arg-type]
        assert connections.admit(loop, members[2])  # type: ignore[arg-type]
        connections.stopping = True
        assert not connections.admit(loop, object())  # type: ignore[arg-type]
    finally:
        loop.close()
