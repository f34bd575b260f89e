"""End-to-end proof that the real-Postfix harness works.

Each test starts its own private Postfix instance on loopback and checks one thing the later
feature tests rely on: XCLIENT plays external IPv4/IPv6 clients and SASL users, routed mail
reaches a sink with its envelope intact, hosted mail lands in a Maildir, TLS policies are
enforced against real STARTTLS servers, a route that is down defers and recovers after a flush,
start-up failures are loud, and processes really run as the unprivileged service user.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import (
    PostfixInstance,
    PostfixStartError,
    Recipient,
    ServiceUser,
    SmtpSink,
    TestCA,
    TlsSink,
    XclientRefused,
    free_port,
    send,
    spawn_as_service_user,
    stop_process,
    wait_for_port,
    wait_for_unix_socket,
)

pytestmark = pytest.mark.postfix

EXTERNAL_IP = "203.0.113.7"
SENDER = "sender@ext.test"
PostfixFactory = Callable[..., PostfixInstance]


@pytest.mark.parametrize("client_ip", ["203.0.113.7", "2001:db8::7"])
def test_xclient_mail_reaches_sink_with_envelope(
    postfix_factory: PostfixFactory,
    smtp_sink: SmtpSink,
    client_ip: str,
) -> None:
    pf = postfix_factory(relay_domains=["sink.test"], routes={"sink.test": smtp_sink.nexthop})
    result = send(
        pf.mx_port,
        SENDER,
        ["rcpt@sink.test"],
        client_ip=client_ip,
        mail_options=["RET=HDRS", "ENVID=harness-1"],
        rcpt_options={"rcpt@sink.test": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig@sink.test"]},
        headers={"Subject": "envelope check"},
    )
    assert result.accepted == ["rcpt@sink.test"], result
    qid = result.queue_id
    assert qid, result

    [got] = smtp_sink.wait_for(1)
    assert got.mail_from == SENDER
    assert (got.mail_args["RET"], got.mail_args["ENVID"]) == ("HDRS", "harness-1")
    assert got.rcpts == (
        Recipient(
            "rcpt@sink.test", {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;orig@sink.test"}
        ),
    )
    assert got.message["Subject"] == "envelope check"
    assert re.search(rf"\[(IPv6:)?{re.escape(client_ip)}\]", got.message["Received"])
    pf.wait_for_log(rf"postfix/smtpd\[\d+\]: {qid}: client=unknown\[{re.escape(client_ip)}\]$")
    pf.wait_for_log(
        rf"{qid}: to=<rcpt@sink.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
        rf"{smtp_sink.port},.* status=sent"
    )


def test_hosted_mail_lands_in_maildir(postfix_factory: PostfixFactory, test_ca: TestCA) -> None:
    cert = test_ca.issue("mx", ("mx.harness.test",), ("127.0.0.1",))
    pf = postfix_factory(smtpd_tls=cert)
    result = send(
        pf.mx_port,
        SENDER,
        ["alice@hosted.test"],
        client_ip=EXTERNAL_IP,
        starttls=True,
        ca_file=test_ca.ca_file,
        headers={"Subject": "to the maildir", "X-Harness-Token": "t-4711"},
    )
    assert result.queue_id, result
    assert result.tls

    [delivered] = pf.wait_for_mailbox("alice@hosted.test")
    msg = delivered.message
    assert (msg["Subject"], msg["X-Harness-Token"]) == ("to the maildir", "t-4711")
    assert msg["Delivered-To"] == "alice@hosted.test"
    assert msg["Return-Path"] == f"<{SENDER}>"
    assert f"with ESMTPS id {result.queue_id}" in msg["Received"]
    assert b"test message" in delivered.raw
    assert pf.mailbox("bob@hosted.test") == []


def test_relay_denied_unless_sasl_user(postfix: PostfixInstance, smtp_sink: SmtpSink) -> None:
    postfix.set_route("foreign.test", smtp_sink.nexthop)
    rcpt = "someone@foreign.test"

    for port in (postfix.mx_port, postfix.submission_port):
        denied = send(port, SENDER, [rcpt], client_ip=EXTERNAL_IP)
        assert denied.rcpts[rcpt].code == 554, denied
        assert "Relay access denied" in denied.rcpts[rcpt].text
        assert denied.data is None

    allowed = send(
        postfix.submission_port,
        "alice@hosted.test",
        [rcpt],
        client_ip=EXTERNAL_IP,
        sasl_user="alice",
    )
    assert allowed.accepted == [rcpt], allowed
    qid = allowed.queue_id
    assert qid
    [got] = smtp_sink.wait_for(1)
    assert (got.mail_from, got.rcpt_addresses) == ("alice@hosted.test", [rcpt])
    postfix.wait_for_log(
        rf"postfix/submission/smtpd\[\d+\]: {qid}: "
        r"client=unknown\[203\.0\.113\.7\].*sasl_username=alice$"
    )


def test_only_the_harness_address_is_trusted(postfix: PostfixInstance, smtp_sink: SmtpSink) -> None:
    postfix.set_route("foreign.test", smtp_sink.nexthop)
    rcpt = "someone@foreign.test"

    other = send(postfix.mx_port, SENDER, [rcpt], source_address="127.0.0.2")
    assert other.rcpts[rcpt].code == 554, other
    with pytest.raises(XclientRefused, match="550"):
        send(postfix.mx_port, SENDER, [rcpt], source_address="127.0.0.2", client_ip=EXTERNAL_IP)

    trusted = send(postfix.mx_port, SENDER, [rcpt])  # 127.0.0.1 is mynetworks
    assert trusted.queue_id, trusted
    assert smtp_sink.wait_for(1)[0].rcpt_addresses == [rcpt]


def test_config_changes_apply_after_reload(postfix: PostfixInstance) -> None:
    blocked_ip, rcpt = "203.0.113.9", "alice@hosted.test"
    restriction = f"check_client_access inline:{{{blocked_ip}=REJECT}}"
    postfix.set_listener_options("mx", {"smtpd_client_restrictions": restriction})
    postfix.postconf({"smtpd_banner": "$myhostname harness banner"})

    assert postfix.postconf_get("smtpd_banner") == "$myhostname harness banner"
    with smtplib.SMTP(local_hostname="client.harness.test") as smtp:
        assert smtp.connect("127.0.0.1", postfix.mx_port) == (
            220,
            b"mx.harness.test harness banner",
        )
    mark = postfix.log_mark()
    blocked = send(postfix.mx_port, SENDER, [rcpt], client_ip=blocked_ip)
    assert blocked.rcpts[rcpt].code == 554, blocked
    postfix.wait_for_log(
        r"reject: RCPT from unknown\[203\.0\.113\.9\]: 554 5\.7\.1 .*"
        r"Client host rejected: Access denied",
        since=mark,
    )
    assert "reload -- version" in postfix.log_text()
    assert "reload -- version" not in postfix.log_since(mark)
    assert send(postfix.submission_port, SENDER, [rcpt], client_ip=blocked_ip).queue_id

    postfix.set_listener_options("mx", {"smtpd_client_restrictions": None})
    assert send(postfix.mx_port, SENDER, [rcpt], client_ip=blocked_ip).queue_id
    assert len(postfix.wait_for_mailbox(rcpt, count=2)) == 2


def _route_tls_sinks(
    pf: PostfixInstance, test_ca: TestCA, policies: dict[str, tuple[TlsSink, str]]
) -> None:
    """Route DOMAIN to its sink, with the TLS policy for the sink's next hop."""
    table = {sink.tls_policy_key: policy for sink, policy in policies.values()}
    pf.postconf(
        {
            "relay_domains": " ".join(policies),
            "transport_maps": pf.table(
                "transport", {d: s.nexthop for d, (s, _) in policies.items()}
            ),
            "smtp_tls_policy_maps": pf.table("tls_policy", table),
            "smtp_tls_CAfile": str(test_ca.ca_file),
        }
    )


