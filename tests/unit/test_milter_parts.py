"""The milter's pure parts: header removal, spam-rule field texts (walk: test_received)."""

from __future__ import annotations

import time

from postwarden.milter.header_rewrite import removals
from postwarden.milter.spam_rules import CompiledRule, MessageText, matching_rules
from postwarden.util.linear_regex import compile_pattern


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
