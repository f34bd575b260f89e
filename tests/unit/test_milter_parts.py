"""The milter's pure parts: Received walking, header removal, spam-rule field texts."""

from __future__ import annotations

import time

import pytest

from postwarden.milter.header_rewrite import removals
from postwarden.milter.received import OriginalClient, hop_address, original_client
from postwarden.milter.spam_rules import CompiledRule, MessageText, matching_rules
from postwarden.util.linear_regex import compile_pattern

RECEIVED = [
    (
        "from mail.example.com (mail.example.com [192.0.2.1]) by mx (Postfix) with ESMTPS id X",
        "192.0.2.1",
    ),
    ("from [198.51.100.7] (unknown [203.0.113.9])\n\tby gw (Postfix) with ESMTP", "203.0.113.9"),
    ("from [203.0.113.9] (helo=[198.51.100.7]) by gw with esmtp (Exim 4.96)", "203.0.113.9"),
    (
        "from host.example ([203.0.113.9] helo=[198.51.100.7]) by gw with esmtps (Exim 4.96)",
        "203.0.113.9",
    ),
    (
        "from EUR05-VI1-obe.outbound.protection.outlook.com (mail-vi1eur05on2050.outbound."
        "protection.outlook.com [40.107.21.50]) by mx.example.com",
        "40.107.21.50",
    ),
    (
        "from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208:ac::11) by "
        "AM0PR01MB5678.eurprd01.prod.exchangelabs.com with HTTPS",
        "2603:10a6:208:ac::11",
    ),
    (
        "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41]) by mx.google.com",
        "209.85.220.41",
    ),
    ("from client (unknown [IPv6:2001:db8::25]) by mx (Postfix)", "2001:db8::25"),
    ("from x (x [::ffff:192.0.2.33]) by y", "192.0.2.33"),
    ("from [10.0.0.1] by y", "10.0.0.1"),
    ("by mx.example.com with LMTP", None),
    ("from localhost (localhost) by x", None),
    ("from evil (evil) by x; comment [203.0.113.1]", None),  # after "by": not the client
]


@pytest.mark.parametrize(("header", "want"), RECEIVED)
def test_hop_address(header: str, want: str | None) -> None:
    assert hop_address(header) == want


def _walk(headers: list[str], gateways: set[str], max_hops: int = 5) -> OriginalClient:
    return original_client(headers, lambda ip: ip in gateways, max_hops=max_hops)


def test_walk_stops_at_the_first_non_gateway_and_never_reads_below() -> None:
    headers = [
        "from a (a [192.0.2.26]) by gw1",
        "from b (b [198.51.100.5]) by gw2",
        "from forged (forged [203.0.113.1]) by b",
    ]
    found = _walk(headers, {"192.0.2.26"})
    assert (found.address, found.hops) == ("198.51.100.5", 2)


def test_walk_gives_up_rather_than_guess() -> None:
    assert _walk(["garbage", "from b (b [198.51.100.5]) by x"], set()).address is None
    many = ["from g (g [192.0.2.26]) by x"] * 6 + ["from b (b [198.51.100.5]) by x"]
    found = _walk(many, {"192.0.2.26"})
    assert found.address is None and "gateway hops" in found.problem
    assert _walk([], set()).address is None


def test_removals_any_case_repeated_highest_index_first() -> None:
    names = [
        "Received",
        "X-Postwarden-Spam",
        "x-postwarden-spam",
        "X-Spam-Flag",
        "Subject",
        "X-POSTWARDEN-TRUSTED",
        "X-Spam-Flag",
    ]
    assert removals(names, own_spam_flag=True) == [
        ("x-postwarden-spam", 2),
        ("X-Postwarden-Spam", 1),
        ("X-POSTWARDEN-TRUSTED", 1),
        ("X-Spam-Flag", 2),
        ("X-Spam-Flag", 1),
    ]
    assert ("X-Spam-Flag", 1) not in removals(names, own_spam_flag=False)


def _text(headers: list[tuple[str, bytes]], body: bytes = b"", limit: int = 1 << 20) -> MessageText:
    return MessageText(headers, body, limit)


def test_field_texts_are_decoded() -> None:
    text = _text(
        [
            ("Subject", b"=?utf-8?q?Cheap_=50ills?="),
            ("To", b"Bob <bob@x.example>"),
            ("X-Gateway-Spam", b"yes"),
            ("x-gateway-spam", b"  also\r\n\tfolded"),
        ]
    )
    assert list(text.field("subject")) == ["Cheap Pills"]
    assert list(text.field("header:X-Gateway-Spam")) == ["yes", "also folded"]


def test_body_is_the_decoded_text_parts_only() -> None:
    body = (
        b"--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nTr=E8s cheap\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IHBpbGxz\r\n--b--\r\n"
    )
    text = _text([("Content-Type", b'multipart/mixed; boundary="b"')], body)
    assert "Très cheap" in text.body
    assert "pills" not in text.body  # the attachment is not text


def test_body_survives_garbage() -> None:
    text = _text(
        [
            ("Content-Type", b"text/plain; charset=no-such-charset"),
            ("Content-Transfer-Encoding", b"base64"),
        ],
        b"!!!not base64\xff\xfe",
    )
    assert isinstance(text.body, str)


def test_matching_is_linear_on_a_large_body() -> None:
    """A pattern Python's re would take forever on stays linear with RE2 (1 MB vs 10 KB)."""
    rule = CompiledRule("evil", "body", compile_pattern(r"(a+)+b"))

    def seconds(size: int) -> float:
        text = _text([("Content-Type", b"text/plain")], b"a" * size)
        assert text.body  # decode outside the timing
        start = time.perf_counter()
        for _ in range(3):
            assert matching_rules([rule], text) == []
        return time.perf_counter() - start

    small, large = seconds(10_000), seconds(1_000_000)
    assert large < small * 100 * 10, (small, large)  # linear: about 100 times, never 2**n
