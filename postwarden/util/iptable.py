"""IP addresses, ranges and a fast range-lookup table.

Description:
    An *entry* is one IPv4/IPv6 address, a CIDR network or a ``first-last`` range; every form
    becomes an :class:`IpRange` of two integers. Text is parsed and written by ``netaddr``
    (strict ``inet_pton`` rules: no short or zero-padded IPv4 forms), and
    :func:`range_to_networks` splits a range into the CIDR networks that cover it exactly
    (``netaddr.iprange_to_cidrs``), for tables that know only networks.

    :class:`IpTable` answers "which entry covers this address?" in O(log n): at build time
    the entries are cut into disjoint segments, each pointing at the narrowest entry that
    covers it (so a /32 inside a /24 wins, the way a longest-prefix match would), and a
    lookup is one bisection over the segment starts.

    This module knows nothing about mail or settings.

Errors:
    Parsing raises :class:`BadIpEntry` (a ``ValueError``) whose message names the bad text.
"""

from __future__ import annotations

import bisect
import heapq
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import netaddr

T = TypeVar("T")

_BITS = {4: 32, 6: 128}


class BadIpEntry(ValueError):
    """Not an IP address, CIDR network or first-last range."""


@dataclass(frozen=True, slots=True)
class IpRange:
    """An inclusive range of addresses of one IP version.

    ``form`` remembers how the range was written (``address``, ``network`` or ``range``) so
    that text goes back out in the administrator's form; it takes no part in comparisons.
    """

    version: int
    first: int
    last: int
    form: str = field(default="range", compare=False)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def prefixlen(self) -> int:
        """The length of the shortest prefix that covers the whole range."""
        return _BITS[self.version] - (self.first ^ self.last).bit_length()

    def is_network(self) -> bool:
        """True when the range is exactly one CIDR network."""
        host_bits = _BITS[self.version] - self.prefixlen
        return self.first & ((1 << host_bits) - 1) == 0 and self.size == 1 << host_bits

    def contains(self, other: IpRange) -> bool:
        return self.version == other.version and self.first <= other.first <= other.last <= (
            self.last
        )

    def overlaps(self, other: IpRange) -> bool:
        return (
            self.version == other.version
            and self.first <= other.last
            and (other.first <= self.last)
        )

    def to_text(self) -> str:
        """Canonical text in the form the range was written in."""
        first = _int_to_text(self.version, self.first)
        if self.form == "address" and self.size == 1:
            return first
        if self.form == "network" and self.is_network():
            return f"{first}/{self.prefixlen}"
        return f"{first}-{_int_to_text(self.version, self.last)}"


def _int_to_text(version: int, value: int) -> str:
    return str(netaddr.IPAddress(value, version))


def _parse_address(text: str) -> netaddr.IPAddress:
    """An address; an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) is its IPv4 address."""
    if not text or text != text.strip() or "/" in text or "%" in text:
        raise BadIpEntry(f"{text!r} is not an IP address")
    try:
        address = netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise BadIpEntry(f"{text!r} is not an IP address") from None
    if address.version == 6 and address.is_ipv4_mapped():
        return address.ipv4()
    return address


def range_to_networks(ip_range: IpRange) -> list[str]:
    """The CIDR networks that cover *ip_range* exactly, smallest number of them."""
    first = netaddr.IPAddress(ip_range.first, ip_range.version)
    last = netaddr.IPAddress(ip_range.last, ip_range.version)
    return [str(network) for network in netaddr.iprange_to_cidrs(first, last)]


def parse_range(text: str) -> IpRange:
    """Parse an address, ``addr/prefix`` network or ``first-last`` range.

    :raises BadIpEntry: naming *text* and what is wrong with it.
    """
    text = text.strip()
    if not text:
        raise BadIpEntry("empty IP entry")
    if "/" in text:
        return _parse_network(text)
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        try:
            first, last = _parse_address(first_text), _parse_address(last_text)
        except BadIpEntry:
            raise BadIpEntry(
                f"{text!r} is not an IP address, CIDR network or first-last range"
            ) from None
        if first.version != last.version:
            raise BadIpEntry(f"{text!r}: range mixes IPv4 and IPv6")
        if int(first) > int(last):
            raise BadIpEntry(f"{text!r}: range ends before it starts")
        return IpRange(first.version, int(first), int(last), "range")
    try:
        address = _parse_address(text)
    except BadIpEntry:
        raise BadIpEntry(
            f"{text!r} is not an IP address, CIDR network or first-last range"
        ) from None
    return IpRange(address.version, int(address), int(address), "address")


