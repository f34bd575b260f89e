"""The DKIM key record in DNS: format ours, parse a published one, compare the two.

Description:
    The record lives at ``SELECTOR._domainkey.DOMAIN`` as a TXT record (RFC 6376 3.6.1,
    RFC 8463 for Ed25519). Ours reads ``v=DKIM1; k=rsa; p=BASE64`` where ``p=`` is the
    DER SubjectPublicKeyInfo of the RSA key, or ``v=DKIM1; k=ed25519; p=BASE64`` of the raw
    32-byte Ed25519 public key. One TXT string holds at most 255 bytes, so the value is split
    into several strings, which resolvers hand back separately and verifiers join without a
    separator; :func:`format_zone_strings` gives them as a zone file wants them.

    Parsing is a tag list (``tag=value`` separated by ``;``, whitespace around both ignored,
    whitespace inside ``p=`` ignored). ``v=``, when present, must come first and be
    ``DKIM1``; ``k=`` defaults to ``rsa``; an empty ``p=`` means the key was revoked. An RSA
    ``p=`` may also hold a bare PKCS#1 RSAPublicKey, which some publishers use.

Errors:
    :class:`BadRecord` when a TXT value is not a DKIM key record (the message says why).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postwarden.dkim.keys import Algorithm, PrivateKey, algorithm_of
from postwarden.errors import PostwardenError

TXT_STRING_LIMIT = 255
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_WHITESPACE = re.compile(r"[ \t\r\n]+")

PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class BadRecord(PostwardenError):
    """Not a DKIM key record."""


def host_name(selector: str, domain: str) -> str:
    """The DNS name of the record: ``SELECTOR._domainkey.DOMAIN``."""
    return f"{selector}._domainkey.{domain}"


def public_key_data(key: PrivateKey | PublicKey) -> bytes:
    """What ``p=`` carries: SubjectPublicKeyInfo DER (RSA) or the raw 32 bytes (Ed25519)."""
    public = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) else key
    )
    if isinstance(public, ed25519.Ed25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def format_record(key: PrivateKey) -> str:
    """Our TXT value for *key*: ``v=DKIM1; k=ALGORITHM; p=BASE64``."""
    p = base64.b64encode(public_key_data(key)).decode("ascii")
    return f"v=DKIM1; k={algorithm_of(key).value}; p={p}"


def split_strings(value: str, limit: int = TXT_STRING_LIMIT) -> list[str]:
    """*value* cut into TXT strings of at most *limit* bytes (the value is ASCII)."""
    data = value.encode("ascii")
    return [data[i : i + limit].decode("ascii") for i in range(0, len(data), limit)] or [""]


def format_zone_strings(value: str) -> str:
    """The strings quoted for a zone file: ``"v=DKIM1; k=rsa; p=MIIB..." "...AQAB"``."""
    return " ".join(f'"{s}"' for s in split_strings(value))


@dataclass(frozen=True)
class KeyRecord:
    """A parsed DKIM key record."""

    key_type: str  # k=, lower-cased; "rsa" when absent
    public_key: bytes  # p=, base64-decoded; empty when revoked
    version: str | None = None  # v=
    flags: tuple[str, ...] = ()  # t=, e.g. ("y",) for testing, ("s",) strict
    tags: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def revoked(self) -> bool:
        return not self.public_key

    @property
    def testing(self) -> bool:
        return "y" in self.flags


def parse_record(strings: str | bytes | Sequence[str | bytes]) -> KeyRecord:
    """Parse a TXT record given as one value or as its strings (joined without separator)."""
    if isinstance(strings, str | bytes):
        strings = [strings]
    try:
        text = "".join(s.decode("ascii") if isinstance(s, bytes) else s for s in strings)
    except UnicodeDecodeError:
        raise BadRecord("the record is not ASCII text") from None
    tags = _parse_tags(text)
    version = tags.get("v")
    if version is not None:
        if next(iter(tags)) != "v":
            raise BadRecord("v= is not the first tag")
        if version != "DKIM1":
            raise BadRecord(f"v={version} is not v=DKIM1")
    if "p" not in tags:
        raise BadRecord("the record has no p= tag")
    try:
        public = base64.b64decode(_WHITESPACE.sub("", tags["p"]), validate=True)
    except binascii.Error:
        raise BadRecord("p= is not valid base64") from None
    flags = tuple(f.strip() for f in tags.get("t", "").split(":") if f.strip())
    return KeyRecord(
        key_type=tags.get("k", "rsa").lower(),
        public_key=public,
        version=version,
        flags=flags,
        tags=tags,
    )


def _parse_tags(text: str) -> dict[str, str]:
    """RFC 6376 3.2 tag list; duplicate or malformed tags make it invalid."""
    tags: dict[str, str] = {}
    for spec in text.split(";"):
        if not spec.strip(" \t\r\n"):
            continue  # a trailing ";" (or an empty spec) is allowed
        name, equals, value = spec.partition("=")
        name = name.strip(" \t\r\n")
        if not equals or not _TAG_NAME.fullmatch(name):
            raise BadRecord(f"{spec.strip()[:40]!r} is not a tag=value pair")
        if name in tags:
            raise BadRecord(f"the tag {name}= appears twice")
        tags[name] = value.strip(" \t\r\n")
    return tags


def matches(record: KeyRecord, key: PrivateKey) -> bool:
    """Whether *record* publishes the public half of *key*."""
    if record.revoked or record.key_type != algorithm_of(key).value:
        return False
    ours = public_key_data(key)
    if algorithm_of(key) is Algorithm.ED25519:
        return record.public_key == ours
    if record.public_key == ours:
        return True
    return _rsa_spki(record.public_key) == ours


def _rsa_spki(data: bytes) -> bytes | None:
    """SubjectPublicKeyInfo DER of a published RSA key (SPKI or PKCS#1), None if unreadable."""
    try:
        public = serialization.load_der_public_key(data)
    except ValueError:
        return None
    if not isinstance(public, rsa.RSAPublicKey):
        return None
    return public_key_data(public)
