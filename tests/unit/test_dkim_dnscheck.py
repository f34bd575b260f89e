"""Judging a looked-up DKIM record, name server addresses, and CNAMEs inside answers.

The lookups themselves run against a real DNS server in tests/integration/test_dkim_cli.py.
"""

from __future__ import annotations

import dns.message
import dns.name
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postwarden.dkim import dnscheck, record
from postwarden.dkim.dnscheck import BadNameserver, Outcome, judge, parse_nameserver

KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED = ed25519.Ed25519PrivateKey.generate()
NAME = "sel._domainkey.example.com"


def _strings(value: str) -> tuple[bytes, ...]:
    return tuple(s.encode() for s in record.split_strings(value))


@pytest.mark.parametrize(
    ("records", "nxdomain", "outcome", "detail"),
    [
        ([], True, Outcome.MISSING, "does not exist (NXDOMAIN)"),
        ([], False, Outcome.MISSING, "has no TXT record"),
        ([(b"v=spf1 -all",)], False, Outcome.MISSING, "no DKIM key record"),
        ([_strings(record.format_record(KEY))], False, Outcome.OK, "publishes this key"),
        (
            [(b"v=spf1 -all",), _strings(record.format_record(KEY))],
            False,
            Outcome.OK,
            "publishes this key",
        ),
        ([_strings(record.format_record(OTHER))], False, Outcome.DIFFERENT, "another key (k=rsa)"),
        ([_strings(record.format_record(ED))], False, Outcome.DIFFERENT, "(k=ed25519)"),
        ([(b"v=DKIM1; k=rsa; p=",)], False, Outcome.REVOKED, "empty p="),
        ([(b"v=DKIM1; k=rsa; p=@@",)], False, Outcome.MALFORMED, "p= is not valid base64"),
        (
            [_strings(f'"{record.format_record(KEY)}"')],
            False,
            Outcome.MALFORMED,
            "our key, but literal quote characters",
        ),
        (
            [_strings(record.format_zone_strings(record.format_record(OTHER)))],
            False,
            Outcome.MALFORMED,
            "holds literal quote characters",
        ),
        (
            [(record.format_record(KEY).replace("; p=", "; t=y; p=").encode(),)],
            False,
            Outcome.OK,
            "testing",
        ),
    ],
)
def test_judge(
    records: list[tuple[bytes, ...]], nxdomain: bool, outcome: Outcome, detail: str
) -> None:
    got, text = judge(records, KEY, NAME, nxdomain=nxdomain)
    assert got is outcome, text
    assert detail in text


def test_outcome_descriptions() -> None:
    assert [o.description for o in Outcome] == [
        "published",
        "missing",
        "different key",
        "revoked",
        "DNS error",
        "malformed record",
    ]
    assert [o for o in Outcome if o.may_propagate] == [Outcome.MISSING, Outcome.DIFFERENT]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[2001:db8::1]", ("2001:db8::1", 53)),
        ("localhost:53", (None, 53)),
    ],
)
def test_parse_nameserver(text: str, want: tuple[str | None, int]) -> None:
    host, port = parse_nameserver(text)
    assert port == want[1]
    if want[0] is not None:
        assert host == want[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("127.0.0.1:0", "is not a port number"),
        ("127.0.0.1:99999", "'99999' is not a port number"),
        ("127.0.0.1:x", "is not a port number"),
        ("[::1", r"is not HOST\[:PORT\]"),
    ],
)
def test_parse_nameserver_refuses(text: str, message: str) -> None:
    with pytest.raises(BadNameserver, match=message):
        parse_nameserver(text)


def _response(*rrsets: str) -> dns.message.Message:
    query = dns.message.make_query(NAME, "TXT")
    response = dns.message.make_response(query)
    for text in rrsets:
        name, rdtype, *data = text.split(" ", 2)
        response.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, *data))
    return response


def test_cnames_inside_the_answer_are_followed() -> None:
    qname = dns.name.from_text(NAME)
    response = _response(
        f"{NAME}. CNAME sel.keys.provider.example.",
        'sel.keys.provider.example. TXT "v=DKIM1; " "p="',
    )
    assert dnscheck._txt_in(response, qname) == ([(b"v=DKIM1; ", b"p=")], None)
    leading_out = _response(f"{NAME}. CNAME sel.keys.provider.example.")
    records, target = dnscheck._txt_in(leading_out, qname)
    assert records == [] and str(target) == "sel.keys.provider.example."
    assert dnscheck._txt_in(_response(), qname) == ([], None)
