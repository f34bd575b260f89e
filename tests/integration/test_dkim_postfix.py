"""DKIM signing by postwarden-milter in a real Postfix, checked by dkimpy against real DNS.

Keys are made with ``postwarden dkim create``, published in a dnsmasq on loopback and
activated with ``postwarden dkim verify``; mail leaves through Postfix to an smtp-sink, and
dkimpy verifies what arrived with the keys it looks up in that same DNS server.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.harness import PostfixInstance, ServiceUser, SinkMessage, SmtpSink, send
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire
from tests.integration.dns import DnsServer, running_dns_server

pytestmark = pytest.mark.postfix

ZONES = ("hosted.test", "signed.test", "unsigned.test")
HOSTED = {"hosted.test": ("alice", "bob"), "signed.test": ("sam",), "unsigned.test": ("uma",)}


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with running_dns_server(ZONES) as server:
        yield server


@pytest.fixture
def installation(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    for domain in ("signed.test", "unsigned.test"):
        inst.cli("domain", "add", domain)
    return inst


def publish_and_verify(
    inst: Installation, dns_server: DnsServer, domain: str, selector: str = "postwarden"
) -> None:
    created = inst.cli_json("dkim", "create", "--domain", domain, "--selector", selector)
    dns_server.set_txt(created["host"], created["txt_strings"])
    verify_and_wait(inst, dns_server, domain, selector)


def verify_and_wait(inst: Installation, dns_server: DnsServer, domain: str, selector: str) -> None:
    """``dkim verify``, then wait until the running milter (if any) says it signs with it."""
    milters = [d for d in inst.running if isinstance(d, MilterDaemon)]
    marks = [(milter, milter.log_mark()) for milter in milters]
    inst.cli(
        "dkim",
        "verify",
        "--domain",
        domain,
        "--selector",
        selector,
        "--nameserver",
        dns_server.address,
    )
    for milter, mark in marks:
        milter.wait_for_log(rf"DKIM keys in use: .*\bd={domain} s={selector}\b", since=mark)


@pytest.fixture
def outbound(
    postfix_factory: Callable[..., PostfixInstance], installation: Installation, smtp_sink: SmtpSink
) -> Iterator[PostfixInstance]:
    policyd = Policyd(installation)
    milter = MilterDaemon(installation, policyd)
    policyd.start()
    milter.start()
    try:
        instance = postfix_factory(hosted=HOSTED, routes={"ext.example": smtp_sink.nexthop})
        wire(instance, policyd, milter)
        yield instance
    finally:
        milter.stop()
        policyd.stop()


def submit(postfix: PostfixInstance, sender: str, recipient: str = "x@ext.example") -> None:
    result = send(
        postfix.submission_port,
        sender,
        [recipient],
        client_ip="192.0.2.1",
        sasl_user="alice",
        headers={"Subject": "signed?", "From": sender},
    )
    assert result.queue_id, result


def verify(message: SinkMessage, dns_server: DnsServer) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode().rstrip("."), dns.rdatatype.TXT)
        answer = dns.query.udp(query, "127.0.0.1", port=dns_server.port, timeout=3)
        return b"".join(b"".join(r.strings) for rrset in answer.answer for r in rrset)

    return bool(dkim.verify(message.raw, dnsfunc=dnsfunc))


def signature_tags(message: SinkMessage) -> dict[str, str]:
    value = message.message["DKIM-Signature"]
    assert value is not None, "not signed"
    return dict(part.strip().split("=", 1) for part in "".join(value.split()).split(";") if part)


def wait_new(sink: SmtpSink, count: int) -> SinkMessage:
    return sink.wait_for(count)[-1]


def test_signing_starts_after_verification(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> None:
    installation.cli("dkim", "create", "--domain", "signed.test")
    submit(outbound, "sam@signed.test")
    assert wait_new(smtp_sink, 1).message["DKIM-Signature"] is None  # created, not verified
    publish_and_verify(installation, dns_server, "signed.test", "second")
    submit(outbound, "sam@signed.test")
    message = wait_new(smtp_sink, 2)
    tags = signature_tags(message)
    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (
        "signed.test",
        "second",
        "rsa-sha256",
        "relaxed/relaxed",
    )
    assert tags["h"].split(":").count("from") == 2  # From oversigned
    assert verify(message, dns_server)


def test_primary_key_signs_for_a_hosted_domain_without_its_own(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> None:
    publish_and_verify(installation, dns_server, "hosted.test")
    submit(outbound, "uma@unsigned.test")
    message = wait_new(smtp_sink, 1)
    assert signature_tags(message)["d"] == "hosted.test"
    assert verify(message, dns_server)
    submit(outbound, "someone@foreign.example")  # a From domain we do not host
    assert wait_new(smtp_sink, 2).message["DKIM-Signature"] is None


def test_inbound_external_mail_is_not_signed(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
) -> None:
    publish_and_verify(installation, dns_server, "hosted.test")
    result = send(
        outbound.mx_port, "alice@hosted.test", ["bob@hosted.test"], client_ip="198.51.100.9"
    )  # a forged hosted sender from outside
    assert result.queue_id
    (delivered,) = outbound.wait_for_mailbox("bob@hosted.test")
    assert delivered.message["DKIM-Signature"] is None


def test_locally_submitted_mail_is_signed(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> None:
    publish_and_verify(installation, dns_server, "hosted.test")
    message = b"From: alice@hosted.test\nTo: x@ext.example\nSubject: local\n\nhello\n"
    subprocess.run(
        ["sendmail", "-C", str(outbound.config_dir), "-f", "alice@hosted.test", "x@ext.example"],
        input=message,
        check=True,
        timeout=30,
    )
    delivered = wait_new(smtp_sink, 1)
    assert signature_tags(delivered)["d"] == "hosted.test"
    assert verify(delivered, dns_server)


def test_rotation_keeps_the_old_key_until_the_new_one_verifies(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> None:
    publish_and_verify(installation, dns_server, "hosted.test", "old")
    created = installation.cli_json(
        "dkim", "create", "--domain", "hosted.test", "--selector", "new", "--algorithm", "ed25519"
    )  # pending: signing goes on with the old key
    submit(outbound, "alice@hosted.test")
    assert signature_tags(wait_new(smtp_sink, 1))["s"] == "old"
    dns_server.set_txt(created["host"], created["txt_strings"])
    verify_and_wait(installation, dns_server, "hosted.test", "new")
    submit(outbound, "alice@hosted.test")
    message = wait_new(smtp_sink, 2)
    assert (signature_tags(message)["s"], signature_tags(message)["a"]) == ("new", "ed25519-sha256")
    assert verify(message, dns_server)


@pytest.mark.parametrize(
    "display",
    [
        "=?utf-8?q?M=C3=BCller=2C_Hans?=",  # decodes to a comma: still one address
        "=?utf-8?b?Q?=",  # a malformed encoded word: read as text, never a tempfail
    ],
)
def test_an_encoded_display_name_is_signed(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
    display: str,
) -> None:
    publish_and_verify(installation, dns_server, "hosted.test")
    result = send(
        outbound.submission_port,
        "alice@hosted.test",
        ["x@ext.example"],
        client_ip="192.0.2.1",
        sasl_user="alice",
        headers={"Subject": "signed?", "From": f"{display} <alice@hosted.test>"},
    )
    assert result.queue_id, result
    message = wait_new(smtp_sink, 1)
    assert signature_tags(message)["d"] == "hosted.test"
    assert verify(message, dns_server)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_large_body_is_signed_without_being_buffered(
    postfix_factory: Callable[..., PostfixInstance],
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> None:
    """Issue 9: a trusted client's 52 MB body made the milter 50 MB larger; now it streams."""
    publish_and_verify(installation, dns_server, "hosted.test")
    milter = MilterDaemon(installation)
    milter.start()
    try:
        instance = postfix_factory(
            hosted=HOSTED,
            routes={"ext.example": smtp_sink.nexthop},
            main_cf={"message_size_limit": "40000000"},
        )
        wire(instance, None, milter)
        assert milter.process is not None
        submit(instance, "alice@hosted.test")  # warm up: threads, keys, caches
        before = _peak_rss_mb(milter.process.pid)
        body = b"".join(b"line %06d of a large message  \r\n" % i for i in range(600_000))
        message = b"From: alice@hosted.test\r\nTo: x@ext.example\r\nSubject: big\r\n\r\n" + body
        result = send(
            instance.submission_port, "alice@hosted.test", ["x@ext.example"],
            client_ip="192.0.2.1", sasl_user="alice", message=message, timeout=120,
        )  # fmt: skip
        assert result.queue_id, result
        delivered = smtp_sink.wait_for(2, timeout=60)[-1]
        assert delivered.raw.rstrip().endswith(b"line 599999 of a large message")
        assert verify(delivered, dns_server)
        assert _peak_rss_mb(milter.process.pid) - before < 8  # the body is 20 MB
    finally:
        milter.stop()


