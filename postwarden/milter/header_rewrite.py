"""Which incoming header fields the milter removes, and the ones it owns.

Description:
    ``X-Postwarden-*`` fields are ours: downstream filters and Sieve rules trust them, so any
    copy that arrives with a message is removed before ours are added — any letter case,
    folded or repeated. ``X-Spam-Flag`` is removed too when postwarden owns the spam verdict
    for the message (its regex filter runs on it), so a sender cannot set it either way.

    Postfix numbers header fields of one name from 1, case-insensitively, and deleting one
    renumbers the rest; so removals are listed highest index first.
"""

from __future__ import annotations

from collections.abc import Sequence

OWN_PREFIX = "x-postwarden-"
SPAM_FLAG = "X-Spam-Flag"
SPAM_RULE = "X-Postwarden-Spam"
TRUSTED = "X-Postwarden-Trusted"


def removals(names: Sequence[str], *, own_spam_flag: bool) -> list[tuple[str, int]]:
    """``(name, index)`` pairs to delete with ``chgheader(name, index, "")``, in order."""
    seen: dict[str, int] = {}
    doomed: list[tuple[str, int]] = []
    for name in names:
        key = name.lower()
        seen[key] = seen.get(key, 0) + 1
        if key.startswith(OWN_PREFIX) or (own_spam_flag and key == SPAM_FLAG.lower()):
            doomed.append((name, seen[key]))
    return sorted(doomed, key=lambda item: (item[0].lower(), -item[1]))
