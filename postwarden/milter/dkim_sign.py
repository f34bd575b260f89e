"""DKIM signing (RFC 6376, RFC 8463): relaxed/relaxed, SHA-256, RSA or Ed25519.

Description:
    :func:`sign` takes what the milter collected (the header fields in order, the body) and
    returns the value of a ``DKIM-Signature`` header field to insert at the top. It is pure:
    no I/O, no settings, no logging; the caller chooses the domain, selector and key.

    Input as Postfix's milter protocol delivers it: each header field as (name, value)
    with the value's raw bytes (``str`` is accepted and encoded as UTF-8 with
    surrogateescape, which is how pymilter decodes them), possibly folded with ``\\r\\n`` or
    ``\\n`` followed by white space, possibly UTF-8 (RFC 6532); the body as raw bytes with
    CRLF line ends (bare LF is turned into CRLF first, as transport would).

    Canonicalization is relaxed for both header and body (RFC 6376 3.4.2 and 3.4.4), written
    with ``bytes`` operations and ``re``. It matches dkimpy's (``dkim.canonicalization``)
    byte for byte, including its choices where the RFC leaves room (a lone CR stays; ASCII
    white space at the ends of a header value is stripped); the unit tests prove the
    equality with hypothesis.

    Signed header fields: those of :data:`DEFAULT_SIGN_HEADERS` present in the message, each
    instance, plus one more ``from`` than there are From fields (oversigning: a From field
    added later breaks the signature). ``t=`` is the signing time; no ``x=``, ``l=`` or ``i=``.

    The signature: RSA with PKCS#1 v1.5 over SHA-256 of the header data; Ed25519 over the
    SHA-256 digest of the header data (RFC 8463 3). Both run in ``cryptography`` (OpenSSL),
    which releases the GIL, about 10 times faster than dkimpy's pure-Python RSA.

    The value is folded with ``\\n\\t`` (what a milter passes to ``smfi_insheader``), lines
    kept to about 78 characters counting ``DKIM-Signature: ``; the ``b=`` tag comes last.

Errors:
    :class:`FromHeaderCount` when the message has no From field or more than one (RFC 6376
    5.4.1 and RFC 5322: exactly one; the caller must not sign); :class:`WrongKeyType` when
    the key and *algorithm* disagree. Both are :class:`NotSignable`. ``ValueError`` when
    *sign_headers* names something that is not a header field name (a caller's mistake).

Security:
    The key object comes from the caller, loaded once; nothing here reads, prints or logs
    key material.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from postwarden.errors import PostwardenError

HEADER_NAME = "DKIM-Signature"

#: Header fields signed when present (RFC 6376 5.4.1's list, plus RFC 8058's
#: List-Unsubscribe-Post, which must be signed for one-click unsubscribe to be honoured).
DEFAULT_SIGN_HEADERS: tuple[str, ...] = (
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-message-id",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
)

_WIDTH = 78
_TAB = 8
_UNFOLD = re.compile(rb"\r?\n")
_WSP_RUN = re.compile(rb"[\t ]+")
_TRAILING_WSP = re.compile(rb"[\t ]+\r\n")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_FIELD_NAME = re.compile(r"[!-9<-~]+")  # RFC 5322 ftext, less ";" which would end h=
_RSA_PADDING = padding.PKCS1v15()
_SHA256 = hashes.SHA256()


class NotSignable(PostwardenError):
    """The message cannot be signed."""


class FromHeaderCount(NotSignable):
    """A message to sign needs exactly one From header field."""


class WrongKeyType(NotSignable):
    """The key does not belong to the signature algorithm."""


def canonicalize_body(body: bytes) -> bytes:
    """Relaxed body canonicalization (RFC 6376 3.4.4), as dkimpy does it."""
    if b" \r\n" in body or b"\t" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    if b"\t" in body or b"  " in body:
        body = _WSP_RUN.sub(b" ", body)
    end = len(body)
    while end >= 2 and body[end - 2] == 13 and body[end - 1] == 10:  # CR LF
        end -= 2
    if end == 0:
        return b""
    return body[:end] + b"\r\n"


def canonicalize_header(name: str | bytes, value: bytes) -> bytes:
    """Relaxed header canonicalization (RFC 6376 3.4.2): ``name:value`` without CRLF."""
    if isinstance(name, str):
        name = name.encode("utf-8", "surrogateescape")
    if b"\n" in value:
        value = _UNFOLD.sub(b"", value)
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.lower().rstrip() + b":" + value.strip()


def body_hash(body: bytes) -> bytes:
    """``bh=``: SHA-256 of the relaxed body, base64."""
    if b"\n" in body and body.count(b"\n") != body.count(b"\r\n"):
        body = _BARE_LF.sub(b"\r\n", body)
    return base64.b64encode(hashlib.sha256(canonicalize_body(body)).digest())


def sign(
    headers: Sequence[tuple[str, bytes | str]],
    body: bytes,
    *,
    domain: str,
    selector: str,
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
    algorithm: str | None = None,
    timestamp: int | None = None,
    sign_headers: Iterable[str] = DEFAULT_SIGN_HEADERS,
) -> str:
    """The ``DKIM-Signature`` value for the message (see the module docstring).

    *algorithm* is ``"rsa"`` or ``"ed25519"`` (the key's type when None).
    """
    kind = _algorithm(key, algorithm)
    fields = [(name, _as_bytes(value)) for name, value in headers]
    lowered = [name.lower() for name, _ in fields]
    from_count = lowered.count("from")
    if from_count != 1:
        raise FromHeaderCount(f"the message has {from_count} From header fields; it needs one")
    wanted = _wanted(tuple(sign_headers))
    h_names = [name for name in lowered if name in wanted]
    h_names.append("from")  # oversign From: one more than there are
    tags = [
        ("v", "1"),
        ("a", f"{kind}-sha256"),
        ("c", "relaxed/relaxed"),
        ("d", domain),
        ("s", selector),
        ("t", str(int(time.time()) if timestamp is None else int(timestamp))),
        ("h", ":".join(h_names)),
        ("bh", body_hash(body).decode("ascii")),
    ]
    prefix, column = _fold_tags(tags)
    signed = _header_data(fields, lowered, h_names) + canonicalize_header(
        HEADER_NAME, prefix.encode("ascii")
    )
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed, _RSA_PADDING, _SHA256)
    else:  # RFC 8463: Ed25519 signs the SHA-256 digest of the header data
        signature = key.sign(hashlib.sha256(signed).digest())
    return prefix + _fold_base64(base64.b64encode(signature).decode("ascii"), column)


@functools.lru_cache(maxsize=32)
def _wanted(sign_headers: tuple[str, ...]) -> frozenset[str]:
    """The lower-cased names to sign, From always among them; each must be a field name."""
    names = frozenset(h.lower() for h in sign_headers) | {"from"}
    bad = sorted(n for n in names if not _FIELD_NAME.fullmatch(n))
    if bad:
        raise ValueError(f"not header field names: {', '.join(map(repr, bad))}")
    return names


def _algorithm(key: object, algorithm: str | None) -> str:
    kind = "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "rsa"
    if kind == "rsa" and not isinstance(key, rsa.RSAPrivateKey):
        raise WrongKeyType(f"a {type(key).__name__} is neither an RSA nor an Ed25519 key")
    if algorithm is not None and algorithm.lower().removesuffix("-sha256") != kind:
        raise WrongKeyType(f"an {kind} key cannot make an {algorithm} signature")
    return kind


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def _header_data(fields: list[tuple[str, bytes]], lowered: list[str], h_names: list[str]) -> bytes:
    """The canonical fields h= names, each ending in CRLF; instances picked from the bottom up."""
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(lowered):
        positions.setdefault(name, []).append(index)
    data: list[bytes] = []
    for name in h_names:
        left = positions.get(name)
        if left:  # a name listed more often than present signs nothing more (RFC 6376 5.4.2)
            field_name, value = fields[left.pop()]
            data.append(canonicalize_header(field_name, value))
            data.append(b"\r\n")
    return b"".join(data)


def _fold_tags(tags: list[tuple[str, str]]) -> tuple[str, int]:
    """The folded value up to and including ``b=``, and the column where it ends."""
    out: list[str] = []
    column = len(HEADER_NAME) + 2
    words: list[tuple[str, str]] = []  # (separator, unbreakable text)
    for name, value in tags:
        if name == "h":  # breakable after each colon
            pieces = value.split(":")
            texts = [f"{p}:" for p in pieces[:-1]] + [f"{pieces[-1]};"]
            words.append((" ", f"h={texts[0]}"))
            words.extend(("", text) for text in texts[1:])
        else:
            words.append((" ", f"{name}={value};"))
    words.append((" ", "b="))
    first = True
    for separator, text in words:
        gap = "" if first else separator
        if not first and column + len(gap) + len(text) > _WIDTH:
            out.append("\n\t")
            column, gap = _TAB, ""
        out.append(gap + text)
        column += len(gap) + len(text)
        first = False
    return "".join(out), column


def _fold_base64(text: str, column: int) -> str:
    """The ``b=`` value broken into lines that fit, starting at *column*."""
    out: list[str] = []
    room = _WIDTH - column
    if room < 8:
        out.append("\n\t")
        room = _WIDTH - _TAB
    while text:
        out.append(text[:room])
        text = text[room:]
        if text:
            out.append("\n\t")
            room = _WIDTH - _TAB
    return "".join(out)
