"""Check that a DKIM key is published in DNS, asking the domain's own name servers.

Description:
    :func:`check_record` looks up the TXT record ``SELECTOR._domainkey.DOMAIN`` and judges
    it against our key: :attr:`Outcome.OK`, :attr:`~Outcome.MISSING` (no such name, no TXT
    record, or no DKIM key record among them), :attr:`~Outcome.DIFFERENT` (another key is
    published), :attr:`~Outcome.REVOKED` (``p=`` empty), :attr:`~Outcome.MALFORMED` (a DKIM
    record receivers cannot read, such as one published with literal quote characters) or
    :attr:`~Outcome.DNS_ERROR` (no resolver, a timeout, SERVFAIL or REFUSED, a domain that
    does not exist), each said in words. Only a missing or different record may be a matter
    of time (:attr:`Outcome.may_propagate`): DNS changes take up to 72 hours to reach every
    resolver, but waiting mends neither a broken record nor a failing server.

    By default it asks the zone's authoritative servers directly: the zone is found with
    ``dns.resolver.zone_for_name``, then its NS records and their addresses (IPv4 first),
    and each server is asked in turn, over UDP with TCP on truncation, without recursion,
    until one gives an authoritative answer. A recursive resolver's cached "not found" from
    before the record was added therefore cannot mislead. ``nameserver="HOST[:PORT]"``
    (``[V6ADDR]:PORT`` for IPv6) asks that one server instead, with recursion desired; tests
    use it with a DNS server on loopback. CNAMEs are followed (a few steps, as published
    keys are sometimes delegated to a mail provider that way).

Errors:
    :func:`check_record` never raises for DNS trouble: it becomes a :attr:`Outcome.DNS_ERROR`
    result with a detail. :func:`lookup_txt` (the same lookup, for a verifier that wants
    the raw record) raises :class:`DnsFailure`. :class:`BadNameserver` when ``nameserver``
    cannot be understood.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from postwarden.dkim.keys import PrivateKey
from postwarden.dkim.record import BadRecord, KeyRecord, host_name, matches, parse_record
from postwarden.errors import PostwardenError

DEFAULT_TIMEOUT = 3.0  # seconds per server and query
MAX_SERVERS = 6
MAX_CNAMES = 5


class BadNameserver(PostwardenError):
    """Not a name server address."""


class DnsFailure(PostwardenError):
    """The lookup failed."""


class Outcome(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    DIFFERENT = "different"
    REVOKED = "revoked"
    DNS_ERROR = "dns-error"
    MALFORMED = "malformed"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @property
    def may_propagate(self) -> bool:
        """Whether the record may simply not have reached every resolver yet."""
        return self in (Outcome.MISSING, Outcome.DIFFERENT)


_DESCRIPTIONS = {
    Outcome.OK: "published",
    Outcome.MISSING: "missing",
    Outcome.DIFFERENT: "different key",
    Outcome.REVOKED: "revoked",
    Outcome.DNS_ERROR: "DNS error",
    Outcome.MALFORMED: "malformed record",
}

_RCODE_WORDS = {
    dns.rcode.SERVFAIL: "SERVFAIL (the server failed to answer: a broken delegation or DNSSEC?)",
    dns.rcode.REFUSED: "REFUSED (the server does not answer for this name, or not to us)",
    dns.rcode.FORMERR: "FORMERR (the server did not understand the query)",
    dns.rcode.NOTIMP: "NOTIMP (the server does not do TXT queries)",
}


@dataclass(frozen=True)
class CheckResult:
    """What the check found: the outcome, why, and where it asked."""

    outcome: Outcome
    detail: str
    name: str
    server: str = ""
    records: tuple[str, ...] = ()  # the TXT values found (strings joined)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@dataclass(frozen=True)
class TxtAnswer:
    records: list[tuple[bytes, ...]]
    server: str
    nxdomain: bool = False


def check_record(
    domain: str,
    selector: str,
    key: PrivateKey,
    *,
    nameserver: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    resolver: dns.resolver.Resolver | None = None,
    port: int = 53,
) -> CheckResult:
    """Look up and judge the record of *selector* of *domain* against *key*.

    *resolver* (default: the system's) finds the authoritative servers; *port* is the port
    they are asked on (53; tests change it). Both are ignored with *nameserver*.
    """
    name = host_name(selector, domain)
    try:
        answer = lookup_txt(
            name, nameserver=nameserver, timeout=timeout, resolver=resolver, port=port
        )
    except DnsFailure as exc:
        return CheckResult(Outcome.DNS_ERROR, str(exc), name)
    outcome, detail = judge(answer.records, key, name, nxdomain=answer.nxdomain)
    values = tuple(b"".join(r).decode("ascii", "replace") for r in answer.records)
    return CheckResult(outcome, detail, name, answer.server, values)


def lookup_txt(
    name: str,
    *,
    nameserver: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    resolver: dns.resolver.Resolver | None = None,
    port: int = 53,
) -> TxtAnswer:
    """The TXT records at *name*, asked as :func:`check_record` asks.

    :raises DnsFailure: when no server gave a usable answer.
    """
    if nameserver is not None:
        host, ns_port = parse_nameserver(nameserver)
        return _lookup_recursive(host, ns_port, name, timeout)
    return _lookup_authoritative(name, resolver, port, timeout)


def judge(
    records: Sequence[Sequence[bytes | str]], key: PrivateKey, name: str, *, nxdomain: bool = False
) -> tuple[Outcome, str]:
    """The outcome for the TXT *records* (each a list of strings) found at *name*."""
    if nxdomain:
        return Outcome.MISSING, f"{name} does not exist (NXDOMAIN)"
    if not records:
        return Outcome.MISSING, f"{name} has no TXT record"
    parsed: list[KeyRecord] = []
    problems: list[str] = []
    broken: list[str] = []  # DKIM records receivers cannot read
    for strings in records:
        text = _joined(strings)
        if '"' in text:
            broken.append(_quoted(text, key))
            continue
        try:
            parsed.append(parse_record(strings))
        except BadRecord as exc:
            (broken if _looks_like_dkim(text) else problems).append(str(exc))
    if not parsed and broken:
        return Outcome.MALFORMED, f"{name} publishes a DKIM record receivers cannot read: " + (
            "; ".join(broken)
        )
    if not parsed:
        return Outcome.MISSING, f"no DKIM key record at {name} ({'; '.join(problems)})"
    if any(matches(r, key) for r in parsed):
        testing = any(r.testing for r in parsed if matches(r, key))
        note = " (flagged t=y, testing: receivers may ignore failures)" if testing else ""
        return Outcome.OK, f"{name} publishes this key{note}"
    if any(r.revoked for r in parsed):
        return Outcome.REVOKED, f"{name} has an empty p=: the key is revoked"
    kinds = ", ".join(sorted({f"k={r.key_type}" for r in parsed}))
    return Outcome.DIFFERENT, f"{name} publishes another key ({kinds})"


def _joined(strings: Sequence[bytes | str]) -> str:
    return "".join(s.decode("ascii", "replace") if isinstance(s, bytes) else s for s in strings)


def _looks_like_dkim(text: str) -> bool:
    """A TXT value meant as a DKIM key record (not, say, an SPF record at the same name)."""
    return "DKIM1" in text or bool(re.search(r"(^|;)\s*p\s*=", text))


def _quoted(text: str, key: PrivateKey) -> str:
    """What is wrong with a value that contains literal quote characters."""
    unquoted = re.sub(r'"\s*"', "", text).replace('"', "")
    try:
        ours = matches(parse_record(unquoted), key)
    except BadRecord:
        ours = False
    mine = "our key, but " if ours else ""
    return (
        f'the value holds {mine}literal quote characters ("), which receivers read as part of'
        " the record: enter the value without quotes (the DNS host adds its own), or each"
        " string separately"
    )


def parse_nameserver(text: str) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``V6ADDR`` or ``[V6ADDR]:PORT`` as (address, port)."""
    host, port = text.strip(), "53"
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise BadNameserver(f"{text!r} is not HOST[:PORT]")
        port = rest[1:] or port
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise BadNameserver(f"{text!r}: {port!r} is not a port number")
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        raise BadNameserver(f"{text!r}: cannot find the address of {host!r}") from None
    return str(found[0][4][0]), int(port)


def authoritative_servers(
    zone_of: str, resolver: dns.resolver.Resolver | None, timeout: float
) -> list[str]:
    """Addresses of the name servers of the zone holding *zone_of*, IPv4 first."""
    try:
        resolver = resolver or dns.resolver.get_default_resolver()
        zone = dns.resolver.zone_for_name(zone_of, resolver=resolver, lifetime=2 * timeout)
        targets = [r.target for r in resolver.resolve(zone, "NS", lifetime=timeout)]
    except dns.exception.DNSException as exc:
        raise DnsFailure(f"cannot find the name servers of {zone_of}: {_why(exc)}") from None
    addresses: list[str] = []
    for rdtype in ("A", "AAAA"):
        for target in sorted(targets):
            try:
                answer = resolver.resolve(target, rdtype, lifetime=timeout)
            except dns.exception.DNSException:
                continue
            addresses.extend(r.address for r in answer if r.address not in addresses)
    if not addresses:
        names = ", ".join(str(t) for t in targets)
        raise DnsFailure(f"no address found for the name servers of {zone} ({names})")
    return addresses[:MAX_SERVERS]


def _lookup_authoritative(
    name: str, resolver: dns.resolver.Resolver | None, port: int, timeout: float, depth: int = 0
) -> TxtAnswer:
    servers = authoritative_servers(name, resolver, timeout)
    answer, target = _lookup_at(servers, port, name, timeout, recursion=False)
    if target is None:
        return answer
    if depth >= MAX_CNAMES:
        raise DnsFailure(f"{name}: too many CNAMEs")
    return _lookup_authoritative(target, resolver, port, timeout, depth + 1)


def _lookup_recursive(server: str, port: int, name: str, timeout: float) -> TxtAnswer:
    for _ in range(MAX_CNAMES + 1):
        answer, target = _lookup_at([server], port, name, timeout, recursion=True)
        if target is None:
            return answer
        name = target
    raise DnsFailure(f"{name}: too many CNAMEs")


def _lookup_at(
    servers: list[str], port: int, name: str, timeout: float, *, recursion: bool
) -> tuple[TxtAnswer, str | None]:
    """TXT records of *name* from the first of *servers* that answers properly.

    Also returns the target of a CNAME that leads out of the answer (then to be looked up).
    """
    qname = dns.name.from_text(name)
    errors: list[str] = []
    for server in servers:
        where = f"{server}:{port}" if ":" not in server else f"[{server}]:{port}"
        try:
            response = _query(qname, server, port, timeout, recursion=recursion)
        except (dns.exception.DNSException, OSError) as exc:
            errors.append(f"{where}: {_why(exc)}")
            continue
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            errors.append(f"{where} answered {_rcode_words(rcode)}")
            continue
        if not recursion and not response.flags & dns.flags.AA:
            errors.append(f"{where}: not authoritative for {name}")
            continue
        if rcode == dns.rcode.NXDOMAIN:
            return TxtAnswer([], where, nxdomain=True), None
        records, target = _txt_in(response, qname)
        if target is not None and not records:
            return TxtAnswer([], where), str(target)
        return TxtAnswer(records, where), None
    raise DnsFailure(f"no name server answered for {name}: {'; '.join(errors) or 'none asked'}")


def _query(
    qname: dns.name.Name, server: str, port: int, timeout: float, *, recursion: bool
) -> dns.message.Message:
    query = dns.message.make_query(qname, dns.rdatatype.TXT)
    if not recursion:
        query.flags &= ~dns.flags.RD
    response = dns.query.udp(query, server, timeout=timeout, port=port)
    if response.flags & dns.flags.TC:
        response = dns.query.tcp(query, server, timeout=timeout, port=port)
    return response


def _txt_in(
    response: dns.message.Message, qname: dns.name.Name
) -> tuple[list[tuple[bytes, ...]], dns.name.Name | None]:
    """TXT records for *qname* in the answer, following CNAMEs inside it.

    Returns the records and, when a CNAME leads out of the answer, its final target.
    """
    name, target = qname, None
    for _ in range(MAX_CNAMES + 1):
        for rrset in response.answer:
            if rrset.name == name and rrset.rdtype == dns.rdatatype.TXT:
                return [tuple(r.strings) for r in rrset], None
        cname = next(
            (r for r in response.answer if r.name == name and r.rdtype == dns.rdatatype.CNAME),
            None,
        )
        if cname is None:
            return [], target
        name = target = cname[0].target
    return [], target


def _why(exc: BaseException) -> str:
    """A failed lookup in words, never dnspython's own text."""
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return (
            "no DNS resolver is configured (no nameserver in /etc/resolv.conf);"
            " name a server with --nameserver"
        )
    if isinstance(exc, dns.exception.Timeout):
        return "timed out (no answer in time)"
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return f"{', '.join(str(n) for n in exc.qnames())} does not exist (NXDOMAIN)"
    if isinstance(exc, dns.resolver.NoRootSOA):
        return "no DNS zone holds it: the domain does not exist in DNS (NXDOMAIN up to the root)"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "every name server failed (" + _server_errors(exc) + ")"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "the answer holds no record of the type asked for"
    if isinstance(exc, dns.exception.FormError | dns.message.ShortHeader | dns.message.Truncated):
        return "the answer was malformed"
    if isinstance(exc, ConnectionRefusedError):
        return "refused (nothing answers DNS there)"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


def _rcode_words(rcode: dns.rcode.Rcode) -> str:
    return _RCODE_WORDS.get(rcode, dns.rcode.to_text(rcode))


def _server_errors(exc: dns.resolver.NoNameservers) -> str:
    """Each server's failure from a NoNameservers, in words."""
    said = []
    for name, _tcp, port, error, response in exc.kwargs.get("errors", []):
        server = re.sub(r"^Do53:(.*)@\d+$", r"\1", str(name))  # dnspython's "Do53:ADDR@PORT"
        if response is not None and response.rcode() != dns.rcode.NOERROR:
            rcode = response.rcode()
            said.append(
                f"{server}:{port} answered {_RCODE_WORDS.get(rcode, dns.rcode.to_text(rcode))}"
            )
        elif error is not None:
            said.append(f"{server}:{port}: {_why(error)}")
    return "; ".join(said) or "no server could be asked"
