"""Administrator regular expressions, compiled with RE2 so matching stays linear in time.

Description:
    Spam rules are admin input run on attacker-controlled text, so they go through google-re2
    only; there is deliberately no fallback to Python's backtracking ``re``. RE2 refuses what
    it cannot run in linear time (backreferences, lookarounds, ...); when it does, the error
    names the construct so the administrator learns what to change, not RE2's parser wording.

Errors:
    :class:`BadPattern` (a ``ValueError``) naming the construct or RE2's complaint.
"""

from __future__ import annotations

import re
from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print parse errors to stderr itself
_OPTIONS.never_capture = True  # rules only ask "does it match?"; no submatch bookkeeping

# Constructs a backtracking engine needs; named so the error says which one was used.
_REFUSED = (
    (re.compile(r"\\[1-9]|\\g<|\(\?P=|\\k<"), "backreferences are not supported"),
    (re.compile(r"\(\?<?[=!]"), "lookahead and lookbehind are not supported"),
    (re.compile(r"\(\?>"), "atomic groups are not supported"),
    (re.compile(r"[*+?}][+]"), "possessive quantifiers are not supported"),
)


class BadPattern(ValueError):
    """Not a pattern RE2 can run in linear time."""


def _strip_escaped_backslashes(pattern: str) -> str:
    return pattern.replace("\\\\", "")


def compile_pattern(pattern: str) -> Any:
    """Compile *pattern* with RE2, refusing constructs that need backtracking.

    :raises BadPattern: naming the construct, or carrying RE2's own message.
    """
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args else "invalid pattern"
    plain = _strip_escaped_backslashes(pattern)
    for finder, message in _REFUSED:
        found = finder.search(plain)
        if found:
            raise BadPattern(f"{message} (found {found.group()!r})")
    raise BadPattern(detail)


def check_pattern(pattern: str) -> str | None:
    """The problem with *pattern* as a message, or ``None`` when it compiles."""
    try:
        compile_pattern(pattern)
    except BadPattern as exc:
        return str(exc)
    return None
