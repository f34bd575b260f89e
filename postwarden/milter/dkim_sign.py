"""DKIM signing (RFC 6376, RFC 8463): relaxed/relaxed, SHA-256, RSA or Ed25519.

Description:
    :func:`sign` takes what the milter collected (the header fields in order, the body) and
    returns the value of a ``DKIM-Signature`` header field to insert at the top. It is pure:
    no I/O, no settings, no logging; the caller chooses the domain, selector and key.

    Input as Postfix's milter protocol delivers it: each header field as (name, value)
    with the value's raw bytes (``str`` is accepted and encoded as UTF-8 with
    surrogateescape, as the milter decodes header names), possibly folded with ``\\r\\n`` or
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


class BodyHasher:
    """``bh=`` of a body fed in chunks as they arrive: :func:`body_hash` without the buffer.

    Between chunks it keeps at most two bytes — the end of the body so far that the next
    chunk may still change (a white-space run, which a line end would remove, and a CR,
    which an LF would make a line end) — and a count of the empty lines seen last:
    relaxed canonicalization drops empty lines at the end of the body, so they are hashed
    only once something follows them. Memory stays constant whatever the body's size or
    line lengths; each byte is canonicalized once.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._pending = b""  # undecided end: at most one space and one CR
        self._empty_lines = 0  # CRLFs held back: trailing, unless more text follows
        self._hashed = False  # anything but held-back CRLFs hashed yet

    def update(self, chunk: bytes) -> None:
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n") + 1
        if end:
            self._hash(_relaxed_lines(data[:end] if end < len(data) else data))
        self._pending = self._settle(data[end:]) if end < len(data) else b""

    def digest(self) -> bytes:
        """The base64 ``bh=`` value; the hasher is spent afterwards."""
        if self._pending:  # a body ending without a line end: relaxed adds the CRLF
            self._hash(self._pending)
            self._pending = b""
        if self._hashed:
            self._sha.update(b"\r\n")
        return base64.b64encode(self._sha.digest())

    def _settle(self, rest: bytes) -> bytes:
        """Hash what no later byte can change; return the rest (the undecided end)."""
        cr = b"\r" if rest.endswith(b"\r") else b""
        core = rest[:-1] if cr else rest
        decided = core.rstrip(b" \t")
        if decided:
            self._hash(_relaxed_lines(decided))
        return (b" " if len(decided) < len(core) else b"") + cr

    def _hash(self, canonical: bytes) -> None:
        """Hash canonical text, holding back the CRLFs it ends with."""
        text = canonical.rstrip(b"\r\n")
        tail = canonical[len(text) :]  # CRLF pairs and lone CRs (every LF follows a CR)
        if tail.endswith(b"\r"):
            text, tail = canonical, b""
        else:
            lone = tail.rfind(b"\r\r")
            if lone >= 0:
                text, tail = canonical[: len(text) + lone + 1], tail[lone + 1 :]
        if text:
            if self._empty_lines:
                self._sha.update(b"\r\n" * self._empty_lines)
            self._sha.update(text)
            self._hashed = True
            self._empty_lines = 0
        self._empty_lines += len(tail) // 2


def _relaxed_lines(lines: bytes) -> bytes:
    """Relaxed canonicalization of whole lines or of text no later byte changes.

    Bare LF is made CRLF first; trailing CRLFs are kept (the caller holds them back).
    """
    if b"\n" in lines and lines.count(b"\n") != lines.count(b"\r\n"):
        lines = _BARE_LF.sub(b"\r\n", lines)
    if b" \r\n" in lines or b"\t" in lines:
        lines = _TRAILING_WSP.sub(b"\r\n", lines)
    if b"\t" in lines or b"  " in lines:
        lines = _WSP_RUN.sub(b" ", lines)
    return lines


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
    bh: bytes | None = None,
) -> str:
    """The ``DKIM-Signature`` value for the message (see the module docstring).

    *algorithm* is ``"rsa"`` or ``"ed25519"`` (the key's type when None). *bh*: the body
    hash already computed while the body streamed by (:class:`BodyHasher`); *body* is then
    not read.
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
        ("bh", (body_hash(body) if bh is None else bh).decode("ascii")),
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
