"""Outgoing TLS policies enforced by a real Postfix SMTP client through the socketmap.

Each partner domain resolves (in the instance's private /etc/hosts) to its own loopback
address, where a STARTTLS sink listens on the instance's ``smtp_tcp_port``; so Postfix looks
the policy up by the partner's domain, and checks certificates against that host name, as in
production.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import PostfixInstance, ServiceUser, TestCA, TlsSink, free_port, send
from tests.integration.daemons import Installation, Policyd

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    tls_policies:
      - {title: plain tls, partners: [enc.test, both.test]}
      - {title: ca, trusted_ca: true, partners: [ca.test]}
      - {title: names, hostname_match: true, partners: [name.test]}
  other.test:
    tls_policies:
      - {title: strict, trusted_ca: true, partners: [both.test]}
"""

PARTNERS = {
    "enc.test": "127.0.0.2",
    "ca.test": "127.0.0.3",
    "name.test": "127.0.0.4",
    "both.test": "127.0.0.5",
    "free.test": "127.0.0.6",
}


@pytest.fixture
def policyd(traversable_tmp: Path, service_user: ServiceUser) -> Iterator[Policyd]:
    installation = Installation(traversable_tmp, service_user)
    installation.write(SETTINGS)
    daemon = Policyd(installation)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def outbound(
    postfix_factory: Callable[..., PostfixInstance], policyd: Policyd, test_ca: TestCA, port: int
) -> PostfixInstance:
    instance = postfix_factory(
        hosted={"hosted.test": ("alice",), "other.test": ("carol",)},
        hosts=PARTNERS,
        routes={domain: "smtp:" for domain in PARTNERS},  # next hop = the recipient domain
        main_cf={
            "smtp_tcp_port": str(port),
            "smtp_tls_CAfile": str(test_ca.ca_file),
            "smtp_tls_security_level": "may",
        },
    )
    policyd.wire(instance)
    return instance


def sink_for(
    factory: Callable[..., TlsSink],
    test_ca: TestCA,
    domain: str,
    port: int,
    *,
    trusted: bool,
    name: str | None = None,
) -> TlsSink:
    names = (name or domain,)
    cert = (test_ca.issue if trusted else test_ca.self_signed)(f"{domain}-{trusted}", names)
    return factory(cert=cert, host=PARTNERS[domain], port=port)


def submit(postfix: PostfixInstance, recipient: str) -> str:
    result = send(
        postfix.submission_port,
        "alice@hosted.test",
        [recipient],
        client_ip="192.0.2.1",
        sasl_user="alice",
    )
    assert result.queue_id, result
    return result.queue_id


def test_encrypt_delivers_over_tls_to_an_untrusted_certificate(
    outbound: PostfixInstance,
    tls_sink_factory: Callable[..., TlsSink],
    test_ca: TestCA,
    port: int,
) -> None:
    sink = sink_for(tls_sink_factory, test_ca, "enc.test", port, trusted=False)
    submit(outbound, "x@enc.test")
    (message,) = sink.wait_for(1)
    assert message.tls


def test_trusted_ca_defers_on_an_untrusted_certificate(
    outbound: PostfixInstance,
    tls_sink_factory: Callable[..., TlsSink],
    test_ca: TestCA,
    port: int,
) -> None:
    sink = sink_for(tls_sink_factory, test_ca, "ca.test", port, trusted=False)
    queue_id = submit(outbound, "x@ca.test")
    outbound.wait_for_log(rf"{queue_id}: .*status=deferred .*Server certificate not verified")
    assert sink.messages() == []
    assert queue_id in outbound.queue_ids()


def test_hostname_match_defers_on_a_mismatch_and_delivers_on_a_match(
    outbound: PostfixInstance,
    tls_sink_factory: Callable[..., TlsSink],
    test_ca: TestCA,
    port: int,
) -> None:
    wrong = sink_for(
        tls_sink_factory, test_ca, "name.test", port, trusted=True, name="other-name.test"
    )
    queue_id = submit(outbound, "x@name.test")
    outbound.wait_for_log(rf"{queue_id}: .*status=deferred .*Server certificate not verified")
    assert wrong.messages() == []
    wrong.stop()
    right = sink_for(tls_sink_factory, test_ca, "name.test", port, trusted=True)
    outbound.flush()
    (message,) = right.wait_for(1, timeout=15)
    assert message.tls
    outbound.wait_until_queue_empty()


def test_strictest_of_overlapping_policies_wins(
    outbound: PostfixInstance,
    tls_sink_factory: Callable[..., TlsSink],
    test_ca: TestCA,
    port: int,
) -> None:
    """hosted.test says encrypt for both.test, other.test says trusted CA: verify wins."""
    sink = sink_for(tls_sink_factory, test_ca, "both.test", port, trusted=False)
    queue_id = submit(outbound, "x@both.test")
    outbound.wait_for_log(rf"{queue_id}: .*status=deferred .*Server certificate not verified")
    assert sink.messages() == []


def test_without_a_policy_an_untrusted_certificate_is_fine(
    outbound: PostfixInstance,
    tls_sink_factory: Callable[..., TlsSink],
    test_ca: TestCA,
    port: int,
) -> None:
    sink = sink_for(tls_sink_factory, test_ca, "free.test", port, trusted=False)
    submit(outbound, "x@free.test")
    (message,) = sink.wait_for(1)
    assert message.tls  # opportunistic, and nothing stricter asked


def test_socketmap_down_defers_rather_than_sending_in_clear(
    outbound: PostfixInstance,
    tls_sink_factory: Callable[..., TlsSink],
    test_ca: TestCA,
    policyd: Policyd,
    port: int,
) -> None:
    """A queued message whose TLS policy cannot be looked up stays queued."""
    sink = sink_for(tls_sink_factory, test_ca, "enc.test", port, trusted=False)
    sink.stop()  # the first attempt fails: the message waits in the queue
    queue_id = submit(outbound, "x@enc.test")
    outbound.wait_for_log(rf"{queue_id}: .*status=deferred")
    policyd.kill()
    sink.start()
    mark = outbound.log_mark()
    outbound.flush()
    outbound.wait_for_log(rf"{queue_id}: .*status=deferred", since=mark)
    assert sink.messages() == []  # never sent without the policy's TLS
    policyd.start()
    outbound.flush()
    (message,) = sink.wait_for(1, timeout=15)
    assert message.tls
