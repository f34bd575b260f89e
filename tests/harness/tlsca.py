"""A throw-away certificate authority for TLS tests, made with `cryptography`.

Description:
    TestCA creates a CA key and certificate in a directory, issues server certificates for
    given DNS names and IP addresses, and makes self-signed certificates (the "untrusted"
    case). Everything is written as PEM files so that Postfix (`smtp_tls_CAfile`,
    `smtpd_tls_cert_file`) and Python's ssl module can use them.

    Keys are EC P-256: generating them takes milliseconds, unlike RSA.

Security:
    Private keys are written 0600 (owner root, readable by Postfix daemons because they load
    keys before dropping privileges); certificates and the CA bundle 0644, and the directory
    must be traversable (0755) because Postfix's smtp client runs as the postfix user.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class CertFiles:
    """PEM files of one certificate: the certificate (leaf first, then chain) and its key."""

    cert: Path
    key: Path


class TestCA:
    """A CA whose files live in `directory`; `ca_file` is the bundle to trust."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "postwarden test CA") -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        builder = _builder(subject, subject, self._key.public_key())
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(_key_usage(ca=True), True)
        self.cert = builder.sign(self._key, hashes.SHA256())
        self.ca_file = _write(directory / "ca.pem", _pem(self.cert), 0o644)

    def issue(
        self,
        stem: str,
        dns_names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        *,
        expired: bool = False,
    ) -> CertFiles:
        """Issue a server certificate for the names and addresses; write STEM.pem/STEM.key.

        *expired*: valid for a day that ended an hour ago.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _builder(
            _name(_common_name(stem, dns_names)),
            self.cert.subject,
            key.public_key(),
            expired=expired,
        )
        builder = _server_extensions(builder, dns_names, ips)
        cert = builder.sign(self._key, hashes.SHA256())
        return _write_pair(self.directory, stem, cert, key)

    def self_signed(
        self, stem: str, dns_names: tuple[str, ...] = (), ips: tuple[str, ...] = ()
    ) -> CertFiles:
        """A self-signed server certificate (no CA trusts it) for the names and addresses."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(_common_name(stem, dns_names))
        builder = _server_extensions(_builder(subject, subject, key.public_key()), dns_names, ips)
        cert = builder.sign(key, hashes.SHA256())
        return _write_pair(self.directory, stem, cert, key)


def _name(common_name: str) -> x509.Name:
    """A distinguished name with just a CN."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _common_name(stem: str, dns_names: tuple[str, ...]) -> str:
    """The first DNS name, or the file stem when there is none."""
    return dns_names[0] if dns_names else stem


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    *,
    expired: bool = False,
) -> x509.CertificateBuilder:
    """A certificate builder valid from an hour ago for two days (or expired an hour ago)."""
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(hours=1), now + _VALIDITY
    if expired:
        start, end = now - datetime.timedelta(days=2), now - datetime.timedelta(hours=1)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _server_extensions(
    builder: x509.CertificateBuilder, dns_names: tuple[str, ...], ips: tuple[str, ...]
) -> x509.CertificateBuilder:
    """SANs, key usage and the serverAuth extended key usage of a TLS server certificate."""
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(_key_usage(ca=False), True)
    return builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Key usage of a CA (sign certificates) or of a server (sign handshakes)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> CertFiles:
    """Write STEM.pem (0644) and STEM.key (0600)."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CertFiles(
        cert=_write(directory / f"{stem}.pem", _pem(cert), 0o644),
        key=_write(directory / f"{stem}.key", key_pem, 0o600),
    )


def _write(path: Path, data: bytes, mode: int) -> Path:
    """Create `path` with `mode` from the start (no window with wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    return path
