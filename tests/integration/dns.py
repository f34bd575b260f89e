"""A real DNS server on loopback for DKIM checks: dnsmasq, authoritative for test zones.

Description:
    :class:`DnsServer` runs ``dnsmasq --no-daemon`` on 127.0.0.1 and a free port, as the
    authoritative server of the given zones (``auth-zone``, with ``ns1.ZONE`` -> 127.0.0.1
    as its NS), with the TXT records the test sets. Names in the zones that have no record
    get an authoritative NXDOMAIN; names outside them get REFUSED. dnsmasq reads TXT records
    only at start, so :meth:`DnsServer.set_txt` and :meth:`DnsServer.remove` restart it on
    the same port. :meth:`DnsServer.resolver` gives a dnspython resolver pointed at it, to
    exercise the lookup of the authoritative servers.

    :func:`running_dns_server` is a context manager for fixtures: a started server, stopped
    whatever happens.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import dns.message
import dns.rcode
import dns.resolver

from tests.harness import free_port, stop_process, wait_for_port

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


class DnsServer:
    """dnsmasq on 127.0.0.1:port, authoritative for *zones*."""

    def __init__(self, base: Path, zones: Sequence[str] = ("hosted.test",)) -> None:
        self.base = base
        self.zones = tuple(zones)
        self.port = free_port()
        self.records: dict[str, tuple[str, ...]] = {}
        self.mx: dict[str, tuple[tuple[int, str], ...]] = {}
        self.addresses: dict[str, tuple[str, ...]] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = base / "dnsmasq.log"

    @property
    def address(self) -> str:
        """What ``--nameserver`` takes."""
        return f"127.0.0.1:{self.port}"

    def resolver(self) -> dns.resolver.Resolver:
        """A resolver that asks this server (as a recursive one would be asked)."""
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.lifetime = 3.0
        return resolver

    def set_txt(self, name: str, strings: Sequence[str]) -> None:
        """Publish a TXT record of *strings* at *name* (replacing any), then restart."""
        self.records[name] = tuple(strings)
        self.restart()

    def remove(self, name: str) -> None:
        self.records.pop(name, None)
        self.restart()

    def set_hosts(
        self,
        *,
        mx: dict[str, tuple[tuple[int, str], ...]] | None = None,
        addresses: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        """Publish MX records (domain -> (preference, host)...) and A/AAAA records, then
        restart once."""
        self.mx.update(mx or {})
        self.addresses.update(addresses or {})
        self.restart()

    def _config(self) -> str:
        lines = [
            f"port={self.port}",
            "listen-address=127.0.0.1",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "log-queries",
            f"log-facility={self.log_path}",
        ]
        # dnsmasq takes one auth-server: its name is the NS of every zone it serves.
        lines.append(f"auth-server=ns1.{self.zones[0]},127.0.0.1")
        for zone in self.zones:
            lines += [f"auth-zone={zone}", f"host-record=ns1.{zone},127.0.0.1"]
        for domain, exchanges in self.mx.items():
            lines += [f"mx-host={domain},{host},{pref}" for pref, host in exchanges]
        for name, addresses in self.addresses.items():
            lines.append(f"host-record={name},{','.join(addresses)}")
        for name, strings in self.records.items():
            for text in strings:
                if len(text.encode()) > 255:
                    raise ValueError(f"cannot serve TXT string {text!r}: longer than 255 bytes")
            quoted = ",".join(f'"{_escaped(s)}"' for s in strings)
            lines.append(f"txt-record={name},{quoted}")
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        config = self.base / "dnsmasq.conf"
        config.write_text(self._config())
        self.process = subprocess.Popen(
            [DNSMASQ, "--no-daemon", f"--conf-file={config}", "--pid-file"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, timeout=10, proc=self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _escaped(text: str) -> str:
    """A TXT string for dnsmasq's quoted syntax (backslash escapes quotes and backslashes)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


@contextlib.contextmanager
def failing_dns_server(rcode: dns.rcode.Rcode = dns.rcode.SERVFAIL) -> Iterator[str]:
    """A DNS server on loopback that answers every query with *rcode*; yields HOST:PORT.

    What a broken upstream or a DNSSEC failure looks like to a client (dnsmasq itself
    cannot be made to answer SERVFAIL on purpose).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", free_port()))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(rcode)
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, name="failing-dns", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@contextlib.contextmanager
def running_dns_server(zones: Sequence[str] = ("hosted.test",)) -> Iterator[DnsServer]:
    """A started :class:`DnsServer`, stopped (and its files removed) on exit."""
    base = Path(tempfile.mkdtemp(prefix="pw-dns-", dir="/tmp"))
    server = DnsServer(base, zones)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
