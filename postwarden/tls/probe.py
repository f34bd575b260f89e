"""Would Postfix deliver to a partner under each TLS policy level? Ask its MX hosts.

Description:
    :func:`probe_partner` finds the partner's mail hosts (:func:`~postwarden.mx.lookup.
    mail_hosts`, MX in preference order), and for every address connects as Postfix's smtp
    client does: SMTP greeting, EHLO, STARTTLS if offered, no SNI (Postfix sends none unless
    ``smtp_tls_servername`` is set), then the TLS handshake with the same OpenSSL library and
    its default protocols and ciphers. A first handshake accepts any certificate (what
    ``encrypt`` needs); a second verifies the chain against the given CA file or the system
    CAs (``smtp_tls_CAfile``/``CApath``), as ``verify`` and ``secure`` need. The certificate's
    names are then matched by Postfix's rules (:mod:`postwarden.tls.names`).

    Per address, per level:

    ``may``      the host answers SMTP (TLS when offered; Postfix retries in plaintext
                 when a handshake fails)
    ``encrypt``  STARTTLS offered and the handshake succeeds
    ``verify``   encrypt + a trusted chain + a name matching the MX host name
                 (what a postwarden policy with trusted_ca or hostname_match asks)
    ``secure``   encrypt + a trusted chain + a name matching the partner domain or one
                 below it (``match=nexthop:dot-nexthop``)

    A level *delivers* when some host passes it: Postfix tries the MX hosts in preference
    order and moves on from one that fails the policy, so a failing preferred host delays
    mail but does not stop it; the result says which hosts would be skipped.

Errors:
    DNS failures are reported in the result (``error``), not raised; connection problems
    are per address. Nothing is sent beyond EHLO, STARTTLS and QUIT.

Security:
    Connections go only to the addresses the partner's DNS names; the probe never sends
    MAIL or a message.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from postwarden.mx.lookup import MailHosts, MxLookupFailed, mail_hosts
from postwarden.tls.names import certificate_names, matches_hostname, matches_nexthop

LEVELS = ("may", "encrypt", "verify", "secure")
MAX_ADDRESSES = 4  # per host, as Postfix's smtp_mx_address_limit bounds its tries


@dataclass(frozen=True)
class AddressProbe:
    host: str
    address: str
    reachable: bool = False
    starttls: bool = False
    handshake: bool = False
    protocol: str = ""
    cipher: str = ""
    trusted: bool = False
    names: tuple[str, ...] = ()
    hostname_match: bool = False
    nexthop_match: bool = False
    problem: str = ""  # why the last step that failed failed

    def passes(self, level: str) -> bool:
        if level == "may":
            return self.reachable
        if level == "encrypt":
            return self.handshake
        if level == "verify":
            return self.handshake and self.trusted and self.hostname_match
        return self.handshake and self.trusted and self.nexthop_match


@dataclass(frozen=True)
class LevelVerdict:
    level: str
    delivers: bool
    via: str | None  # the first host (in preference order) that passes
    skipped: tuple[str, ...]  # preferred hosts that fail it


@dataclass
class PartnerProbe:
    partner: str
    hosts: MailHosts | None = None
    addresses: list[AddressProbe] = field(default_factory=list)
    error: str = ""

    def verdicts(self) -> list[LevelVerdict]:
        result = []
        for level in LEVELS:
            passing = [a.host for a in self.addresses if a.passes(level)]
            via = passing[0] if passing else None
            order = [a.host for a in self.addresses]
            before = order[: order.index(via)] if via else order
            skipped = tuple(dict.fromkeys(h for h in before if h != via))
            result.append(LevelVerdict(level, via is not None, via, skipped))
        return result


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _verifying_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.check_hostname = False  # names are matched by Postfix's rules, not Python's
    return context


def _starttls(
    address: str, port: int, helo: str, timeout: float, context: ssl.SSLContext
) -> tuple[bool, smtplib.SMTP]:
    """Connect, EHLO; STARTTLS with *context* when offered. Returns (offered, session)."""
    # Connecting in the constructor makes the address the TLS server_hostname, which Python
    # never sends as SNI for an IP literal: no SNI, as Postfix by default.
    smtp = smtplib.SMTP(address, port, local_hostname=helo, timeout=timeout)
    smtp.ehlo(helo)
    if not smtp.has_extn("starttls"):
        return False, smtp
    smtp.starttls(context=context)
    return True, smtp


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def probe_address(
    partner: str,
    host: str,
    address: str,
    *,
    port: int,
    helo: str,
    timeout: float,
    ca_file: Path | None,
) -> AddressProbe:
    """One address: reachable, STARTTLS, handshake, chain, names (see the module docstring)."""
    try:
        offered, smtp = _starttls(address, port, helo, timeout, _unverified_context())
    except ssl.SSLError as exc:
        return AddressProbe(host, address, True, True, problem=f"TLS handshake failed: {exc}")
    except (smtplib.SMTPException, OSError) as exc:
        return AddressProbe(host, address, problem=f"cannot talk SMTP: {exc}")
    if not offered:
        _close(smtp)
        return AddressProbe(host, address, True, problem="STARTTLS is not offered")
    tls = smtp.sock
    assert isinstance(tls, ssl.SSLSocket)
    der = tls.getpeercert(binary_form=True) or b""
    protocol, cipher = tls.version() or "", (tls.cipher() or ("",))[0]
    _close(smtp)
    names = certificate_names(der) if der else ()
    trusted, problem = _chain_trusted(address, port, helo, timeout, ca_file)
    hostname_ok = matches_hostname(names, host)
    nexthop_ok = matches_nexthop(names, partner)
    if trusted and not hostname_ok:
        problem = f"the certificate names {', '.join(names) or 'nothing'}, not {host}"
    return AddressProbe(
        host,
        address,
        True,
        True,
        True,
        protocol,
        cipher,
        trusted,
        names,
        hostname_ok,
        nexthop_ok,
        problem,
    )


def _chain_trusted(
    address: str, port: int, helo: str, timeout: float, ca_file: Path | None
) -> tuple[bool, str]:
    try:
        _, smtp = _starttls(address, port, helo, timeout, _verifying_context(ca_file))
    except ssl.SSLCertVerificationError as exc:
        return False, f"untrusted certificate: {exc.verify_message}"
    except (ssl.SSLError, smtplib.SMTPException, OSError) as exc:
        return False, f"verification handshake failed: {exc}"
    _close(smtp)
    return True, ""


def probe_partner(
    partner: str,
    *,
    nameserver: str | None = None,
    dns_timeout: float = 3.0,
    port: int = 25,
    helo: str | None = None,
    timeout: float = 10.0,
    ca_file: Path | None = None,
) -> PartnerProbe:
    """Probe every address of every mail host of *partner*, in preference order."""
    result = PartnerProbe(partner)
    try:
        result.hosts = mail_hosts(partner, nameserver=nameserver, timeout=dns_timeout)
    except MxLookupFailed as exc:
        result.error = str(exc)
        return result
    if result.hosts.null_mx:
        result.error = f"{partner} has a null MX: it accepts no mail"
        return result
    name = helo or socket.getfqdn()
    for host in result.hosts.hosts:
        if not host.addresses:
            result.addresses.append(AddressProbe(host.name, "", problem=host.problem))
        for address in host.addresses[:MAX_ADDRESSES]:
            result.addresses.append(
                probe_address(
                    partner,
                    host.name,
                    address,
                    port=port,
                    helo=name,
                    timeout=timeout,
                    ca_file=ca_file,
                )
            )
    return result
