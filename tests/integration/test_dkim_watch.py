"""The DKIM key watch and ``dkim test`` through a real Postfix, milter and DNS server.

Nobody runs ``dkim verify`` here: the milter's key watch finds the published records in a
dnsmasq on loopback (``dns.nameserver``), activates the keys, notices a record that
disappears (mail then carries the primary domain's signature, which verifies), warns in
``status``, and resumes the domain's own key when the record is back. Intervals are set to
seconds in the settings file; the test polls for each state, it never times anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import PostfixInstance, ServiceUser, SmtpSink
from tests.integration.daemons import Installation, MilterDaemon, wire
from tests.integration.dns import DnsServer, running_dns_server
from tests.integration.test_dkim_postfix import signature_tags, submit, verify, wait_new

pytestmark = pytest.mark.postfix

HOSTED = {"hosted.test": ("alice",), "signed.test": ("sam",)}


def _until(what: str, probe: Callable[[], Any], timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        time.sleep(0.3)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with running_dns_server(("hosted.test", "signed.test")) as server:
        yield server


@pytest.fixture
def inst(traversable_tmp: Path, service_user: ServiceUser, dns_server: DnsServer) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    inst.cli("domain", "add", "signed.test")
    written = inst.settings.read_text()
    assert written.endswith("...\n")  # the end marker stays last
    inst.write(
        written.removesuffix("...\n")
        + f"dns:\n  nameserver: '{dns_server.address}'\n  timeout: 2\n"
        + "dkim_watch:\n  pending_first_check: 1\n  pending_max_interval: 2\n"
        + "  active_interval: 1\n  failing_interval: 1\n...\n"
    )
    return inst


@pytest.fixture
def postfix(
    postfix_factory: Callable[..., PostfixInstance], inst: Installation, smtp_sink: SmtpSink
) -> Iterator[PostfixInstance]:
    milter = MilterDaemon(inst)
    milter.start()
    try:
        instance = postfix_factory(hosted=HOSTED, routes={"ext.example": smtp_sink.nexthop})
        wire(instance, None, milter)
        instance.milter = milter  # type: ignore[attr-defined]
        yield instance
    finally:
        milter.stop()


def _status(inst: Installation, domain: str) -> dict[str, Any]:
    done = inst.cli("status", "--json", check=False)
    data = json.loads(done.stdout)
    entry = next(e for e in data["dkim"] if e["domain"] == domain)
    return {**entry, "all_warnings": data["warnings"]}


def test_the_watch_activates_falls_back_and_recovers(
    postfix: PostfixInstance, inst: Installation, dns_server: DnsServer, smtp_sink: SmtpSink
) -> None:
    records = {}
    for domain in ("hosted.test", "signed.test"):
        created = inst.cli_json("dkim", "create", "--domain", domain, "--selector", "s1")
        records[domain] = (created["host"], created["txt_strings"])
    assert _status(inst, "signed.test")["signed_by"] is None  # pending keys do not sign
    assert any("UNSIGNED" in w for w in _status(inst, "signed.test")["all_warnings"])
    for host, strings in records.values():
        dns_server.records[host] = tuple(strings)
    dns_server.restart()

    # Pending keys are found and activated by the watch, no `dkim verify` run.
    _until("signed.test signs", lambda: _status(inst, "signed.test")["signed_by"] == "signed.test")
    _until("hosted.test signs", lambda: _status(inst, "hosted.test")["signed_by"] == "hosted.test")
    time.sleep(1.5)  # the milter loads keys it sees activated within a second
    submit(postfix, "sam@signed.test")
    first = wait_new(smtp_sink, 1)
    assert signature_tags(first)["d"] == "signed.test" and verify(first, dns_server)
    tested = inst.cli_json("dkim", "test", "--domain", "signed.test")
    assert (tested["result"], tested["signature"]["domain"], tested["fallback"]) == (
        "pass",
        "signed.test",
        False,
    )

    # The record disappears: the watch marks the key failing, signing falls back.
    dns_server.remove(records["signed.test"][0])
    warned = _until(
        "status warns about signed.test's record",
        lambda: [w for w in _status(inst, "signed.test")["all_warnings"] if "is wrong since" in w],
    )
    assert "missing" in warned[0]
    assert _status(inst, "signed.test")["signed_by"] == "hosted.test"
    time.sleep(1.5)
    submit(postfix, "sam@signed.test")
    fallback = wait_new(smtp_sink, 2)
    assert signature_tags(fallback)["d"] == "hosted.test" and verify(fallback, dns_server)
    tested = inst.cli_json("dkim", "test", "--domain", "signed.test")
    assert (tested["result"], tested["fallback"]) == ("pass", True)
    milter_log = postfix.milter.log_text()  # type: ignore[attr-defined]
    assert "no longer verifies, signing falls back" in milter_log

    # The record comes back: the key signs again.
    dns_server.set_txt(*records["signed.test"])
    _until(
        "signed.test signs again",
        lambda: _status(inst, "signed.test")["signed_by"] == "signed.test",
    )
    time.sleep(1.5)
    submit(postfix, "sam@signed.test")
    again = wait_new(smtp_sink, 3)
    assert signature_tags(again)["d"] == "signed.test" and verify(again, dns_server)
    assert "verifies again and signs" in postfix.milter.log_text()  # type: ignore[attr-defined]


def test_dkim_test_reports_a_signature_that_fails(
    inst: Installation, dns_server: DnsServer, traversable_tmp: Path
) -> None:
    """A key verified once, then replaced in DNS by another key: dkimpy says fail."""
    created = inst.cli_json("dkim", "create", "--selector", "s1")
    dns_server.set_txt(created["host"], created["txt_strings"])
    inst.cli("dkim", "verify")
    message = traversable_tmp / "m.eml"
    message.write_text("From: Alice <alice@hosted.test>\nTo: x@ext.example\nSubject: t\n\nhi\n")
    passed = inst.cli_json("dkim", "test", str(message))
    assert passed["result"] == "pass" and passed["signature"]["selector"] == "s1"
    other = inst.cli_json("dkim", "create", "--selector", "s2")
    dns_server.set_txt(created["host"], other["txt_strings"])  # s1's name, s2's key
    failed = inst.cli("dkim", "test", str(message), "--json", check=False)
    assert failed.returncode == 1
    data = json.loads(failed.stdout)
    assert data["result"] == "fail" and "does not verify" in data["signature"]["detail"]
    verify_again = inst.cli("dkim", "verify", "--selector", "s1", check=False)
    assert verify_again.returncode == 1 and "different key" in verify_again.stderr
    probe = inst.cli("dkim", "test", "--domain", "hosted.test", "--json", check=False)
    assert probe.returncode == 1 and json.loads(probe.stdout)["result"] == "fail"
    foreign = traversable_tmp / "f.eml"
    foreign.write_text("From: x@foreign.example\nSubject: t\n\nhi\n")
    not_hosted = inst.cli("dkim", "test", str(foreign), check=False)
    assert not_hosted.returncode == 1 and "would not sign" in not_hosted.stdout