def _parse_network(text: str) -> IpRange:
    address_text, _, prefix_text = text.partition("/")
    address = _parse_address(address_text)
    if not prefix_text.isdigit() or len(prefix_text) > 3:
        raise BadIpEntry(f"{text!r}: prefix length must be a number")
    prefixlen, bits = int(prefix_text), _BITS[address.version]
    if address_text.lower().startswith("::ffff:") and address.version == 4:
        prefixlen -= 96  # an IPv4-mapped network written in IPv6 form
    if not 0 <= prefixlen <= bits:
        raise BadIpEntry(f"{text!r}: prefix length must be 0 to {bits}")
    host_mask = (1 << (bits - prefixlen)) - 1
    first = int(address)
    if first & host_mask:
        network = _int_to_text(address.version, first & ~host_mask)
        raise BadIpEntry(f"{text!r} has host bits set (did you mean {network}/{prefixlen}?)")
    return IpRange(address.version, first, first | host_mask, "network")


_V4_MAPPED = 0xFFFF << 32


def parse_client_address(text: str) -> tuple[int, int] | None:
    """Parse a client address as Postfix sends it; ``None`` when it is not one.

    This is the hot path of every lookup, so it uses ``inet_pton`` instead of ``ipaddress``.
    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) are answered as IPv4.
    """
    try:
        if ":" not in text:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        if text[:5].upper() == "IPV6:":
            text = text[5:]
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text.partition("%")[0]), "big")
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:
        return 4, value - _V4_MAPPED
    return 6, value


class IpTable(Generic[T]):
    """Map addresses to the narrowest of the entries covering them.

    Build cost is O(n log n); a lookup is one bisection. Ties between equally wide entries go to
    the one given first.
    """

    __slots__ = ("_tables",)

    def __init__(self, items: Iterable[tuple[IpRange, T]]) -> None:
        by_version: dict[int, list[tuple[IpRange, int, T]]] = {4: [], 6: []}
        for order, (ip_range, value) in enumerate(items):
            by_version[ip_range.version].append((ip_range, order, value))
        self._tables = {v: _build_segments(entries) for v, entries in by_version.items()}

    def lookup(self, version: int, address: int) -> T | None:
        starts, ends, values = self._tables[version]
        index = bisect.bisect_right(starts, address) - 1
        if index >= 0 and address <= ends[index]:
            return values[index]
        return None

    def lookup_text(self, text: str) -> T | None:
        """Look a textual client address up; unparsable text matches nothing."""
        parsed = parse_client_address(text)
        return None if parsed is None else self.lookup(*parsed)

    def __len__(self) -> int:
        return sum(len(starts) for starts, _, _ in self._tables.values())


def _build_segments(entries: list[tuple[IpRange, int, T]]) -> tuple[list[int], list[int], list[T]]:
    """Cut overlapping ranges into disjoint segments owned by the narrowest covering range."""
    events: list[tuple[int, int, int]] = []  # (point, kind, entry index); kind 0 = end, 1 = start
    for index, (ip_range, _, _) in enumerate(entries):
        events.append((ip_range.first, 1, index))
        events.append((ip_range.last + 1, 0, index))
    events.sort()
    starts: list[int] = []
    ends: list[int] = []
    values: list[T] = []
    active: list[tuple[int, int, int]] = []  # heap of (size, order, index)
    ended: set[int] = set()
    last_owner = -1
    position = 0
    while position < len(events):
        point = events[position][0]
        while position < len(events) and events[position][0] == point:
            _, kind, index = events[position]
            if kind:
                ip_range, order, _ = entries[index]
                heapq.heappush(active, (ip_range.size, order, index))
            else:
                ended.add(index)
            position += 1
        while active and active[0][2] in ended:
            heapq.heappop(active)
        if not active:
            continue
        next_point = events[position][0] if position < len(events) else point + 1
        owner = active[0][2]
        if ends and ends[-1] == point - 1 and last_owner == owner:
            ends[-1] = next_point - 1  # extend the previous segment: same owner, adjacent
        else:
            starts.append(point)
            ends.append(next_point - 1)
            values.append(entries[owner][2])
        last_owner = owner
    return starts, ends, values


def find_overlaps(ranges: Iterable[IpRange]) -> Iterator[tuple[int, int]]:
    """Yield ``(i, j)`` index pairs, ``j`` overlapping an earlier-starting range ``i``.

    A sweep over the ranges sorted by start (netaddr has no pairwise finder: an ``IPSet``
    merges overlapping ranges and forgets which entries they were).

    Each range that overlaps anything is reported once, against the range reaching furthest
    among those before it, which is enough for a warning that names both.
    """
    indexed = sorted(enumerate(ranges), key=lambda item: (item[1].version, item[1].first))
    reach: tuple[int, int, int] | None = None  # (version, last, index)
    for index, ip_range in indexed:
        if reach and reach[0] == ip_range.version and ip_range.first <= reach[1]:
            yield reach[2], index
        if reach is None or reach[0] != ip_range.version or ip_range.last > reach[1]:
            reach = (ip_range.version, ip_range.last, index)
