"""postwarden-policyd answering a real Postfix: the decision table as SMTP replies.

The table is README's "How a decision is made".

Every test sends real SMTP to a private Postfix instance whose port-25 listener was wired by
``postwarden postfix-config --apply``; the daemon runs as the unprivileged service user.
"""

from __future__ import annotations

import grp
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import PostfixInstance, ServiceUser, TestCA, send
from tests.harness.wait import wait_until
from tests.integration.daemons import Installation, Policyd

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: hosted.test
trusted_networks: [127.0.0.0/8, 192.0.2.0/28]
domains:
  hosted.test:
    allowed_ips: [198.51.100.7, 203.0.113.5, "2001:db8:aa::/48"]
    blocked_ips: [203.0.113.0/24, "2001:db8:bad::/48", 192.0.2.0/24]
    tls_policies:
      - {title: bank, target: incoming, partners: [bank.example]}
  other.test:
    allowed_ips: [192.0.2.99]
    blocked_ips: [198.51.100.0/24]
    gateway: {enabled: true, only_from_gateway: true, ips: [192.0.2.25]}
  third.test:
"""

HOSTED = {"hosted.test": ("alice", "bob"), "other.test": ("carol",), "third.test": ("dave",)}


@pytest.fixture
def installation(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    inst.write(SETTINGS)
    return inst


@pytest.fixture
def policyd(installation: Installation) -> Iterator[Policyd]:
    daemon = Policyd(installation)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def mx(
    postfix_factory: Callable[..., PostfixInstance],
    policyd: Policyd,
    test_ca: TestCA,
    traversable_tmp: Path,
) -> PostfixInstance:
    """Postfix with a site restriction after ours, SASL on port 25, STARTTLS offered."""
    clients = traversable_tmp / "clients"
    clients.write_text(
        "198.51.100.7 REJECT site list says no\n198.51.100.8 REJECT site list says no\n"
    )
    instance = postfix_factory(
        hosted=HOSTED,
        smtpd_tls=test_ca.issue("mx", ("mx.harness.test",), ("127.0.0.1",)),
        main_cf={"smtpd_recipient_restrictions": f"check_client_access texthash:{clients}"},
        listener_options={"mx": {"smtpd_sasl_auth_enable": "yes"}},
    )
    policyd.wire(instance)
    return instance


def rcpt(
    mx: PostfixInstance,
    client_ip: str,
    recipient: str,
    *,
    sender: str = "a@ext.example",
    **kwargs: object,
) -> tuple[int, str]:
    reply = send(mx.mx_port, sender, [recipient], client_ip=client_ip, **kwargs).rcpts[recipient]
    return reply.code, reply.text


@pytest.mark.parametrize(
    ("client", "recipient", "code", "text"),
    [
        ("203.0.113.6", "bob@hosted.test", 554, "blocked by the policy of hosted.test"),
        ("203.0.113.5", "bob@hosted.test", 250, ""),  # in both lists: received
        ("2001:db8:bad::1", "bob@hosted.test", 554, "blocked by the policy of hosted.test"),
        ("2001:db8:aa::25", "bob@hosted.test", 250, ""),
        ("198.51.100.7", "bob@hosted.test", 250, ""),  # allowed: the site's later reject skipped
        ("198.51.100.8", "bob@hosted.test", 554, "site list says no"),  # not allowed: it applies
        ("203.0.113.99", "carol@other.test", 554, "only through its inbound gateway"),
        ("192.0.2.25", "carol@other.test", 250, ""),  # the gateway
        ("192.0.2.99", "carol@other.test", 250, ""),  # allowed beats gateway-only
        ("203.0.113.6", "dave@third.test", 250, ""),  # third.test has no settings at all
        ("198.51.100.7", "x@foreign.example", 554, "Relay access denied"),  # no open relay
    ],
)
def test_decision_table_as_postfix_replies(
    mx: PostfixInstance, client: str, recipient: str, code: int, text: str
) -> None:
    got_code, got_text = rcpt(mx, client, recipient)
    assert got_code == code, got_text
    assert text in got_text


def test_each_recipient_gets_its_own_answer(mx: PostfixInstance) -> None:
    result = send(
        mx.mx_port,
        "a@ext.example",
        ["bob@hosted.test", "carol@other.test"],
        client_ip="198.51.100.7",
    )
    assert result.rcpts["bob@hosted.test"].code == 250
    assert result.rcpts["carol@other.test"].code == 554
    assert "blocked by the policy of other.test" in result.rcpts["carol@other.test"].text
    assert result.queue_id
    assert len(mx.wait_for_mailbox("bob@hosted.test")) == 1
    assert mx.mailbox("carol@other.test") == []


def test_sasl_and_trusted_clients_are_never_rejected(mx: PostfixInstance) -> None:
    assert rcpt(mx, "203.0.113.6", "bob@hosted.test", sasl_user="alice")[0] == 250
    assert rcpt(mx, "203.0.113.6", "carol@other.test", sasl_user="alice")[0] == 250
    assert rcpt(mx, "192.0.2.3", "bob@hosted.test")[0] == 250  # trusted_networks
    assert rcpt(mx, "192.0.2.17", "bob@hosted.test")[0] == 554  # blocked, not trusted


def test_incoming_tls_policy(mx: PostfixInstance, test_ca: TestCA) -> None:
    code, text = rcpt(mx, "198.51.100.50", "bob@hosted.test", sender="clerk@bank.example")
    assert code == 530 and "Must issue a STARTTLS command first" in text, text
    over_tls = send(
        mx.mx_port,
        "clerk@bank.example",
        ["bob@hosted.test"],
        client_ip="198.51.100.50",
        starttls=True,
        ca_file=test_ca.ca_file,
    )
    assert over_tls.rcpts["bob@hosted.test"].code == 250
    # the policy is hosted.test's: other domains' recipients are not affected
    assert rcpt(mx, "198.51.100.50", "dave@third.test", sender="clerk@bank.example")[0] == 250
    # the allow list does not bypass TLS
    assert rcpt(mx, "198.51.100.7", "bob@hosted.test", sender="clerk@bank.example")[0] == 530


def test_block_history_is_recorded_by_the_daemon(
    mx: PostfixInstance, installation: Installation
) -> None:
    for client in ("203.0.113.6", "203.0.113.7", "203.0.113.6"):
        assert rcpt(mx, client, "bob@hosted.test")[0] == 554

    def recorded() -> list[dict[str, Any]]:
        entries = installation.cli_json("block", "list", "--sort", "recent")["entries"]
        return entries if entries[0]["blocks"] == 3 else []

    entries = wait_until(recorded, "3 blocks recorded", timeout=10, interval=0.2)
    assert (entries[0]["entry"], entries[0]["blocks"], entries[0]["clients"]) == (
        "203.0.113.0/24",
        3,
        2,
    )


def test_cli_change_applies_without_restart(
    mx: PostfixInstance, installation: Installation, policyd: Policyd
) -> None:
    assert policyd.process is not None
    pid = policyd.process.pid
    assert rcpt(mx, "198.51.100.60", "bob@hosted.test")[0] == 250
    installation.cli("block", "add", "198.51.100.60")
    installation.in_force()  # within a second, without a restart
    assert rcpt(mx, "198.51.100.60", "bob@hosted.test")[0] == 554
    mark = policyd.log_mark()
    installation.write("version: 1\nprimary_domain: [broken\n")  # invalid: last good stays
    policyd.wait_for_log("settings rejected, keeping the last good settings", since=mark)
    assert rcpt(mx, "198.51.100.60", "bob@hosted.test")[0] == 554
    assert policyd.process is not None and policyd.process.pid == pid


def test_daemon_down_means_4xx_then_delivery_after_restart(
    mx: PostfixInstance, policyd: Policyd
) -> None:
    policyd.kill()
    for client in ("203.0.113.6", "198.51.100.7"):  # blocked and allowed alike: try again later
        code, text = rcpt(mx, client, "bob@hosted.test")
        assert code == 451, text  # the policy check, or the transport lookup before it
    assert mx.mailbox("bob@hosted.test") == []
    policyd.start()
    # The sender's retry comes minutes later; sooner, an smtpd process may still answer from
    # its cache of the last failed address lookup (for the same recipient), so ask for alice.
    result = send(mx.mx_port, "a@ext.example", ["alice@hosted.test"], client_ip="198.51.100.7")
    assert result.rcpts["alice@hosted.test"].code == 250
    assert len(mx.wait_for_mailbox("alice@hosted.test")) == 1


def test_one_log_line_per_decision(mx: PostfixInstance, policyd: Policyd) -> None:
    rcpt(mx, "203.0.113.6", "bob@hosted.test")
    lines = [x for x in policyd.log_text().splitlines() if "to=<bob@hosted.test>" in x]
    assert len(lines) == 1
    assert "reject: RCPT from unknown[203.0.113.6]: 554 5.7.1" in lines[0]
    assert "rule=blocked-ip domain=hosted.test entry=203.0.113.0/24" in lines[0]


def test_postfix_config_refuses_a_configuration_without_relay_control(
    postfix_factory: Callable[..., PostfixInstance], installation: Installation, policyd: Policyd
) -> None:
    open_relay = postfix_factory(
        main_cf={
            "smtpd_relay_restrictions": "permit_mynetworks",
            "smtpd_recipient_restrictions": "permit",
        }
    )
    before = (open_relay.config_dir / "main.cf").read_text()
    done = installation.cli(
        "postfix-config",
        "--apply",
        "--postfix-config-dir",
        str(open_relay.config_dir),
        "--service",
        f"127.0.0.1:{open_relay.mx_port}/inet",
        check=False,
    )
    assert done.returncode == 1
    assert "reject_unauth_destination" in done.stderr
    assert (open_relay.config_dir / "main.cf").read_text() == before


def test_postfix_config_apply_is_idempotent(
    mx: PostfixInstance, installation: Installation, policyd: Policyd
) -> None:
    main_cf = (mx.config_dir / "main.cf").read_text()
    master_cf = (mx.config_dir / "master.cf").read_text()
    policyd.wire(mx)
    assert (mx.config_dir / "main.cf").read_text() == main_cf
    assert (mx.config_dir / "master.cf").read_text() == master_cf
    assert mx.postconf_get("postwarden_recipient_restrictions").startswith(
        f"check_policy_service {{ {policyd.policy_address}"
    )


def test_unix_sockets_in_the_postfix_spool(
    postfix_factory: Callable[..., PostfixInstance],
    installation: Installation,
    service_user: ServiceUser,
) -> None:
    """The layout that works with a chrooted smtpd: sockets in a spool subdirectory that
    belongs to the service user with group postfix (setgid, so the sockets get it too)."""
    postfix = postfix_factory(hosted=HOSTED)
    socket_dir = postfix.queue_dir / "postwarden"
    socket_dir.mkdir()
    os.chown(socket_dir, service_user.uid, grp.getgrnam("postfix").gr_gid)
    socket_dir.chmod(0o2750)
    daemon = Policyd(installation, socket_dir=socket_dir)
    daemon.start()
    try:
        daemon.wire(postfix)
        assert "unix:postwarden/policy," in postfix.postconf_get(
            "postwarden_recipient_restrictions"
        )  # relative to the queue directory
        assert oct((socket_dir / "policy").stat().st_mode & 0o777) == "0o660"
        assert rcpt(postfix, "203.0.113.6", "bob@hosted.test")[0] == 554
        assert rcpt(postfix, "203.0.113.5", "bob@hosted.test")[0] == 250
    finally:
        daemon.stop()
    assert not (socket_dir / "policy").exists()  # removed on stop
