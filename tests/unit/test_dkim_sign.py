"""The DKIM signer: canonicalization equals dkimpy's; every signature verifies with dkimpy."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.canonicalization import Relaxed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwarden.dkim import keys, record
from postwarden.milter.dkim_sign import (
    DEFAULT_SIGN_HEADERS,
    BodyHasher,
    FromHeaderCount,
    NotSignable,
    WrongKeyType,
    body_hash,
    canonicalize_body,
    canonicalize_header,
    sign,
)

DOMAIN = "example.com"
SELECTOR = "sel"

RSA_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED25519 = ed25519.Ed25519PrivateKey.generate()
KEYS = {"rsa-2048": RSA_2048, "rsa-1024": RSA_1024, "ed25519": ED25519}

Headers = Sequence[tuple[str, bytes | str]]

# -- canonicalization equals dkimpy's ---------------------------------------------------------

_PIECES = [
    b" ",
    b"  ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"a",
    b"Zz",
    b"\xc3\xa9",
    b"\x0b",
]
messy_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(_PIECES), max_size=60).map(b"".join),
)
header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=20,
)


@given(messy_bytes)
@settings(max_examples=1500)
def test_body_canonicalization_equals_dkimpy(body: bytes) -> None:
    assert canonicalize_body(body) == Relaxed.canonicalize_body(body)


def _streamed(body: bytes, cuts: list[int]) -> bytes:
    """bh= of *body* fed to a BodyHasher in pieces cut at *cuts* (as milter chunks arrive)."""
    hasher = BodyHasher()
    start = 0
    for cut in sorted(c % (len(body) + 1) for c in cuts):
        hasher.update(body[start:cut])
        start = cut
    hasher.update(body[start:])
    return hasher.digest()


def _dkimpy_body_hash(body: bytes) -> bytes:
    """dkimpy's bh= for relaxed body canonicalization of the body as transported (CRLF)."""
    crlf = re.sub(rb"(?<!\r)\n", b"\r\n", body)
    return base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(crlf)).digest())


@given(messy_bytes, st.lists(st.integers(0, 400), max_size=12))
@settings(max_examples=3000)
def test_streamed_body_hash_equals_dkimpy_wherever_the_chunks_end(
    body: bytes, cuts: list[int]
) -> None:
    assert _streamed(body, cuts) == _dkimpy_body_hash(body) == body_hash(body)


def test_streamed_body_hash_keeps_no_body() -> None:
    """Issue 9: a 52 MB body of a trusted client was buffered whole to be signed."""
    hasher = BodyHasher()
    line = b"0123456789 " * 6000  # one line of 66 KB, no line end: the worst case
    for _ in range(100):
        hasher.update(line)
        assert len(hasher._pending) <= 2
    hasher.update(b"  \t \r")
    assert hasher._pending == b" \r"
    hasher.update(b"\n" + b"\r\n" * 1000)  # trailing empty lines: a count, not bytes
    assert hasher._pending == b"" and hasher._empty_lines == 1001
    assert hasher.digest() == body_hash(line * 100 + b"  \t \r\n" + b"\r\n" * 1000)


@pytest.mark.parametrize("key_name", ["rsa-2048", "ed25519"])
def test_a_streamed_body_hash_signs_as_the_whole_body(key_name: str) -> None:
    body = b"Hello \t world  \r\n\r\nsecond line\n\r\n\r\n"
    hasher = BodyHasher()
    for piece in (body[:7], body[7:8], body[8:30], body[30:]):
        hasher.update(piece)
    value = sign(BASIC, b"", domain=DOMAIN, selector=SELECTOR, key=KEYS[key_name],
                 bh=hasher.digest())  # fmt: skip
    assert verifies(message(value, BASIC, body), KEYS[key_name])


