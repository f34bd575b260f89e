"""``postwarden tls test PARTNER`` against STARTTLS servers on loopback.

Each partner domain of the dnsmasq zone ``partner.test`` has MX hosts on their own loopback
addresses (127.0.0.21 and up), all on one port: an aiosmtpd STARTTLS server with a
certificate from the test CA (good), a self-signed one, one for the wrong name, an expired
one, and a server without STARTTLS. The verdict per level must be what Postfix's smtp client
would do with that policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.harness import ServiceUser, TestCA, TlsSink, free_port
from tests.integration.daemons import Installation
from tests.integration.dns import DnsServer, running_dns_server

pytestmark = pytest.mark.postfix

HOSTS = {
    "good": "127.0.0.21",
    "self": "127.0.0.22",
    "wrong": "127.0.0.23",
    "expired": "127.0.0.24",
    "plain": "127.0.0.25",
}


class _Plain:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def partners(test_ca: TestCA) -> Iterator[tuple[DnsServer, int]]:
    port = free_port(HOSTS["good"])
    certs = {
        "good": test_ca.issue("good", ("mx.good.partner.test",)),
        "self": test_ca.self_signed("self", ("mx.self.partner.test",)),
        "wrong": test_ca.issue("wrong", ("somewhere.else.test",)),
        "expired": test_ca.issue("expired", ("mx.expired.partner.test",), expired=True),
    }
    servers: list[Any] = [TlsSink(cert, host=HOSTS[k], port=port) for k, cert in certs.items()]
    plain = Controller(_Plain(), hostname=HOSTS["plain"], port=port)
    with running_dns_server(("partner.test",)) as dns:
        mx = {f"{k}.partner.test": ((10, f"mx.{k}.partner.test"),) for k in HOSTS}
        # Two hosts: the preferred one is self-signed, the second is good.
        mx["mixed.partner.test"] = ((10, "mx.self.partner.test"), (20, "mx.good.partner.test"))
        addresses = {f"mx.{k}.partner.test": (a,) for k, a in HOSTS.items()}
        dns.set_hosts(mx=mx, addresses=addresses)
        for server in servers:
            server.start()
        plain.start()
        try:
            yield dns, port
        finally:
            plain.stop()
            for server in servers:
                server.stop()


@pytest.fixture
def inst(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    inst.cli(
        "tls",
        "add",
        "--title",
        "partners",
        "--target",
        "outgoing",
        "--trusted-ca",
        "good.partner.test",
    )
    return inst


def _test(inst: Installation, partners: tuple[DnsServer, int], test_ca: TestCA, partner: str):
    dns, port = partners
    done = inst.cli(
        "tls",
        "test",
        partner,
        "--nameserver",
        dns.address,
        "--port",
        str(port),
        "--ca-file",
        str(test_ca.ca_file),
        "--helo",
        "probe.hosted.test",
        "--json",
        "--timeout",
        "5",
        check=False,
    )
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _delivers(data: dict[str, Any]) -> dict[str, bool]:
    return {level: v["delivers"] for level, v in data["levels"].items()}


@pytest.mark.parametrize(
    ("partner", "expected", "problem"),
    [
        ("good", {"may": True, "encrypt": True, "verify": True, "secure": True}, None),
        ("self", {"may": True, "encrypt": True, "verify": False, "secure": False}, "self-signed"),
        ("wrong", {"may": True, "encrypt": True, "verify": False, "secure": False}, "names"),
        ("expired", {"may": True, "encrypt": True, "verify": False, "secure": False}, "expired"),
        ("plain", {"may": True, "encrypt": False, "verify": False, "secure": False}, "STARTTLS"),
    ],
)
def test_each_certificate_case(
    inst: Installation,
    partners: tuple[DnsServer, int],
    test_ca: TestCA,
    partner: str,
    expected: dict[str, bool],
    problem: str | None,
) -> None:
    status, data = _test(inst, partners, test_ca, f"{partner}.partner.test")
    assert _delivers(data) == expected, data
    assert status == (0 if expected["encrypt"] else 1)
    (host,) = data["hosts"]
    assert host["host"] == f"mx.{partner}.partner.test"
    if problem is None:
        assert host["problem"] is None and host["protocol"].startswith("TLS")
    else:
        assert problem in host["problem"], host
    if partner == "good":
        assert data["policy"] == "verify match=hostname"


def test_a_failing_preferred_host_delays_but_delivers(
    inst: Installation, partners: tuple[DnsServer, int], test_ca: TestCA
) -> None:
    status, data = _test(inst, partners, test_ca, "mixed.partner.test")
    assert status == 0
    verify = data["levels"]["verify"]
    assert (verify["delivers"], verify["via"], verify["skipped"]) == (
        True,
        "mx.good.partner.test",
        ["mx.self.partner.test"],
    )
    assert data["levels"]["encrypt"]["via"] == "mx.self.partner.test"


def test_failures_are_named(
    inst: Installation, partners: tuple[DnsServer, int], test_ca: TestCA
) -> None:
    status, data = _test(inst, partners, test_ca, "nothing.partner.test")
    assert status == 1 and "has no address" in json.dumps(data)
    bad = inst.cli("tls", "test", "not a domain", check=False)
    assert bad.returncode == 1 and "is not a valid domain name" in bad.stderr
    bad = inst.cli("tls", "test", "good.partner.test", "--ca-file", "/nonexistent", check=False)
    assert bad.returncode == 1 and "/nonexistent is not a file" in bad.stderr
