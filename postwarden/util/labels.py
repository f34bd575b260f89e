"""Names turned into DNS labels."""

from __future__ import annotations

import re

_LABEL_CHARS = re.compile(r"[^a-z0-9-]+")


def route_label(name: str) -> str:
    """The DNS label standing for route *name* in tagged addresses (``dlp.gw`` → ``dlp-gw``)."""
    return _LABEL_CHARS.sub("-", name.lower()).strip("-")[:63] or "route"
