"""The original sending IP of mail that came through an inbound gateway.

Description:
    A gateway in front of this server receives the mail from the real sender and writes a
    ``Received:`` header saying so; Postfix then sees only the gateway's address. Walking the
    Received headers from the top, each hop's client address is checked: while it is a
    registered gateway (multi-hop gateways work), the walk continues; the first address that
    is not a gateway is the original client. Postfix never shows milters its own Received
    header, so the first one the milter sees is the gateway's.

    Each hop is read with strict grammars of what MTAs write themselves, on the raw header
    (undecoded, folding whitespace collapsed):

    ============== ====================================================================
    Postfix-style  ``from HELO (NAME [IP]) by ...`` (Postfix, Sendmail, Google; ``NAME`` is
                   the verified reverse name or ``unknown``, ``[IPv6:...]`` allowed)
    Exim           ``from [IP] (helo=HELO) by ...``, ``from NAME ([IP] helo=HELO) by ...``
    Microsoft      ``from HELO (IP) by ...`` (Exchange, Microsoft 365)
    ============== ====================================================================

    The address comes only from the part the gateway's MTA fills in itself; ``HELO`` is one
    token (Postfix turns spaces and parentheses in HELO names into ``?``), and ``::ffff:``
    mapped addresses count as IPv4.

Security:
    The sender chooses its HELO name, and everything in a header below the first hop we
    trust. So: no RFC 2047 or other decoding (an encoded word is just text); a hop whose
    value no grammar reads, or that two grammars read differently, is *unknown* — never a
    guess; the walk never reads past the first non-gateway hop and reads at most
    ``max_hops`` headers. An unknown original client is never trusted and never counts as
    "not blocked" (see :func:`postwarden.decision.judge_message`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import re2

_IP = r"(?:IPv6:)?(?P<ip>[0-9A-Fa-f:.]{2,45})"
_NAME = r"[^\s()\[\]]+"  # a host name: no space, parenthesis or bracket
_HELO_WORD = r"\S+"  # a HELO name as Postfix writes it: one token
_END = r"(?:\s+by\s|$)"

# Grammars over the whole unfolded value, read from its start. HELO is one token here.
_FLAT = (
    re2.compile(rf"from\s{_HELO_WORD}\s\({_NAME}\s\[{_IP}\]\){_END}"),  # Postfix-style
    re2.compile(rf"from\s\[{_IP}\](?::\d+)?(?:\s\(helo={_HELO_WORD}\))?{_END}"),  # Exim
    re2.compile(
        rf"from\s{_NAME}\s\(\[{_IP}\](?::\d+)?(?:\shelo={_HELO_WORD})?(?:\sident={_HELO_WORD})?\)"
        rf"{_END}"
    ),  # Exim with a verified reverse name
    re2.compile(rf"from\s{_NAME}\s\({_IP}\){_END}"),  # Microsoft
)
# Grammars over the first physical line of a folded value: Postfix, Exim and Google end it
# before their own "by", and a client cannot send a line break, so the HELO name may be
# any text here and the address is read from the end the MTA writes.
_FIRST_LINE = (
    re2.compile(rf"from\s(?:.*\s)?\({_NAME}\s\[{_IP}\]\)"),  # Postfix-style
    re2.compile(rf"from\s\[{_IP}\](?::\d+)?(?:\s\(helo=.*\))?"),  # Exim
    re2.compile(rf"from\s{_NAME}\s\(\[{_IP}\](?::\d+)?(?:\s(?:helo|ident)=.*)?\)"),  # Exim
)
_WHITESPACE = re.compile(r"[ \t\r\n]+")
_LINE_BREAK = re.compile(r"\r?\n")


def _address(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _ascii(raw: bytes | str) -> str:
    """The value as ASCII; other bytes and characters become ``?``."""
    if isinstance(raw, bytes):
        return raw.decode("ascii", "replace").replace("\ufffd", "?")
    return raw.encode("ascii", "replace").decode("ascii")


def _flat(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def hop_address(received: bytes | str) -> str | None:
    """The client address an MTA wrote into one raw Received value; ``None`` if unsure.

    Every grammar is tried, on the unfolded value and (when the value is folded) on its
    first line; the hop is read only when all that match agree on one address. Text a
    sender slips into its HELO name can make a hop unknown, but cannot choose its address.
    """
    text = _ascii(received)
    readings = [(grammar, _flat(text)) for grammar in _FLAT]
    lines = _LINE_BREAK.split(text.strip(), maxsplit=1)
    if len(lines) == 2:
        readings += [(grammar, _flat(lines[0])) for grammar in _FIRST_LINE]
    found = set()
    for grammar, value in readings:
        match = grammar.fullmatch(value) if grammar in _FIRST_LINE else grammar.match(value)
        if match is not None:
            found.add(_address(match["ip"]))
    if len(found) != 1:
        return None
    return found.pop()


@dataclass(frozen=True)
class OriginalClient:
    """The result of the walk: the address, or why there is none (then it is unknown)."""

    address: str | None
    hops: int
    problem: str = ""


def original_client(
    received: Sequence[bytes | str], is_gateway: Callable[[str], bool], *, max_hops: int
) -> OriginalClient:
    """Walk *received* (raw values, top first) past gateway hops to the original client."""
    for hop, value in enumerate(received[:max_hops], start=1):
        address = hop_address(value)
        if address is None:
            return OriginalClient(None, hop, f"Received header {hop} is not in a form we trust")
        if not is_gateway(address):
            return OriginalClient(address, hop)
    if len(received) > max_hops:
        return OriginalClient(None, max_hops, f"more than {max_hops} gateway hops")
    return OriginalClient(None, len(received), "no Received header names a non-gateway client")