def _submit_raw(postfix: PostfixInstance, body: bytes, *, eight_bit: bool) -> None:
    """Signed mail from alice@hosted.test to x@legacy.example, body as given."""
    encoding = b"8bit" if eight_bit else b"7bit"
    message = (
        b"From: alice@hosted.test\r\nTo: x@legacy.example\r\nSubject: long or 8-bit\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body
    )
    result = send(
        postfix.submission_port,
        "alice@hosted.test",
        ["x@legacy.example"],
        client_ip="192.0.2.1",
        sasl_user="alice",
        message=message,
        mail_options=("BODY=8BITMIME",) if eight_bit else (),
    )
    assert result.queue_id, result


def test_signatures_survive_a_next_hop_without_8bitmime_and_long_lines(
    outbound: PostfixInstance,
    installation: Installation,
    dns_server: DnsServer,
    smtp_sink_factory: Callable[..., SmtpSink],
) -> None:
    """postfix-config's disable_mime_output_conversion keeps 8-bit mail as signed; with
    --long-lines keep, lines over 998 bytes too. Postfix's defaults break both signatures."""
    legacy = smtp_sink_factory(extra_args=["-8"])  # announces no 8BITMIME
    outbound.set_route("legacy.example", legacy.nexthop)
    publish_and_verify(installation, dns_server, "hosted.test")
    assert outbound.postconf_get("disable_mime_output_conversion") == "yes"  # postfix-config's
    eight_bit = "Grüße aus Köln, 8-bit all the way\r\n".encode()
    _submit_raw(outbound, eight_bit, eight_bit=True)
    kept = legacy.wait_for(1)[-1]
    assert eight_bit.rstrip() in kept.raw and b"quoted-printable" not in kept.raw.lower()
    assert verify(kept, dns_server)
    outbound.postconf({"disable_mime_output_conversion": "no"})  # Postfix's default
    _submit_raw(outbound, eight_bit, eight_bit=True)
    converted = legacy.wait_for(2)[-1]
    assert b"quoted-printable" in converted.raw.lower() and not verify(converted, dns_server)

    long_line = b"x" * 1500 + b"\r\n"
    _submit_raw(outbound, long_line, eight_bit=False)
    broken = legacy.wait_for(3)[-1]
    assert not verify(broken, dns_server)  # broken in two after signing
    (milter,) = (d for d in installation.running if isinstance(d, MilterDaemon))
    installation.cli(
        *("postfix-config", "--apply", "--postfix-config-dir", str(outbound.config_dir)),
        *("--components", "milter", "--milter", milter.address, "--long-lines", "keep"),
        *("--service", f"127.0.0.1:{outbound.mx_port}/inet"),
        *("--submission-service", f"127.0.0.1:{outbound.submission_port}/inet"),
    )
    outbound.reload()
    assert outbound.postconf_get("smtp_line_length_limit") == "0"
    _submit_raw(outbound, long_line, eight_bit=False)
    whole = legacy.wait_for(4)[-1]
    assert long_line.rstrip() in whole.raw and verify(whole, dns_server)
