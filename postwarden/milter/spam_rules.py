"""Regex spam rules: the text of each field, and which rules match it.

Description:
    Fields: ``subject`` (RFC 2047-decoded), ``from``, ``to`` (decoded header values),
    ``header:NAME`` (every field of that name, decoded) and ``body`` (the decoded text parts,
    transfer encoding and charset undone, at most ``spam_filter.body_limit`` characters).
    Patterns were compiled with RE2 when the settings were loaded, so matching is linear in
    the text's length whatever the pattern. :func:`explain_matches` runs the same search and
    says where each rule matched (``postwarden spam-rule test``).

Security:
    Everything here is attacker-controlled: decoding never raises (bad encodings and
    charsets fall back to replacement characters), and the body is read only up to the cap.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.policy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class CompiledRule:
    name: str
    field: str
    regex: Any  # an RE2 pattern object


def decode_header_value(raw: bytes) -> str:
    """An RFC 2047-decoded, unfolded header value; never raises.

    A malformed encoded word (bad base64, an unknown charset) is read as the raw text:
    content never causes a temporary failure.
    """
    text = raw.decode("utf-8", "replace")
    try:
        decoded = str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError, email.errors.MessageError):
        decoded = text
    return " ".join(decoded.split())


class MessageText:
    """Lazily decoded field texts of one message."""

    def __init__(self, headers: Sequence[tuple[str, bytes]], body: bytes, body_limit: int) -> None:
        self.headers = headers
        self.raw_body = body
        self.body_limit = body_limit

    def field(self, field: str) -> Iterator[str]:
        if field == "body":
            yield self.body
            return
        name = field.removeprefix("header:").lower()
        for header, value in self.headers:
            if header.lower() == name:
                yield decode_header_value(value)

    @cached_property
    def body(self) -> str:
        raw = (
            b"".join(b"%s: %s\r\n" % (n.encode("ascii", "replace"), v) for n, v in self.headers)
            + b"\r\n"
            + self.raw_body
        )
        try:
            message = email.message_from_bytes(raw, policy=email.policy.compat32)
            parts = [_text_of(part) for part in message.walk() if _is_text(part)]
        except Exception:  # the email package on hostile input: fall back to the raw bytes
            parts = [self.raw_body.decode("utf-8", "replace")]
        return "\n".join(parts)[: self.body_limit]


def _is_text(part: Message) -> bool:
    return (
        part.get_content_maintype() == "text"
        and not part.is_multipart()
        and ("attachment" not in str(part.get("Content-Disposition", "")).lower())
    )


def _text_of(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", "replace")


def matching_rules(rules: Sequence[CompiledRule], text: MessageText) -> list[str]:
    """Names of the rules whose pattern is found in their field."""
    return [
        rule.name
        for rule in rules
        if any(rule.regex.search(value) for value in text.field(rule.field))
    ]


@dataclass(frozen=True)
class RuleMatch:
    """Where one rule matched: the field, which instance of it, and the text found."""

    rule: str
    field: str
    instance: int  # 0 for the first header field of that name (or the body)
    start: int
    end: int
    excerpt: str  # the match with some context, for a human


EXCERPT_CONTEXT = 30


def explain_matches(rules: Sequence[CompiledRule], text: MessageText) -> list[RuleMatch]:
    """Every (rule, field instance) whose pattern is found, with the matching text.

    The same fields and the same search as :func:`matching_rules`, so ``postwarden
    spam-rule test`` shows what the milter decides.
    """
    found = []
    for rule in rules:
        for instance, value in enumerate(text.field(rule.field)):
            match = rule.regex.search(value)
            if match is not None:
                start, end = match.span()
                low, high = max(0, start - EXCERPT_CONTEXT), end + EXCERPT_CONTEXT
                excerpt = value[low:high].replace("\r", " ").replace("\n", " ").strip()
                found.append(RuleMatch(rule.name, rule.field, instance, start, end, excerpt))
    return found
