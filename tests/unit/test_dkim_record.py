"""The DKIM key record: our TXT value, its 255-byte strings, parsing and comparing."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st

from postwarden.dkim import record
from postwarden.dkim.record import BadRecord, KeyRecord, matches, parse_record

RSA_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED = ed25519.Ed25519PrivateKey.generate()


def test_host_name() -> None:
    assert record.host_name("postwarden", "example.com") == "postwarden._domainkey.example.com"


def test_rsa_record_is_spki() -> None:
    value = record.format_record(RSA_2048)
    assert value.startswith("v=DKIM1; k=rsa; p=MIIB")
    der = base64.b64decode(value.split("p=")[1])
    assert der == RSA_2048.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_ed25519_record_is_the_raw_key() -> None:
    value = record.format_record(ED)
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(value.split("p=")[1])) == 32


def test_split_for_the_zone_file() -> None:
    value = record.format_record(RSA_2048)
    strings = record.split_strings(value)
    assert len(strings) == 2
    assert [len(s) for s in strings] == [255, len(value) - 255]
    assert "".join(strings) == value
    assert record.format_zone_strings(value) == f'"{strings[0]}" "{strings[1]}"'
    assert record.split_strings(record.format_record(ED)) == [record.format_record(ED)]


@given(st.text(alphabet="abc=; +/", max_size=1200), st.integers(1, 300))
def test_split_strings_property(value: str, limit: int) -> None:
    strings = record.split_strings(value, limit)
    assert "".join(strings) == value
    assert all(len(s.encode()) <= limit for s in strings)
    assert all(strings[:-1]) and all(len(s) == limit for s in strings[:-1])


@pytest.mark.parametrize("key", [RSA_2048, RSA_1024, ED], ids=["rsa2048", "rsa1024", "ed"])
def test_our_record_parses_and_matches(key: object) -> None:
    value = record.format_record(key)  # type: ignore[arg-type]
    parsed = parse_record(record.split_strings(value))
    assert parsed.version == "DKIM1" and not parsed.revoked
    assert matches(parsed, key)  # type: ignore[arg-type]
    for other in (RSA_2048, RSA_1024, ED):
        if other is not key:
            assert not matches(parsed, other)


def test_parse_bytes_strings_as_dnspython_gives_them() -> None:
    value = record.format_record(RSA_2048).encode()
    parsed = parse_record([value[:100], value[100:]])
    assert matches(parsed, RSA_2048)


def test_parse_tolerates_what_publishers_write() -> None:
    p = base64.b64encode(
        RSA_1024.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    spaced = " ".join(p[i : i + 20] for i in range(0, len(p), 20))
    for text in (
        f"p={p}",  # v= and k= are optional
        f"v=DKIM1;k=rsa;p={p};",
        f" v = DKIM1 ; k = RSA ;\th=sha256; t=y:s ; p = {spaced} ; n=note",
    ):
        parsed = parse_record(text)
        assert matches(parsed, RSA_1024), text


def test_parse_flags_and_unknown_tags() -> None:
    parsed = parse_record("v=DKIM1; k=ed25519; t=y:s; x_extra=1; p=")
    assert parsed.flags == ("y", "s") and parsed.testing
    assert parsed.revoked
    assert parsed.key_type == "ed25519"
    assert parsed.tags["x_extra"] == "1"


def test_pkcs1_rsa_public_key_is_accepted() -> None:
    der = RSA_1024.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    parsed = parse_record(f"v=DKIM1; p={base64.b64encode(der).decode()}")
    assert matches(parsed, RSA_1024)


def test_revoked_never_matches() -> None:
    assert parse_record("v=DKIM1; k=rsa; p=").revoked
    assert not matches(KeyRecord("rsa", b""), RSA_1024)


def test_wrong_key_type_does_not_match() -> None:
    value = record.format_record(RSA_1024).replace("k=rsa", "k=ed25519")
    assert not matches(parse_record(value), RSA_1024)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v=spf1 include:example.net ~all", "is not v=DKIM1"),
        ("v=DKIM2; p=", "v=DKIM2 is not v=DKIM1"),
        ("k=rsa; v=DKIM1; p=", "v= is not the first tag"),
        ("v=DKIM1; k=rsa", "no p= tag"),
        ("v=DKIM1; p=abc; p=def", "appears twice"),
        ("v=DKIM1; p=%%%", "not valid base64"),
        ("v=DKIM1; 1x=2; p=", "is not a tag=value pair"),
        ("hello", "is not a tag=value pair"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(BadRecord, match=message):
        parse_record(text)


def test_parse_refuses_non_ascii() -> None:
    with pytest.raises(BadRecord, match="not ASCII"):
        parse_record([b"v=DKIM1; p=\xff"])


def test_garbage_rsa_key_does_not_match() -> None:
    parsed = parse_record("v=DKIM1; k=rsa; p=" + base64.b64encode(b"junk").decode())
    assert not matches(parsed, RSA_1024)
