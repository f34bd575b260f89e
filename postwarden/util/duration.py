"""Durations typed on the command line: ``90s``, ``30m``, ``24h``, ``7d``, ``2w``.

Errors:
    :class:`BadDuration` (a ``ValueError``) naming the text.
"""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d{1,9})\s*([smhdw])\s*", re.IGNORECASE)


class BadDuration(ValueError):
    """Not a duration."""


def parse_duration(text: str) -> int:
    """Seconds in *text*, a number followed by s, m, h, d or w."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise BadDuration(f"{text!r} is not a duration (e.g. 90s, 30m, 24h, 7d, 2w)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]
