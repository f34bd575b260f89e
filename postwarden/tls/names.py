"""Certificate names and Postfix's rules for matching them (``smtp_tls_verify_cert_match``).

Description:
    The names a certificate offers are its DNS subjectAltNames; only when it has none is the
    subject's CommonName used (Postfix ``tls_verify.c``: "If the certificate has
    subjectAltName dNSName entries, the CommonName is ignored"). Comparison is case
    insensitive, without a trailing dot. A wildcard name ``*.example.com`` stands for exactly
    one more label (``mx.example.com``, not ``example.com`` nor ``a.b.example.com``).

    Match strategies, as in Postfix:

    ``hostname``      the MX host name (``verify``, and what postwarden's policies use)
    ``nexthop``       the next-hop domain, i.e. the partner domain itself (``secure``)
    ``dot-nexthop``   any subdomain of the next-hop domain (``secure``)
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID


def certificate_names(der: bytes) -> tuple[str, ...]:
    """The DNS names of a DER certificate: its dNSName SANs, else its CommonName(s)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = sans.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(n.lower().rstrip(".") for n in names)


def name_matches(pattern: str, name: str) -> bool:
    """Whether certificate name *pattern* (maybe ``*.domain``) covers host *name*."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def matches_hostname(names: tuple[str, ...], host: str) -> bool:
    return any(name_matches(n, host) for n in names)


def matches_nexthop(names: tuple[str, ...], domain: str) -> bool:
    """``nexthop:dot-nexthop``: the domain itself or any name below it."""
    domain = domain.lower().rstrip(".")
    for n in names:
        if name_matches(n, domain):
            return True
        bare = n[2:] if n.startswith("*.") else n
        if bare.endswith("." + domain):
            return True
    return False