def test_tls_encrypt_delivers_over_starttls(
    postfix: PostfixInstance,
    test_ca: TestCA,
    tls_sink_factory: Callable[..., TlsSink],
) -> None:
    sink = tls_sink_factory(
        cert=test_ca.self_signed("self", ("tls-sink.test",)), require_starttls=True
    )
    _route_tls_sinks(postfix, test_ca, {"enc.test": (sink, "encrypt")})
    result = send(postfix.mx_port, SENDER, ["rcpt@enc.test"], client_ip=EXTERNAL_IP)
    assert result.queue_id, result

    [got] = sink.wait_for(1)
    assert got.tls and got.tls_version in ("TLSv1.2", "TLSv1.3")
    assert got.rcpt_addresses == ["rcpt@enc.test"]
    postfix.wait_for_log(
        rf"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]"
        rf":{sink.port}"
    )


def test_tls_verify_defers_untrusted_certificate(
    postfix: PostfixInstance,
    test_ca: TestCA,
    tls_sink: TlsSink,
    tls_sink_factory: Callable[..., TlsSink],
) -> None:
    trusted = tls_sink  # certificate for tls-sink.test issued by test_ca
    untrusted = tls_sink_factory(cert=test_ca.self_signed("untrusted", ("tls-sink.test",)))
    verify = "verify match=tls-sink.test"
    _route_tls_sinks(
        postfix, test_ca, {"good.test": (trusted, verify), "bad.test": (untrusted, verify)}
    )
    good = send(postfix.mx_port, SENDER, ["rcpt@good.test"], client_ip=EXTERNAL_IP)
    bad = send(postfix.mx_port, SENDER, ["rcpt@bad.test"], client_ip=EXTERNAL_IP)
    assert good.queue_id and bad.queue_id

    [got] = trusted.wait_for(1)
    assert got.tls
    postfix.wait_for_log(
        rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]"
        rf":{trusted.port}"
    )
    postfix.wait_for_log(rf"{good.queue_id}: removed")
    postfix.wait_for_log(
        rf"{bad.queue_id}: to=<rcpt@bad.test>, .*dsn=4\.7\.5, "
        r"status=deferred \(Server certificate not verified\)"
    )
    assert postfix.queue_ids() == [bad.queue_id]
    assert untrusted.messages() == []