@given(header_names, st.sampled_from(["", " ", "\t "]), messy_bytes)
@settings(max_examples=1500)
def test_header_canonicalization_equals_dkimpy(name: str, space: str, value: bytes) -> None:
    raw_name = (name + space).encode("ascii")
    [(dk_name, dk_value)] = Relaxed.canonicalize_headers([(raw_name, value)])
    assert canonicalize_header(name + space, value) == dk_name + b":" + dk_value[:-2]


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n\r\n", b""),
        (b"a", b"a\r\n"),
        (b"a\r\n\r\n\r\n", b"a\r\n"),
        (b"a \t b  \r\n\r\n", b"a b\r\n"),
        (b" \r\n", b""),
        (b"x\r\n \r\n", b"x\r\n"),
        (b"a\n\r\n", b"a\n\r\n"),  # a lone LF is not a line end here (the signer fixes it first)
    ],
)
def test_body_canonicalization_examples(body: bytes, want: bytes) -> None:
    assert canonicalize_body(body) == want


def test_header_canonicalization_examples() -> None:
    assert canonicalize_header("SUBJect ", b"  a \t b\r\n\tc \r\n") == b"subject:a b c"
    assert canonicalize_header("To", b" x,\n\ty") == b"to:x, y"
    assert canonicalize_header("X", b"\xc3\xa9  \xc3\xa9 ") == b"x:\xc3\xa9 \xc3\xa9"


# -- signatures verify with dkimpy ------------------------------------------------------------


