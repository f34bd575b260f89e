"""Routing through Postfix's own queue: the inbound matrix, outbound routing, the gateway.

Routes are smtp-sinks on loopback; what each received is read from its dump (the envelope
as sent: RCPT and ORCPT), what stayed local from the Maildirs. Rules are changed with the
command line while Postfix runs, and apply to the next message without a Postfix reload.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import PostfixInstance, ServiceUser, SinkMessage, SmtpSink, send
from tests.harness.wait import wait_until
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire

pytestmark = pytest.mark.postfix

HOSTED = {"hosted.test": ("alice", "bob"), "other.test": ("carol",)}


@pytest.fixture
def installation(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    inst.cli("domain", "add", "other.test")
    inst.write(
        inst.settings.read_text().replace(
            "primary_domain: hosted.test\n",
            "primary_domain: hosted.test\ntrusted_networks: [127.0.0.1/32]\n",
        )
    )
    return inst


@pytest.fixture
def sinks(smtp_sink_factory: Callable[..., SmtpSink]) -> dict[str, SmtpSink]:
    return {
        "archive": smtp_sink_factory(),
        "dlp": smtp_sink_factory(),
        "internet": smtp_sink_factory(),
    }


@pytest.fixture
def mx(
    postfix_factory: Callable[..., PostfixInstance],
    installation: Installation,
    sinks: dict[str, SmtpSink],
) -> Iterator[PostfixInstance]:
    policyd = Policyd(installation)
    milter = MilterDaemon(installation, policyd)
    policyd.start()
    milter.start()
    try:
        instance = postfix_factory(hosted=HOSTED, routes={"ext.example": sinks["internet"].nexthop})
        wire(instance, policyd, milter)
        for name in ("archive", "dlp"):
            installation.cli(
                "route", "add", name, "--host", "[127.0.0.1]", "--port", str(sinks[name].port)
            )
        installation.in_force()
        yield instance
    finally:
        milter.stop()
        policyd.stop()


def rule(inst: Installation, *argv: str) -> None:
    inst.cli("routing", *argv)
    inst.in_force()


def inbound(mx: PostfixInstance, *rcpts: str, sender: str = "a@ext.example") -> dict[str, int]:
    result = send(mx.mx_port, sender, list(rcpts), client_ip="198.51.100.9")
    return {rcpt: reply.code for rcpt, reply in result.rcpts.items()}


def internal(mx: PostfixInstance, *rcpts: str, sender: str = "alice@hosted.test") -> dict[str, int]:
    result = send(mx.submission_port, sender, list(rcpts), client_ip="192.0.2.1", sasl_user="alice")
    return {rcpt: reply.code for rcpt, reply in result.rcpts.items()}


def envelope(message: SinkMessage) -> list[tuple[str, str]]:
    """(RCPT, ORCPT) of each recipient of one delivery."""
    return [(r.address, r.args.get("ORCPT", "")) for r in message.rcpts]


def received_rcpts(sink: SmtpSink, count: int, timeout: float = 10.0) -> list[SinkMessage]:
    """The deliveries once *count* recipients arrived (qmgr may split them over several)."""
    with contextlib.suppress(TimeoutError):  # the caller's assertion says what was missing
        wait_until(lambda: sum(len(m.rcpts) for m in sink.messages()) >= count, "", timeout)
    return sink.messages()


def assert_untagged(message: SinkMessage) -> None:
    assert b"pwroute" not in message.raw.lower()
    assert "pwroute" not in str(envelope(message)).lower()


def test_change_route(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    rule(installation, "inbound", "add", "arch", "--route", "archive", "--condition", "all")
    assert inbound(mx, "bob@hosted.test", "nobody@hosted.test") == {
        "bob@hosted.test": 250,
        "nobody@hosted.test": 550,
    }  # unknown: rejected as usual
    (message,) = sinks["archive"].wait_for(1)
    assert envelope(message) == [("bob@hosted.test", "rfc822;bob@hosted.test")]
    assert_untagged(message)
    mx.wait_until_queue_empty()
    assert mx.mailbox("bob@hosted.test") == []  # not local


def test_change_route_with_unknown_recipients(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    rule(
        installation,
        "inbound",
        "add",
        "arch",
        "--route",
        "archive",
        "--condition",
        "all",
        "--unknown-recipients",
    )
    assert inbound(mx, "bob@hosted.test", "nobody@hosted.test") == {
        "bob@hosted.test": 250,
        "nobody@hosted.test": 250,
    }
    addresses = sorted(a for m in received_rcpts(sinks["archive"], 2) for a, _ in envelope(m))
    assert addresses == ["bob@hosted.test", "nobody@hosted.test"]
    mx.wait_until_queue_empty()
    assert mx.mailbox("bob@hosted.test") == []


def test_keep_a_local_copy(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    rule(
        installation,
        "inbound",
        "add",
        "arch",
        "--route",
        "archive",
        "--condition",
        "all",
        "--unknown-recipients",
        "--keep-local-copy",
    )
    assert inbound(mx, "bob@hosted.test", "nobody@hosted.test") == {
        "bob@hosted.test": 250,
        "nobody@hosted.test": 250,
    }
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1  # known: local and route
    messages = received_rcpts(sinks["archive"], 2)
    got = sorted(pair for m in messages for pair in envelope(m))
    assert got == [
        ("bob@hosted.test", "rfc822;bob@hosted.test"),
        ("nobody@hosted.test", "rfc822;nobody@hosted.test"),
    ]
    assert {
        r.args.get("NOTIFY") for m in messages for r in m.rcpts if r.address == "bob@hosted.test"
    } == {"NEVER"}  # the copy never bounces
    for message in messages:
        assert_untagged(message)
    mx.wait_until_queue_empty()
    assert "bounce" not in mx.log_text() and sinks["internet"].messages() == []


@pytest.mark.parametrize(
    ("condition", "routed"), [("external", "inbound"), ("internal", "internal")]
)
def test_inbound_condition(
    mx: PostfixInstance,
    installation: Installation,
    sinks: dict[str, SmtpSink],
    condition: str,
    routed: str,
) -> None:
    rule(installation, "inbound", "add", "arch", "--route", "archive", "--condition", condition)
    inbound(mx, "bob@hosted.test")
    internal(mx, "bob@hosted.test")
    (message,) = sinks["archive"].wait_for(1)
    sender = "a@ext.example" if routed == "inbound" else "alice@hosted.test"
    assert message.mail_from == sender
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1  # the other one stayed local


def test_outbound_change_route_external_only(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    rule(
        installation,
        "outbound",
        "add",
        "dlp",
        "--route",
        "dlp",
        "--condition",
        "external",
        "--action",
        "change-route",
    )
    assert internal(mx, "x@ext.example", "bob@hosted.test") == {
        "x@ext.example": 250,
        "bob@hosted.test": 250,
    }
    (message,) = sinks["dlp"].wait_for(1)
    assert envelope(message) == [("x@ext.example", "rfc822;x@ext.example")]
    assert_untagged(message)
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1
    mx.wait_until_queue_empty()
    assert sinks["internet"].messages() == []


def test_outbound_internal_rule_catches_only_hosted_recipients(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    rule(
        installation,
        "outbound",
        "add",
        "dlp",
        "--route",
        "dlp",
        "--condition",
        "internal",
        "--action",
        "change-route",
    )
    internal(mx, "x@ext.example", "bob@hosted.test")
    (message,) = sinks["dlp"].wait_for(1)
    assert envelope(message) == [("bob@hosted.test", "rfc822;bob@hosted.test")]
    assert len(sinks["internet"].wait_for(1)) == 1
    # a forged hosted sender from outside is external: not internal mail
    inbound(mx, "bob@hosted.test", sender="alice@hosted.test")
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1
    assert len(sinks["dlp"].messages()) == 1


def test_send_additionally(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    rule(
        installation,
        "outbound",
        "add",
        "journal",
        "--route",
        "archive",
        "--condition",
        "external",
        "--action",
        "send-additionally",
    )
    internal(mx, "x@ext.example", "y@ext.example")
    (copy,) = sinks["archive"].wait_for(1)
    assert [(r.address, r.args.get("NOTIFY")) for r in copy.rcpts] == [
        ("alice@hosted.test", "NEVER")
    ]  # one copy, to the sender's own address
    assert_untagged(copy)
    delivered = sorted(a for m in received_rcpts(sinks["internet"], 2) for a in m.rcpt_addresses)
    assert delivered == ["x@ext.example", "y@ext.example"]


def test_route_down_means_deferred_then_delivered(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    sinks["archive"].stop()
    rule(installation, "inbound", "add", "arch", "--route", "archive", "--condition", "all")
    inbound(mx, "bob@hosted.test")
    mx.wait_for_log(r"status=deferred")
    assert mx.queue_ids()
    sinks["archive"].start()
    mx.flush()
    (message,) = sinks["archive"].wait_for(1, timeout=15)
    assert envelope(message)[0][0] == "bob@hosted.test"
    mx.wait_until_queue_empty()
    assert "bounce" not in mx.log_text()


def test_route_with_tls_required_defers_against_a_plaintext_server(
    mx: PostfixInstance, installation: Installation, sinks: dict[str, SmtpSink]
) -> None:
    installation.cli("route", "edit", "archive", "--tls", "required")
    rule(installation, "inbound", "add", "arch", "--route", "archive", "--condition", "all")
    inbound(mx, "bob@hosted.test")
    mx.wait_for_log(r"status=deferred .*TLS is required, but was not offered")
    assert sinks["archive"].messages() == []


def test_internal_mail_via_the_gateway(
    mx: PostfixInstance,
    installation: Installation,
    postfix_factory: Callable[..., PostfixInstance],
) -> None:
    """One copy at the gateway, one in the mailbox, no loop."""
    gateway = postfix_factory(
        hosted={},
        relay_domains=["hosted.test"],
        routes={"hosted.test": f"smtp:[127.0.0.1]:{mx.mx_port}"},
        main_cf={"smtp_bind_address": "127.0.0.5", "mynetworks": "127.0.0.0/8"},
    )
    installation.cli("route", "add", "gw", "--host", "[127.0.0.1]", "--port", str(gateway.mx_port))
    installation.cli(
        "gateway",
        "set",
        "--enable",
        "--ips",
        "127.0.0.5",
        "--internal-via-gateway",
        "on",
        "--route",
        "gw",
    )
    installation.in_force()
    internal(mx, "bob@hosted.test")
    (delivered,) = mx.wait_for_mailbox("bob@hosted.test")
    gateway.wait_for_log(r"to=<bob@hosted.test>.*status=sent")
    mx.wait_until_queue_empty()
    gateway.wait_until_queue_empty()  # every delivery done: a second copy would be here
    assert len(mx.mailbox("bob@hosted.test")) == 1
    assert gateway.log_text().count("status=sent") == 1
    assert "loop" not in mx.log_text().lower()
    assert "pwroute" not in delivered.raw.decode(errors="replace")


def test_journal_rules_see_gateway_mail_once(
    mx: PostfixInstance,
    installation: Installation,
    sinks: dict[str, SmtpSink],
    postfix_factory: Callable[..., PostfixInstance],
) -> None:
    """Internal mail via the gateway and external mail the gateway delivers: one journal copy
    each (the gateway's client address decides nothing about routing)."""
    gateway = postfix_factory(
        hosted={},
        relay_domains=["hosted.test"],
        routes={"hosted.test": f"smtp:[127.0.0.1]:{mx.mx_port}"},
        main_cf={"smtp_bind_address": "127.0.0.5", "mynetworks": "127.0.0.0/8"},
    )
    installation.cli("route", "add", "gw", "--host", "[127.0.0.1]", "--port", str(gateway.mx_port))
    installation.cli(
        "gateway", "set", "--enable", "--ips", "127.0.0.5", "--internal-via-gateway", "on",
        "--route", "gw",
    )  # fmt: skip
    rule(
        installation, "inbound", "add", "journal", "--route", "archive", "--condition", "all",
        "--keep-local-copy",
    )  # fmt: skip
    internal(mx, "bob@hosted.test")
    mx.wait_for_mailbox("bob@hosted.test")
    assert len(sinks["archive"].wait_for(1)) == 1
    external = send(gateway.mx_port, "a@ext.example", ["bob@hosted.test"], client_ip="198.51.100.9")
    assert external.queue_id, external
    mx.wait_for_mailbox("bob@hosted.test", 2)
    journal = received_rcpts(sinks["archive"], 2)
    mx.wait_until_queue_empty()
    gateway.wait_until_queue_empty()  # every delivery done: a third copy would be here
    assert [r.address for m in sinks["archive"].messages() for r in m.rcpts] == [
        "bob@hosted.test",
        "bob@hosted.test",
    ], journal
    assert len(mx.mailbox("bob@hosted.test")) == 2
    assert gateway.log_text().count("status=sent") == 2  # each message once, no loop


def test_a_relaying_route_hands_mail_back_to_the_handback_listener(
    mx: PostfixInstance,
    installation: Installation,
    sinks: dict[str, SmtpSink],
    postfix_factory: Callable[..., PostfixInstance],
) -> None:
    """A DLP gateway relays outbound mail back: it arrives on the hand-back listener and is
    delivered as addressed, once, never routed to the DLP again."""
    dlp = postfix_factory(
        hosted={},
        relay_domains=["ext.example"],
        routes={"ext.example": f"smtp:[127.0.0.1]:{mx.handback_port}"},
        main_cf={"smtp_bind_address": "127.0.0.6", "mynetworks": "127.0.0.0/8"},
    )
    installation.cli("route", "add", "scan", "--host", "[127.0.0.1]", "--port", str(dlp.mx_port))
    rule(
        installation, "outbound", "add", "dlp", "--route", "scan", "--condition", "external",
        "--action", "change-route",
    )  # fmt: skip
    internal(mx, "x@ext.example")
    (delivered,) = sinks["internet"].wait_for(1)
    assert delivered.rcpt_addresses == ["x@ext.example"]
    mx.wait_until_queue_empty()
    dlp.wait_until_queue_empty()  # every delivery done: a second copy would be here
    assert len(sinks["internet"].messages()) == 1
    assert dlp.log_text().count("status=sent") == 1  # the DLP saw it once
    assert "postfix/postwarden-handback" in mx.log_text()
