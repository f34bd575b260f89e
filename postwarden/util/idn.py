"""Internationalized domain names: the A-label form settings and lookups are keyed by.

IDNA 2008 with UTS #46 mapping (what mail software and browsers use today), not Python's
built-in IDNA 2003 codec, which maps ``ß`` to ``ss`` and so names another domain.
"""

from __future__ import annotations

import functools

import idna


class BadDomainName(ValueError):
    """Not a valid internationalized domain name."""


@functools.lru_cache(maxsize=4096)
def to_a_label(name: str) -> str:
    """``BÜCHER.example`` → ``xn--bcher-kva.example``; ASCII names are only lower-cased."""
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise BadDomainName(f"{name!r} is not a valid domain name ({exc})") from None
