"""The original sending IP of mail that came through an inbound gateway.

Description:
    A gateway in front of this server receives the mail from the real sender and writes a
    ``Received:`` header saying so; Postfix then sees only the gateway's address. Walking the
    Received headers from the top, each hop's "from" address is checked: while it is a
    registered gateway (multi-hop gateways work), the walk continues; the first address that
    is not a gateway is the original client. Postfix never shows milters its own Received
    header, so the first one the milter sees is the gateway's.

    Formats understood: Postfix ``from helo (rdns [IP])``, Exim ``from [IP] (helo=...)`` and
    ``from host ([IP] helo=...)``, Exchange/Microsoft 365 ``from HOST (IP)``, Google
    ``from host (host. [IP])``, ``[IPv6:...]`` literals and ``::ffff:`` mapped addresses.

Security:
    Headers are attacker-controlled below the first hop we trust, so the walk never reads
    past the first non-gateway hop, reads at most ``max_hops`` headers, and gives up (the
    gateway itself is then the client) when a hop cannot be parsed: a guess could let a
    forged header choose which list applies. HELO names, which the sending client chooses,
    are never taken for addresses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_BY = re.compile(r"\sby\s", re.IGNORECASE)
_FROM = re.compile(r"^\s*from\s", re.IGNORECASE)
_HELO = re.compile(r"helo=\S*", re.IGNORECASE)
_BRACKETED = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]", re.IGNORECASE)
_PARENTHESIZED = re.compile(r"\(\s*([0-9A-Fa-f:.]{2,})\s*\)")


def _address(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def hop_address(received: str) -> str | None:
    """The address in the "from" clause of one Received header value, or ``None``.

    The connecting address is the last bracketed one of the clause (Postfix puts a bracketed
    HELO literal first, then the verified address in the comment); ``helo=`` values (Exim)
    are dropped first. Exchange writes the address in parentheses without brackets.
    """
    text = " ".join(received.split())
    if not _FROM.match(text):
        return None
    clause = _BY.split(text, maxsplit=1)[0]
    clause = _HELO.sub("", clause)
    for candidate in reversed(_BRACKETED.findall(clause)):
        address = _address(candidate)
        if address:
            return address
    for candidate in reversed(_PARENTHESIZED.findall(clause)):
        address = _address(candidate)
        if address:
            return address
    return None


@dataclass(frozen=True)
class OriginalClient:
    """The result of the walk: the address, or why there is none."""

    address: str | None
    hops: int
    problem: str = ""


def original_client(
    received: Sequence[str], is_gateway: Callable[[str], bool], *, max_hops: int
) -> OriginalClient:
    """Walk *received* (top first) past gateway hops to the original client's address."""
    for hop, value in enumerate(received[:max_hops], start=1):
        address = hop_address(value)
        if address is None:
            return OriginalClient(None, hop, f"Received header {hop} has no parsable address")
        if not is_gateway(address):
            return OriginalClient(address, hop)
    if len(received) > max_hops:
        return OriginalClient(None, max_hops, f"more than {max_hops} gateway hops")
    return OriginalClient(None, len(received), "no Received header names a non-gateway client")
