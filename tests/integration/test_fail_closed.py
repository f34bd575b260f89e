"""Fail closed under hostile input (issue 9), end to end through real Postfix instances.

A second private Postfix plays the inbound gateway of gw.test: it accepts mail from the
senders (XCLIENT plays their addresses and HELO names), writes its own Received header and
relays from 127.0.0.5, a registered gateway address. What the sender writes never decides:
its HELO name cannot choose the "original IP", recipients it spells oddly are removed and
routed exactly once, broken encodings are read as text, and duplicates change nothing.
"""

from __future__ import annotations

import smtplib
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import PostfixInstance, ServiceUser, SmtpSink, send
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire

pytestmark = pytest.mark.postfix

GATEWAY_IP = "127.0.0.5"
BLOCKED = "203.0.113.9"
ALLOWED = "198.51.100.77"
NEUTRAL = "198.51.100.99"
HOSTED = {"gw.test": ("gina",), "other.test": ("carol",), "route.test": ("rita",)}
SETTINGS = """\
version: 1
primary_domain: gw.test
trusted_networks: [127.0.0.1/32]
domains:
  gw.test:
    allowed_ips: [198.51.100.77]
    blocked_ips: [203.0.113.0/24]
    spam_rules: [{{name: pills, field: subject, pattern: '(?i)pills'}}]
    gateway: {{enabled: true, ips: [127.0.0.5, 192.0.2.25], skip_spam_filter: true}}
  other.test:
    spam_rules: [{{name: pills, field: subject, pattern: '(?i)pills'}}]
  route.test:
    inbound_routing: [{{name: arch, route: archive, condition: all}}]
routes:
  archive: {{host: "[127.0.0.1]", port: {archive}}}
...
"""
UNREADABLE_HOP = f"from x (y [{ALLOWED}]) by z (unknown [{BLOCKED}])\n\tby gw.test (Postfix)"


@pytest.fixture
def archive(smtp_sink_factory: Callable[..., SmtpSink]) -> SmtpSink:
    return smtp_sink_factory()


@pytest.fixture
def installation(
    traversable_tmp: Path, service_user: ServiceUser, archive: SmtpSink
) -> Installation:
    inst = Installation(traversable_tmp, service_user, primary="gw.test")
    inst.write(SETTINGS.format(archive=archive.port))
    return inst


@pytest.fixture
def mx(
    postfix_factory: Callable[..., PostfixInstance], daemons: tuple[Policyd, MilterDaemon]
) -> PostfixInstance:
    instance = postfix_factory(hosted=HOSTED)
    wire(instance, *daemons)
    return instance


@pytest.fixture
def gateway(
    postfix_factory: Callable[..., PostfixInstance], mx: PostfixInstance
) -> PostfixInstance:
    """gw.test's inbound gateway: relays to the MX from 127.0.0.5, a registered gateway."""
    return postfix_factory(
        hosted={},
        hostname="gw.harness.test",
        relay_domains=["gw.test"],
        routes={"gw.test": f"smtp:[127.0.0.1]:{mx.mx_port}"},
        main_cf={"smtp_bind_address": GATEWAY_IP, "mynetworks": "127.0.0.0/8"},
    )


def through_gateway(gateway: PostfixInstance, client: str, helo: str, rcpt: str, **headers: str):  # type: ignore[no-untyped-def]
    result = send(
        gateway.mx_port, "s@ext.example", [rcpt], client_ip=client, helo=helo, headers=headers
    )
    assert result.queue_id, result
    return result


def metric(daemon: MilterDaemon | Policyd, name: str) -> str:
    url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


@pytest.mark.parametrize(
    "helo",
    [
        f"=?us-ascii?q?[{ALLOWED}]_by_x?=",  # an encoded word naming an allowed IP
        "by",  # makes "from by (unknown [IP]) by gw" split at the wrong "by"
        f"[{ALLOWED}]",  # an address literal the sender chose
        f"x (y [{ALLOWED}]) by z",  # parentheses and brackets (Postfix writes them as ?)
    ],
)
def test_a_helo_name_never_lets_a_blocked_sender_through(
    gateway: PostfixInstance,
    mx: PostfixInstance,
    installation: Installation,
    helo: str,
) -> None:
    through_gateway(gateway, BLOCKED, helo, "gina@gw.test")
    gateway.wait_for_log(r"to=<gina@gw.test>.*status=bounced .*blocked")
    assert mx.mailbox("gina@gw.test") == []
    history = installation.cli_json("block", "list", "--sort", "recent")["entries"]
    assert (history[0]["entry"], history[0]["blocks"]) == ("203.0.113.0/24", 1)


