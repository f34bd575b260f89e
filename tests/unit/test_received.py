"""The Received walk: the gateway-written client address or unknown, never the sender's choice.

Table cases for the formats MTAs write, the HELO tricks found by attacking a real gateway
(issue 9), and a property: whatever HELO text a client sends through a gateway, the walk
yields the address the gateway wrote, or unknown.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postwarden.milter.received import OriginalClient, hop_address, original_client

GATEWAY_SEES = "203.0.113.9"  # the sender's real address, as the gateway's MTA writes it
CHOSEN = "198.51.100.77"  # an address the sender would like us to believe

RECEIVED = [
    (
        "from mail.example.com (mail.example.com [192.0.2.1]) by mx (Postfix) with ESMTPS id X",
        "192.0.2.1",
    ),
    ("from [198.51.100.7] (unknown [203.0.113.9])\n\tby gw (Postfix) with ESMTP", "203.0.113.9"),
    ("from [203.0.113.9] (helo=[198.51.100.7]) by gw with esmtp (Exim 4.96)", "203.0.113.9"),
    ("from [203.0.113.9]:41234 (helo=mx.example)\n\tby gw with esmtp (Exim 4.96)", "203.0.113.9"),
    (
        "from host.example ([203.0.113.9] helo=[198.51.100.7]) by gw with esmtps (Exim 4.96)",
        "203.0.113.9",
    ),
    (
        "from EUR05-VI1-obe.outbound.protection.outlook.com (mail-vi1eur05on2050.outbound."
        "protection.outlook.com [40.107.21.50]) by mx.example.com",
        "40.107.21.50",
    ),
    (
        "from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208:ac::11) by "
        "AM0PR01MB5678.eurprd01.prod.exchangelabs.com with HTTPS",
        "2603:10a6:208:ac::11",
    ),
    (
        "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41])\n"
        "        by mx.google.com with SMTPS id x",
        "209.85.220.41",
    ),
    ("from client (unknown [IPv6:2001:db8::25]) by mx (Postfix)", "2001:db8::25"),
    ("from x (x [::ffff:192.0.2.33]) by y", "192.0.2.33"),
    ("from [10.0.0.1] by y", "10.0.0.1"),
    ("by mx.example.com with LMTP", None),
    ("from localhost (localhost) by x", None),
    ("from evil (evil) by x; comment [203.0.113.1]", None),  # after "by": not the client
    # What a real Postfix gateway wrote for the HELO tricks (HELO spaces and parentheses
    # become "?"): the address in the part Postfix fills in, never the encoded word's.
    (
        "from =?us-ascii?q?[198.51.100.77]_by_x?= (unknown [203.0.113.9])\n\tby gw.test"
        " (Postfix) with ESMTP id C380520DF64;\n\tTue,  1 Dec 2026 00:38:29 +0000 (UTC)",
        "203.0.113.9",
    ),
    ("from by (unknown [203.0.113.9])\n\tby gw.test (Postfix) with ESMTP id Q", "203.0.113.9"),
    (
        "from x??y?[198.51.100.77]??by?z (unknown [203.0.113.9])\n\tby gw (Postfix) with ESMTP",
        "203.0.113.9",
    ),
    # An MTA that kept spaces in the HELO name: two readings disagree, so unknown.
    ("from x (y [198.51.100.77]) by z (unknown [203.0.113.9])\n\tby gw (Postfix)", None),
    ("from x (helo=[198.51.100.77]) (unknown [203.0.113.9])\n\tby gw (Postfix)", "203.0.113.9"),
    # Encoded words are text: nothing is decoded.
    ("from =?utf-8?q?x_=28y_=5B198.51.100.77=5D=29?= by gw", None),
    (b"from x\xff\xfe (unknown [203.0.113.9])\n\tby gw (Postfix)", "203.0.113.9"),
]


@pytest.mark.parametrize(("header", "want"), RECEIVED)
def test_hop_address(header: str | bytes, want: str | None) -> None:
    assert hop_address(header) == want


def _walk(headers: list[str], gateways: set[str], max_hops: int = 5) -> OriginalClient:
    return original_client(headers, lambda ip: ip in gateways, max_hops=max_hops)


def test_walk_stops_at_the_first_non_gateway_and_never_reads_below() -> None:
    headers = [
        "from a (a [192.0.2.26]) by gw1",
        "from b (b [198.51.100.5]) by gw2",
        "from forged (forged [203.0.113.1]) by b",
    ]
    found = _walk(headers, {"192.0.2.26"})
    assert (found.address, found.hops) == ("198.51.100.5", 2)


def test_walk_gives_up_rather_than_guess() -> None:
    assert _walk(["garbage", "from b (b [198.51.100.5]) by x"], set()).address is None
    many = ["from g (g [192.0.2.26]) by x"] * 6 + ["from b (b [198.51.100.5]) by x"]
    found = _walk(many, {"192.0.2.26"})
    assert found.address is None and "gateway hops" in found.problem
    assert _walk([], set()).address is None


def _postfix_helo(helo: str) -> str:
    """A HELO name as Postfix's smtpd writes it into its Received header."""
    return "".join("?" if c in " ()" or not c.isprintable() else c for c in helo) or "?"


