"""A domain's MX hosts and their addresses, as an SMTP client finds them (RFC 5321 5.1).

Description:
    :func:`mail_hosts` returns the MX hosts of a domain in preference order (equal
    preferences in the order DNS gave them), each with its IPv4 and IPv6 addresses. A domain
    without MX records is its own mail host (the "implicit MX" of its A/AAAA records); a
    null MX (RFC 7505: one MX ``0 .``) means the domain accepts no mail.

    Where the answers come from:

    - ``nameserver="HOST[:PORT]"``: that server, recursion desired, for every name;
    - ``authoritative=True``: the MX records from the domain's authoritative servers (as
      ``dkim verify`` asks for its record, so a cached answer cannot mislead the
      administrator about their *own* domain); the hosts' addresses from the system's
      resolver, as Postfix's smtp client would find them;
    - otherwise the system's resolver, which is what Postfix uses (``tls test``).

Errors:
    :class:`MxLookupFailed` for DNS trouble (timeouts, SERVFAIL, no server), naming the name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from postwarden.dkim.dnscheck import DnsFailure, authoritative_servers, parse_nameserver
from postwarden.errors import PostwardenError

MAX_HOSTS = 10


class MxLookupFailed(PostwardenError):
    """The MX lookup failed."""


@dataclass(frozen=True)
class MailHost:
    name: str  # without the trailing dot, lower case
    preference: int
    addresses: tuple[str, ...] = ()
    implicit: bool = False  # no MX record: the domain itself
    problem: str = ""  # why it has no address, when it has none


@dataclass(frozen=True)
class MailHosts:
    domain: str
    hosts: tuple[MailHost, ...] = ()
    null_mx: bool = False
    source: str = ""  # where the MX records came from
    notes: list[str] = field(default_factory=list)


def _resolver(nameserver: str | None, timeout: float) -> dns.resolver.Resolver:
    if nameserver is None:
        resolver = dns.resolver.Resolver()
    else:
        host, port = parse_nameserver(nameserver)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout * 2
    resolver.timeout = timeout
    return resolver


def _ask(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[object]:
    """The records of *name*; [] for NXDOMAIN or no data. :raises MxLookupFailed:"""
    try:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.exception.DNSException as exc:
        raise MxLookupFailed(f"{rdtype} of {name}: {_why(exc)}") from None
    return list(answer.rrset or [])


def _ask_authoritative(domain: str, timeout: float) -> tuple[list[object], str]:
    try:
        servers = authoritative_servers(domain, None, timeout)
    except DnsFailure as exc:
        raise MxLookupFailed(str(exc)) from None
    query = dns.message.make_query(dns.name.from_text(domain), dns.rdatatype.MX)
    query.flags &= ~dns.flags.RD
    errors = []
    for server in servers:
        try:
            response = dns.query.udp(query, server, timeout=timeout)
            if response.flags & dns.flags.TC:
                response = dns.query.tcp(query, server, timeout=timeout)
        except (dns.exception.DNSException, OSError) as exc:
            errors.append(f"{server}: {_why(exc)}")
            continue
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not (
            response.flags & dns.flags.AA
        ):
            errors.append(f"{server}: {dns.rcode.to_text(response.rcode())}, not authoritative")
            continue
        records = [
            r
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.MX and rrset.name == query.question[0].name
            for r in rrset
        ]
        return records, server
    raise MxLookupFailed(f"no name server answered for MX of {domain}: {'; '.join(errors)}")


def mail_hosts(
    domain: str,
    *,
    nameserver: str | None = None,
    authoritative: bool = False,
    timeout: float = 3.0,
) -> MailHosts:
    """The mail hosts of *domain* with their addresses (see the module docstring)."""
    resolver = _resolver(nameserver, timeout)
    if authoritative and nameserver is None:
        records, source = _ask_authoritative(domain, timeout)
    else:
        records, source = _ask(resolver, domain, "MX"), nameserver or "system resolver"
    exchanges = sorted(
        ((int(r.preference), str(r.exchange).rstrip(".").lower()) for r in records),  # type: ignore[attr-defined]
        key=lambda item: item[0],
    )
    if len(exchanges) == 1 and exchanges[0][1] == "":
        return MailHosts(domain, (), null_mx=True, source=source)
    implicit = not exchanges
    targets = [(0, domain)] if implicit else exchanges[:MAX_HOSTS]
    hosts = []
    for preference, name in targets:
        addresses: list[str] = []
        problem = ""
        try:
            for rdtype in ("A", "AAAA"):
                addresses += [str(r.address) for r in _ask(resolver, name, rdtype)]  # type: ignore[attr-defined]
        except MxLookupFailed as exc:
            problem = str(exc)
        if not addresses and not problem:
            problem = f"{name} has no address"
        hosts.append(MailHost(name, preference, tuple(addresses), implicit, problem))
    return MailHosts(domain, tuple(hosts), source=source)


def _why(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "timed out"
    return str(exc) or type(exc).__name__