def test_the_gateway_written_address_still_decides(
    gateway: PostfixInstance, mx: PostfixInstance
) -> None:
    """The control: what the gateway wrote is read, for allowed and neutral senders."""
    through_gateway(gateway, ALLOWED, "by", "gina@gw.test", Subject="cheap pills 1")
    (allowed,) = mx.wait_for_mailbox("gina@gw.test")
    assert allowed.message["X-Postwarden-Trusted"] == "allowed-ip"
    assert allowed.message["X-Spam-Flag"] is None
    through_gateway(gateway, NEUTRAL, f"[{ALLOWED}]", "gina@gw.test", Subject="cheap pills 2")
    (neutral,) = [
        m for m in mx.wait_for_mailbox("gina@gw.test", 2) if m.message["Subject"].endswith("2")
    ]
    assert neutral.message["X-Postwarden-Trusted"] == "gateway"  # skip_spam_filter
    assert neutral.message["X-Postwarden-Spam"] == "pills"


def test_an_unreadable_gateway_hop_is_never_trusted(
    mx: PostfixInstance, daemons: tuple[Policyd, MilterDaemon]
) -> None:
    result = send(
        mx.mx_port,
        "s@ext.example",
        ["gina@gw.test"],
        client_ip="192.0.2.25",
        message=f"Received: {UNREADABLE_HOP}\r\nSubject: cheap pills\r\n\r\nhi\r\n",
    )
    assert result.queue_id, result
    (delivered,) = mx.wait_for_mailbox("gina@gw.test")
    assert delivered.message["X-Postwarden-Trusted"] is None  # not even "gateway"
    assert delivered.message["X-Postwarden-Spam"] == "pills"  # the rules ran
    milter = daemons[1]
    assert 'domain="gw.test"} 1.0' in metric(milter, "postwarden_gateway_unknown_origins_total")
    assert "original IP unknown for gw.test" in milter.log_text()


def _raw_session(port: int, client: str, rcpts: list[str], message: bytes) -> tuple[int, list[int]]:
    """One transaction with RCPT arguments sent exactly as written (source routes, dots)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("client.harness.test")
        assert smtp.docmd("XCLIENT", f"ADDR={client}")[0] == 220
        smtp.ehlo("client.harness.test")
        assert smtp.docmd("MAIL", "FROM:<s@ext.example>")[0] == 250
        codes = [smtp.docmd("RCPT", f"TO:{rcpt}")[0] for rcpt in rcpts]
        try:
            code = smtp.data(message)[0]
        except smtplib.SMTPDataError as refused:
            code = refused.smtp_code
    return code, codes


def _gateway_message(original: str) -> bytes:
    return (
        f"Received: from h.example (h.example [{original}])\r\n\tby gw.harness.test (Postfix)"
        " with ESMTP id 4Q\r\nFrom: s@ext.example\r\nSubject: hi\r\n\r\nhello\r\n"
    ).encode()


def test_a_source_routed_recipient_of_blocked_mail_is_removed(mx: PostfixInstance) -> None:
    code, codes = _raw_session(
        mx.mx_port,
        "192.0.2.25",
        ["<@relay.example:gina@gw.test>", "<carol@other.test>"],
        _gateway_message(BLOCKED),
    )
    assert (code, codes) == (250, [250, 250])
    mx.wait_for_mailbox("carol@other.test")
    mx.wait_until_queue_empty()
    assert mx.mailbox("gina@gw.test") == []  # gw.test blocks the original sender


@pytest.mark.parametrize(
    "rcpts",
    [
        ["<gina@gw.test>"],
        ["<gina@gw.test>", "<gina@gw.test>"],
        ["<gina@gw.test>", "<gina@GW.test.>"],
    ],
)
def test_a_duplicate_recipient_gives_the_same_reply(mx: PostfixInstance, rcpts: list[str]) -> None:
    """Blocked gateway mail: rejected whole, whether the recipient came once or twice."""
    code, _ = _raw_session(mx.mx_port, "192.0.2.25", rcpts, _gateway_message(BLOCKED))
    assert code == 550
    assert mx.mailbox("gina@gw.test") == []


@pytest.mark.parametrize(
    "rcpt", ["<@other.test:rita@route.test>", "<rita@route.test.>", '<"rita"@Route.Test>']
)
def test_an_oddly_written_recipient_is_routed_exactly_once(
    mx: PostfixInstance, archive: SmtpSink, rcpt: str
) -> None:
    code, codes = _raw_session(mx.mx_port, "198.51.100.9", [rcpt], b"Subject: hi\r\n\r\nhi\r\n")
    assert (code, codes) == (250, [250])
    (message,) = archive.wait_for(1)
    assert [r.address.lower() for r in message.rcpts] == ["rita@route.test"]
    assert b"pwroute" not in message.raw.lower()
    assert "pwroute" not in str([(r.address, r.args) for r in message.rcpts]).lower()
    mx.wait_until_queue_empty()
    assert mx.mailbox("rita@route.test") == []  # moved, not also delivered locally
    assert "status=bounced" not in mx.log_text()


@pytest.mark.parametrize(
    "header",
    [
        b"Subject: =?utf-8?b?Q?= cheap pills",
        b"Received: from =?utf-8?b?Q?= (unknown [198.51.100.9])\r\n\tby x (Postfix)",
        b"From: =?utf-8?b?Q?= <s@ext.example>",
        b"Subject: =?x-no-such-charset?q?pills?=",
    ],
)
def test_a_broken_encoded_word_is_read_as_text(mx: PostfixInstance, header: bytes) -> None:
    """Sent as raw bytes: one bad encoded word once meant 451 on every retry."""
    message = header + b"\r\nTo: carol@other.test\r\n\r\nhello\r\n"
    result = send(
        mx.mx_port, "s@ext.example", ["carol@other.test"], client_ip=NEUTRAL, message=message
    )
    assert result.data is not None and result.data.code == 250, result  # never 451
    (delivered,) = mx.wait_for_mailbox("carol@other.test")
    assert header.split(b":")[0].decode() in delivered.message


def test_gateway_mail_skips_later_restrictions_with_skip_spam_filter(
    postfix_factory: Callable[..., PostfixInstance],
    daemons: tuple[Policyd, MilterDaemon],
    installation: Installation,
) -> None:
    """An RBL-like reject after the policy check does not judge the gateway (policyd: OK)."""
    instance = postfix_factory(hosted=HOSTED)
    table = instance.table("rbl", {"192.0.2.25": "REJECT listed in a blocklist"})
    instance.postconf({"smtpd_recipient_restrictions": f"check_client_access {table}"})
    wire(instance, *daemons)

    def reply() -> int:
        return (
            send(instance.mx_port, "s@ext.example", ["gina@gw.test"], client_ip="192.0.2.25")
            .rcpts["gina@gw.test"]
            .code
        )

    assert reply() == 250
    installation.write(installation.settings.read_text().replace(", skip_spam_filter: true", ""))
    installation.in_force()
    assert reply() == 554  # without the switch, the site's restriction judges it


def test_mail_submitted_from_a_routes_address_is_routed(
    mx: PostfixInstance, archive: SmtpSink
) -> None:
    """Webmail on 127.0.0.1 shares the route's address: its mail is journalled all the same."""
    result = send(mx.mx_port, "alice@gw.test", ["rita@route.test"])  # from 127.0.0.1 itself
    assert result.queue_id, result
    (message,) = archive.wait_for(1)
    assert [r.address for r in message.rcpts] == ["rita@route.test"]


