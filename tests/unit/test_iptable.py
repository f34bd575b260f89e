"""IP entries and the range table, checked against a brute-force reference."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postwarden.util.iptable import BadIpEntry, IpRange, IpTable, parse_client_address, parse_range


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.10-192.0.2.20", "192.0.2.10-192.0.2.20"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:db8::1-2001:db8::ff", "2001:db8::1-2001:db8::ff"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
    ],
)
def test_parse_forms(text: str, want: str) -> None:
    assert parse_range(text).to_text() == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.0.2.1/24", "host bits set (did you mean 192.0.2.0/24?)"),
        ("192.0.2.0/33", "prefix length must be 0 to 32"),
        ("192.0.2.9-192.0.2.1", "range ends before it starts"),
        ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("example.com", "is not an IP address, CIDR network or first-last range"),
        ("192.0.2.256", "is not an IP address"),
        ("10.0.0.0/x", "prefix length must be a number"),
        ("", "empty IP entry"),
    ],
)
def test_parse_errors_name_the_entry(text: str, message: str) -> None:
    with pytest.raises(BadIpEntry, match=None) as caught:
        parse_range(text)
    assert message in str(caught.value)
    if text:
        assert repr(text) in str(caught.value)


def test_narrowest_entry_wins_and_ties_go_to_the_first() -> None:
    table = IpTable(
        [
            (parse_range("10.0.0.0/8"), "wide"),
            (parse_range("10.1.0.0/16"), "middle"),
            (parse_range("10.1.2.3"), "host"),
            (parse_range("10.1.0.0-10.1.255.255"), "same-as-middle"),
        ]
    )
    assert table.lookup_text("10.1.2.3") == "host"
    assert table.lookup_text("10.1.2.4") == "middle"
    assert table.lookup_text("10.2.0.0") == "wide"
    assert table.lookup_text("11.0.0.0") is None
    assert table.lookup_text("not an address") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("192.0.2.1", (4, 0xC0000201)),
        ("::ffff:192.0.2.1", (4, 0xC0000201)),
        ("IPv6:2001:db8::1", (6, 0x20010DB8 << 96 | 1)),
        ("unknown", None),
        ("", None),
    ],
)
def test_client_addresses_as_postfix_sends_them(text: str, want: object) -> None:
    assert parse_client_address(text) == want


_v4 = st.integers(0, 2**32 - 1)


@st.composite
def _ranges(draw: st.DrawFn) -> IpRange:
    a, b = sorted((draw(_v4), draw(_v4)))
    if draw(st.booleans()):  # mostly small ranges, so that overlaps and gaps both happen
        b = min(a + draw(st.integers(0, 2**12)), 2**32 - 1)
    return IpRange(4, a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ranges(), max_size=30), st.lists(_v4, max_size=30))
def test_table_matches_a_brute_force_scan(ranges: list[IpRange], probes: list[int]) -> None:
    table = IpTable((r, i) for i, r in enumerate(ranges))
    probes += [r.first for r in ranges] + [r.last for r in ranges] + [r.last + 1 for r in ranges]
    for address in probes:
        covering = [(r.size, i) for i, r in enumerate(ranges) if r.first <= address <= r.last]
        want = min(covering)[1] if covering else None
        assert table.lookup(4, address) == want, (address, ranges)


def test_ipv6_lookup_against_ipaddress() -> None:
    net = ipaddress.ip_network("2001:db8:bad::/48")
    table = IpTable([(parse_range(str(net)), "bad")])
    assert table.lookup_text("2001:db8:bad:ffff:ffff:ffff:ffff:ffff") == "bad"
    assert table.lookup_text("2001:db8:bae::") is None