def test_route_down_then_back(
    postfix_factory: PostfixFactory,
    smtp_sink_factory: Callable[..., SmtpSink],
) -> None:
    sink = smtp_sink_factory(start=False)
    pf = postfix_factory(relay_domains=["down.test"], routes={"down.test": sink.nexthop})

    for count in (1, 2):  # first down from the start, then stopped and restarted on its port
        result = send(pf.mx_port, SENDER, [f"rcpt{count}@down.test"], client_ip=EXTERNAL_IP)
        assert result.queue_id, result
        pf.wait_for_log(
            rf"{result.queue_id}: to=<rcpt{count}@down.test>, .*status=deferred "
            rf"\(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:{sink.port}: "
            r"Connection refused\)"
        )
        assert pf.queue_ids() == [result.queue_id]

        sink.start()
        started = time.monotonic()
        pf.flush()
        got = sink.wait_for(count, timeout=5)
        pf.wait_until_queue_empty(timeout=5)
        assert time.monotonic() - started < 5
        assert got[-1].rcpt_addresses == [f"rcpt{count}@down.test"]
        sink.stop()


def test_service_user_process(postfix: PostfixInstance, service_user: ServiceUser) -> None:
    main_cf = postfix.config_dir / "main.cf"
    secret = postfix.base / "root-only"
    secret.write_text("not for the service user\n")
    secret.chmod(0o600)
    script = 'id -u; id -G; grep -c "^queue_directory" "$1"; cat "$2" 2>/dev/null || echo denied'
    proc = spawn_as_service_user(
        ["sh", "-c", script, "sh", str(main_cf), str(secret)], stdout=subprocess.PIPE
    )
    out, _ = proc.communicate(timeout=10)
    assert out.decode().split("\n")[:4] == [
        str(service_user.uid),
        str(service_user.gid),
        "1",
        "denied",
    ]


def test_service_user_daemon_waits_and_stops(
    service_user: ServiceUser,
    traversable_tmp: Path,
) -> None:
    run_dir = traversable_tmp / "run"  # like a daemon's RuntimeDirectory: owned by the user
    run_dir.mkdir()
    os.chown(run_dir, service_user.uid, service_user.gid)
    port, path = free_port(), run_dir / "daemon.sock"
    listener = (
        "import socket, time\n"
        f"tcp = socket.create_server(('127.0.0.1', {port}))\n"
        f"unix = socket.socket(socket.AF_UNIX); unix.bind({str(path)!r}); unix.listen()\n"
        "time.sleep(60)\n"
    )
    proc = spawn_as_service_user(["/usr/bin/python3", "-c", listener])
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        wait_for_unix_socket(path, proc=proc)
        assert path.stat().st_uid == service_user.uid
        status = dict(
            line.split(":\t", 1)
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        )
        assert status["Uid"].split() == [str(service_user.uid)] * 4
    finally:
        returncode = stop_process(proc)
    assert returncode == -signal.SIGTERM


def test_start_failure_is_loud() -> None:
    instance = PostfixInstance()
    try:
        with (
            socket.create_server(("127.0.0.1", instance.mx_port)),
            pytest.raises(PostfixStartError, match="Address already in use"),
        ):
            instance.start()
        assert not instance.running
        assert instance.pids() == []
    finally:
        instance.close()