def _wire(value: bytes | str) -> bytes:
    """A header value as it travels: folds as CRLF + white space."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return re.sub(rb"\r?\n", b"\r\n", raw)


def message(signature: str, headers: Headers, body: bytes) -> bytes:
    """The message as a receiver gets it, with the DKIM-Signature field inserted on top."""
    lines = [b"DKIM-Signature: " + signature.replace("\n", "\r\n").encode("ascii")]
    lines += [name.encode("ascii") + b":" + _wire(value) for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def verifies(signed: bytes, key: object) -> bool:
    txt = record.format_record(key).encode("ascii")  # type: ignore[arg-type]

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        assert name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode()
        return txt

    return bool(dkim.verify(signed, dnsfunc=dnsfunc))


def sign_and_verify(headers: Headers, body: bytes, key: object, **kwargs: object) -> str:
    value = sign(headers, body, domain=DOMAIN, selector=SELECTOR, key=key, **kwargs)  # type: ignore[arg-type]
    assert verifies(message(value, headers, body), key), value
    return value


BASIC: list[tuple[str, bytes | str]] = [
    ("Received", b" from a by b; Mon, 1 Jan 2024 00:00:00 +0000"),
    ("From", b" Alice <alice@example.com>"),
    ("To", b" bob@example.net"),
    ("Subject", b" Hello"),
    ("Date", b" Mon, 1 Jan 2024 00:00:00 +0000"),
    ("Message-ID", b" <1@example.com>"),
    ("MIME-Version", b" 1.0"),
    ("Content-Type", b" text/plain; charset=utf-8"),
    ("X-Mailer", b" test"),
]

CASES: dict[str, tuple[list[tuple[str, bytes | str]], bytes]] = {
    "plain": (BASIC, b"Hello Bob,\r\n\r\nbye\r\n"),
    "non-ascii headers": (
        [
            ("From", " Ren\u00e9e M\u00fcller <renee@example.com>".encode()),
            ("Subject", " \u00dcber \u2603 caf\u00e9".encode()),
            ("To", " =?utf-8?q?Bj=C3=B6rn?= <b@example.net>"),
        ],
        "Gr\u00fc\u00dfe\r\n".encode(),
    ),
    "folded crlf": (
        [
            ("From", b" Alice\r\n <alice@example.com>"),
            ("To", b" a@example.net,\r\n\tb@example.net,\r\n    c@example.net"),
            ("Subject", b" long \r\n\t subject\t \t here  "),
        ],
        b"x\r\n",
    ),
    "folded lf (as Postfix's milter sends)": (
        [("From", b" a@example.com"), ("Subject", b" one\n\ttwo\n three")],
        b"x\r\n",
    ),
    "empty body": (BASIC, b""),
    "body of blank lines": (BASIC, b"\r\n\r\n\r\n"),
    "no final crlf": (BASIC, b"no newline at the end"),
    "trailing blank lines": (BASIC, b"text\r\n\r\n\r\n\r\n"),
    "white space runs": (BASIC, b"a  \t b \r\n\t\r\n  c\t\r\n"),
    "bare lf body": (BASIC, b"line one\nline two\n\n"),
    "repeated signed fields": (
        [
            ("From", b" a@example.com"),
            ("To", b" first@example.net"),
            ("Cc", b" c@example.net"),
            ("To", b" second@example.net"),
            ("List-Unsubscribe", b" <mailto:u@example.com>"),
            ("List-Unsubscribe-Post", b" List-Unsubscribe=One-Click"),
        ],
        b"x\r\n",
    ),
    "str values (pymilter's default)": (
        [("From", " J\u00fcrgen <j@example.com>"), ("Subject", " hi")],
        b"body\r\n",
    ),
    "empty header value": ([("From", b" a@example.com"), ("Subject", b"")], b"x\r\n"),
}


@pytest.mark.parametrize("key_name", list(KEYS))
@pytest.mark.parametrize("case", list(CASES))
def test_signatures_verify_with_dkimpy(case: str, key_name: str) -> None:
    headers, body = CASES[case]
    value = sign_and_verify(headers, body, KEYS[key_name])
    algorithm = "ed25519-sha256" if key_name == "ed25519" else "rsa-sha256"
    assert f"a={algorithm};" in value


def _tags(value: str) -> dict[str, str]:
    unfolded = re.sub(r"\n\t", "", value)
    return {k.strip(): v.strip() for k, _, v in (t.partition("=") for t in unfolded.split(";"))}


def test_from_is_oversigned_and_the_usual_fields_signed() -> None:
    value = sign_and_verify(BASIC, b"x\r\n", RSA_1024, timestamp=1_700_000_000)
    tags = _tags(value)
    assert tags["h"].replace(" ", "").split(":") == [
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "from",
    ]
    assert (tags["v"], tags["c"], tags["d"], tags["s"], tags["t"]) == (
        "1",
        "relaxed/relaxed",
        DOMAIN,
        SELECTOR,
        "1700000000",
    )
    assert list(tags)[-1] == "b"
    assert tags["bh"] == body_hash(b"x\r\n").decode()


def test_a_second_from_added_later_breaks_the_signature() -> None:
    value = sign(BASIC, b"x\r\n", domain=DOMAIN, selector=SELECTOR, key=RSA_1024)
    forged = [*BASIC, ("From", b" mallory@evil.example")]
    assert not verifies(message(value, forged, b"x\r\n"), RSA_1024)


def test_changes_break_it_and_relaxed_changes_do_not() -> None:
    body = b"Pay 10 EUR\r\n"
    value = sign(BASIC, body, domain=DOMAIN, selector=SELECTOR, key=ED25519)
    assert not verifies(message(value, BASIC, b"Pay 99 EUR\r\n"), ED25519)
    changed = [(n, b" Bye" if n == "Subject" else v) for n, v in BASIC]
    assert not verifies(message(value, changed, body), ED25519)
    respaced = [(n.upper(), b"  " + _wire(v).replace(b" ", b"\r\n  ") + b" ") for n, v in BASIC]
    assert verifies(message(value, respaced, b"Pay  10\tEUR \r\n\r\n"), ED25519)
    unsigned_added = [("X-Spam", b" no"), *BASIC]
    assert verifies(message(value, unsigned_added, body), ED25519)


@pytest.mark.parametrize("count", [0, 2, 3])
def test_refuses_a_message_without_exactly_one_from(count: int) -> None:
    headers = [("Subject", b" x"), *[("From", f" a{i}@example.com".encode()) for i in range(count)]]
    with pytest.raises(FromHeaderCount, match=f"has {count} From header fields"):
        sign(headers, b"x", domain=DOMAIN, selector=SELECTOR, key=RSA_1024)


def test_from_is_counted_case_insensitively() -> None:
    with pytest.raises(NotSignable):
        sign(
            [("From", b" a@x"), ("FROM", b" b@x")],
            b"",
            domain=DOMAIN,
            selector=SELECTOR,
            key=RSA_1024,
        )


def test_key_and_algorithm_must_agree() -> None:
    with pytest.raises(WrongKeyType):
        sign(BASIC, b"", domain=DOMAIN, selector=SELECTOR, key=RSA_1024, algorithm="ed25519")
    with pytest.raises(WrongKeyType):
        sign(BASIC, b"", domain=DOMAIN, selector=SELECTOR, key=ED25519, algorithm="rsa")
    assert "a=rsa-sha256" in sign(
        BASIC, b"", domain=DOMAIN, selector=SELECTOR, key=RSA_1024, algorithm="rsa-sha256"
    )


def test_custom_header_list() -> None:
    value = sign_and_verify(BASIC, b"", RSA_1024, sign_headers=("Subject", "X-Mailer"))
    assert _tags(value)["h"].replace(" ", "").split(":") == ["from", "subject", "x-mailer", "from"]


def test_sign_headers_must_be_field_names() -> None:
    with pytest.raises(ValueError, match="not header field names: 'a;b'"):
        sign(BASIC, b"", domain=DOMAIN, selector=SELECTOR, key=ED25519, sign_headers=["a;b"])


@pytest.mark.parametrize("key_name", list(KEYS))
def test_folding(key_name: str) -> None:
    many = [*BASIC, *[(name, b" v") for name in DEFAULT_SIGN_HEADERS if name != "from"]]
    value = sign(
        many,
        b"",
        domain="a-rather-long-subdomain.of.example.com",
        selector="selector-2024-rotation",
        key=KEYS[key_name],
    )
    lines = ("DKIM-Signature: " + value).split("\n")
    assert all(len(line.expandtabs(8)) <= 78 for line in lines), lines
    assert all(line.startswith("\t") for line in lines[1:])
    assert "\r" not in value and not value.endswith(("\n", "\t", " "))
    assert all(line.strip() for line in lines)


@st.composite
def messages(draw: st.DrawFn) -> tuple[list[tuple[str, bytes]], bytes]:
    word = st.text(
        alphabet=st.characters(
            min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc")
        ),
        min_size=1,
        max_size=8,
    ).map(lambda s: s.encode())
    gap = st.sampled_from([b" ", b"  ", b"\t", b" \t ", b"\r\n\t", b"\n ", b"\r\n  "])
    value = st.lists(st.tuples(gap, word), max_size=6).map(
        lambda parts: b"".join(g + w for g, w in parts)
    )
    names = st.sampled_from(["To", "Cc", "Subject", "Reply-To", "X-Other", "Received", "Date"])
    others = draw(st.lists(st.tuples(names, value), max_size=8))
    position = draw(st.integers(0, len(others)))
    headers = [*others[:position], ("From", b" a@example.com" + draw(value)), *others[position:]]
    body = draw(messy_bytes)
    return headers, body


@given(messages(), st.sampled_from(["rsa-1024", "ed25519"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_messages_verify_with_dkimpy(
    msg: tuple[list[tuple[str, bytes]], bytes], key_name: str
) -> None:
    headers, body = msg
    sign_and_verify(headers, body, KEYS[key_name])


def test_keys_from_the_key_module_sign() -> None:
    for algorithm in keys.Algorithm:
        key = keys.parse_private_key(
            keys.format_private_key(keys.generate(algorithm)), trusted=True
        )
        sign_and_verify(BASIC, b"x\r\n", key, algorithm=algorithm.value)