# Printable ASCII plus the characters that matter to the grammars, without line breaks
# (an SMTP client cannot send one inside a command).
HELO_TEXT = st.lists(
    st.sampled_from(
        [chr(c) for c in range(32, 127)] + ["\t", "[", "]", "(", ")", " by ", "helo=", CHOSEN]
    ),
    max_size=40,
).map("".join)
TEMPLATES = [
    # Postfix, as it writes its header: HELO sanitised, "by" on the next line
    lambda helo: (
        f"from {_postfix_helo(helo)} (unknown [{GATEWAY_SEES}])\n"
        "\tby gw.test (Postfix) with ESMTP id 4Q;\n\tTue,  1 Dec 2026 00:38:29 +0000 (UTC)"
    ),
    # A Postfix-style MTA that does not sanitise HELO names
    lambda helo: f"from {helo} (unknown [{GATEWAY_SEES}])\n\tby gw.test (Postfix) with ESMTP",
    # Google
    lambda helo: f"from {helo} (mail.example. [{GATEWAY_SEES}])\n        by mx.google.com with",
    # Exim, with and without a reverse name (HELO last, inside the parentheses)
    lambda helo: f"from [{GATEWAY_SEES}] (helo={helo})\n\tby gw with esmtp (Exim 4.96)",
    lambda helo: f"from mx.example ([{GATEWAY_SEES}] helo={helo})\n\tby gw with esmtp (Exim)",
]


@settings(max_examples=400, deadline=None)
@given(helo=HELO_TEXT, template=st.sampled_from(TEMPLATES))
@example(helo=f"=?us-ascii?q?[{CHOSEN}]_by_x?=", template=TEMPLATES[0])
@example(helo="by", template=TEMPLATES[0])
@example(helo=f"x (y [{CHOSEN}]) by z", template=TEMPLATES[1])
@example(helo=f"x (y [{CHOSEN}])", template=TEMPLATES[3])
@example(helo=f"x) by y ([{CHOSEN}] helo=z", template=TEMPLATES[4])
def test_a_helo_name_never_chooses_the_original_ip(helo: str, template) -> None:  # type: ignore[no-untyped-def]
    header = template(helo)
    assert hop_address(header) in (GATEWAY_SEES, None), header
    assert hop_address(header.encode()) in (GATEWAY_SEES, None), header
    found = _walk([header], {"192.0.2.25"})
    assert found.address in (GATEWAY_SEES, None)


@settings(max_examples=200, deadline=None)
@given(helo=st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}\.){0,3}[a-z]{2,6}", fullmatch=True))
def test_an_ordinary_helo_name_is_read(helo: str) -> None:
    for template in TEMPLATES:
        assert hop_address(template(helo)) == GATEWAY_SEES, template(helo)


@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=300))
def test_any_bytes_give_an_address_or_unknown(value: bytes) -> None:
    found = hop_address(value)
    assert found is None or isinstance(found, str)