def test_a_settings_file_cut_short_is_refused(
    mx: PostfixInstance, installation: Installation, daemons: tuple[Policyd, MilterDaemon]
) -> None:
    installation.cli(
        "gateway",
        "set",
        "--domain",
        "other.test",
        "--enable",
        "--ips",
        "192.0.2.25",
        "--only-from-gateway",
        "on",
    )
    installation.in_force()

    def reply() -> int:
        result = send(mx.mx_port, "s@ext.example", ["carol@other.test"], client_ip=NEUTRAL)
        assert result.mail.ok, result
        return result.rcpts["carol@other.test"].code

    assert reply() == 554
    text = installation.settings.read_text()
    cut = text[: text.index("  other.test:")]  # other.test and its gateway-only are gone
    marks = [daemon.log_mark() for daemon in daemons]
    with open(installation.settings, "r+") as handle:
        handle.truncate(len(cut.encode()))
    for daemon, mark in zip(daemons, marks, strict=True):
        daemon.wait_for_log("look cut short", since=mark)
    assert reply() == 554  # still the last good settings
    policyd = daemons[0]
    assert 'reason="cut-short"} 1.0' in metric(policyd, "postwarden_settings_refused_total")


def test_the_senders_orcpt_reaches_the_route(mx: PostfixInstance, archive: SmtpSink) -> None:
    """A routed recipient keeps the ORCPT the sender gave (its DSNs must name it)."""
    result = send(
        mx.mx_port,
        "s@ext.example",
        ["rita@route.test"],
        client_ip=NEUTRAL,
        rcpt_options={"rita@route.test": ["ORCPT=rfc822;Rita@Old.Example", "NOTIFY=FAILURE"]},
    )
    assert result.queue_id, result
    (message,) = archive.wait_for(1)
    (rcpt,) = message.rcpts
    assert (rcpt.address, rcpt.args.get("ORCPT"), rcpt.args.get("NOTIFY")) == (
        "rita@route.test",
        "rfc822;Rita@Old.Example",
        "FAILURE",
    )
