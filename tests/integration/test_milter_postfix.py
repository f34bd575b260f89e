"""postwarden-milter in a real Postfix: spam tagging, header rewrites, gateway original IP.

Both daemons run as the service user and are wired by ``postfix-config --apply``; mail goes
in through Postfix's port-25 listener (XCLIENT plays the senders) and is read back from the
Maildirs, so every assertion is about what a recipient really gets.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import PostfixInstance, ServiceUser, send
from tests.harness.wait import wait_until
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    allowed_ips: [198.51.100.7]
    blocked_ips: [203.0.113.0/24]
    spam_rules:
      - {name: pills, field: subject, pattern: '(?i)cheap\\s+pills'}
      - {name: gateway-verdict, field: 'header:X-Gateway-Spam', pattern: '(?i)^yes'}
      - {name: link, field: body, pattern: 'evil\\.example/win'}
    gateway:
      enabled: true
      ips: [192.0.2.25, 192.0.2.26]
      skip_spam_filter: true
  other.test:
    blocked_ips: [203.0.113.50]
    gateway: {enabled: true, ips: [192.0.2.25, 192.0.2.26]}
"""
HOSTED = {"hosted.test": ("alice", "bob"), "other.test": ("carol",)}
NEUTRAL = "198.51.100.99"


@pytest.fixture
def installation(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    inst.write(SETTINGS)
    return inst


@pytest.fixture
def mx(
    postfix_factory: Callable[..., PostfixInstance], daemons: tuple[Policyd, MilterDaemon]
) -> PostfixInstance:
    instance = postfix_factory(hosted=HOSTED)
    wire(instance, *daemons)
    return instance


def deliver(
    mx: PostfixInstance, client: str, rcpts: list[str], message: bytes | None = None, **headers: str
) -> None:
    result = send(
        mx.mx_port,
        "sender@ext.example",
        rcpts,
        client_ip=client,
        message=message,
        headers={k.replace("_", "-"): v for k, v in headers.items()} or None,
    )
    assert result.data is not None and result.data.ok, result


def received_by(mx: PostfixInstance, address: str, count: int = 1):  # type: ignore[no-untyped-def]
    return [m.message for m in mx.wait_for_mailbox(address, count)][-1]


def test_a_matching_subject_is_tagged(
    mx: PostfixInstance, daemons: tuple[Policyd, MilterDaemon]
) -> None:
    deliver(mx, NEUTRAL, ["bob@hosted.test"], Subject="Cheap   pills today")
    message = received_by(mx, "bob@hosted.test")
    assert message["X-Spam-Flag"] == "YES"
    assert message["X-Postwarden-Spam"] == "pills"
    url = f"http://127.0.0.1:{daemons[1].metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        metrics = response.read().decode()
    assert 'postwarden_spam_tags_total{rule="pills"} 1.0' in metrics
    assert 'postwarden_milter_messages_total{outcome="accept"} 1.0' in metrics


def test_an_rfc2047_subject_is_decoded_before_matching(mx: PostfixInstance) -> None:
    encoded = "=?utf-8?b?" + base64.b64encode("Très CHEAP pills".encode()).decode() + "?="
    assert "CHEAP" not in encoded  # the raw header does not show the words
    deliver(mx, NEUTRAL, ["bob@hosted.test"], Subject=encoded)
    assert received_by(mx, "bob@hosted.test")["X-Postwarden-Spam"] == "pills"


def test_a_matching_body_is_tagged_after_transfer_decoding(mx: PostfixInstance) -> None:
    body = b"Q2xpY2sgaHR0cDovL2V2aWwuZXhhbXBsZS93aW4gbm93Cg=="  # base64 of a link
    message = (
        b"From: a@ext.example\r\nTo: bob@hosted.test\r\nSubject: hello\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"\r\n"
    )
    deliver(mx, NEUTRAL, ["bob@hosted.test"], message)
    assert received_by(mx, "bob@hosted.test")["X-Postwarden-Spam"] == "link"


def test_an_allowed_ip_is_not_tagged_and_marked_trusted(mx: PostfixInstance) -> None:
    deliver(mx, "198.51.100.7", ["bob@hosted.test"], Subject="Cheap pills")
    message = received_by(mx, "bob@hosted.test")
    assert message["X-Spam-Flag"] is None
    assert message["X-Postwarden-Trusted"] == "allowed-ip"


def test_gateway_verdict_header_tags_even_with_skip_spam_filter(mx: PostfixInstance) -> None:
    deliver(
        mx,
        "192.0.2.25",
        ["bob@hosted.test"],
        X_Gateway_Spam="yes",
        Received="from sender.example (sender.example [198.51.100.99]) by gw.hosted.test",
    )
    message = received_by(mx, "bob@hosted.test")
    assert message["X-Postwarden-Spam"] == "gateway-verdict"
    assert message["X-Postwarden-Trusted"] == "gateway"  # downstream filters skip it


def test_forged_copies_of_our_headers_do_not_survive(mx: PostfixInstance) -> None:
    forged = (
        b"From: a@ext.example\r\nTo: bob@hosted.test\r\nSubject: hi\r\n"
        b"X-Postwarden-Trusted: allowed-ip\r\n"
        b"x-postwarden-TRUSTED: allowed-ip\r\n"
        b"X-Postwarden-Spam: nothing\r\n\tfolded onto a second line\r\n"
        b"X-Spam-Flag: NO\r\nX-Spam-Flag: NO\r\n\r\nhello\r\n"
    )
    deliver(mx, NEUTRAL, ["bob@hosted.test"], forged)
    message = received_by(mx, "bob@hosted.test")
    names = [name.lower() for name in message]
    assert not [n for n in names if n.startswith("x-postwarden-") or n == "x-spam-flag"], names
    assert message["Subject"] == "hi"


def test_original_ip_blocked_for_one_of_two_domains(
    mx: PostfixInstance, installation: Installation
) -> None:
    received = "from evil.example (evil.example [203.0.113.77]) by gw.hosted.test"
    deliver(mx, "192.0.2.25", ["bob@hosted.test", "carol@other.test"], Received=received)
    assert len(mx.wait_for_mailbox("carol@other.test")) == 1
    mx.wait_until_queue_empty()  # every delivery done: a copy for bob would be here
    assert mx.mailbox("bob@hosted.test") == []

    def recorded() -> list[dict[str, Any]] | None:
        entries = installation.cli_json("block", "list", "--sort", "recent")["entries"]
        return entries if entries[0]["blocks"] else None

    entries = wait_until(recorded, "the block recorded", interval=0.2)
    assert (entries[0]["entry"], entries[0]["blocks"]) == ("203.0.113.0/24", 1)


def test_a_message_whose_every_recipient_blocks_is_rejected(mx: PostfixInstance) -> None:
    received = "from evil.example (evil.example [203.0.113.77]) by gw.hosted.test"
    result = send(
        mx.mx_port,
        "sender@ext.example",
        ["bob@hosted.test"],
        client_ip="192.0.2.25",
        headers={"Received": received},
    )
    assert result.data is not None and result.data.code == 550, result


def test_a_forged_received_below_the_gateway_hop_is_ignored(mx: PostfixInstance) -> None:
    message = (
        b"Received: from good.example (good.example [198.51.100.99]) by gw.hosted.test\r\n"
        b"Received: from forged (forged [203.0.113.77]) by good.example\r\n"
        b"From: a@good.example\r\nTo: bob@hosted.test\r\nSubject: hi\r\n\r\nhello\r\n"
    )
    deliver(mx, "192.0.2.25", ["bob@hosted.test"], message)
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1


def test_multi_hop_gateways_are_walked(mx: PostfixInstance) -> None:
    message = (
        b"Received: from gw2 (gw2 [192.0.2.26]) by gw1.hosted.test\r\n"
        b"Received: from evil (evil [203.0.113.77]) by gw2.hosted.test\r\n"
        b"From: a@evil.example\r\nTo: bob@hosted.test\r\nSubject: hi\r\n\r\nhello\r\n"
    )
    result = send(
        mx.mx_port, "a@evil.example", ["bob@hosted.test"], client_ip="192.0.2.25", message=message
    )
    assert result.data is not None and result.data.code == 550


def test_milter_down_means_tempfail_then_delivery(
    mx: PostfixInstance, daemons: tuple[Policyd, MilterDaemon]
) -> None:
    _, milter = daemons
    milter.kill()
    result = send(mx.mx_port, "sender@ext.example", ["bob@hosted.test"], client_ip=NEUTRAL)
    replies = [result.mail, *result.rcpts.values(), *([result.data] if result.data else [])]
    assert any(reply.code // 100 == 4 for reply in replies), result  # try again later
    assert not any(reply.code // 100 == 5 for reply in replies), result
    assert result.queue_id is None
    assert mx.mailbox("bob@hosted.test") == []
    milter.start()
    deliver(mx, NEUTRAL, ["bob@hosted.test"])  # the sender's retry
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1
