"""Operations: status, the audit trail of hand edits, and the daemons' health checks."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ServiceUser
from tests.harness.wait import wait_until
from tests.integration.daemons import Installation, MilterDaemon, Policyd


@pytest.fixture
def running(
    traversable_tmp: Path, service_user: ServiceUser
) -> Iterator[tuple[Installation, Policyd, MilterDaemon]]:
    installation = Installation(traversable_tmp, service_user)
    policyd = Policyd(installation)
    milter = MilterDaemon(installation, policyd)
    policyd.start()
    milter.start()
    try:
        yield installation, policyd, milter
    finally:
        milter.stop()
        policyd.stop()


def status(installation: Installation) -> tuple[int, dict[str, Any]]:
    done = installation.cli("status", "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def test_status_reports_daemons_versions_and_dkim(
    running: tuple[Installation, Policyd, MilterDaemon],
) -> None:
    installation, policyd, milter = running
    installation.cli("dkim", "create")
    code, data = status(installation)
    assert code == 0, data
    assert {d["name"] for d in data["daemons"]} == {"postwarden-policyd", "postwarden-milter"}
    assert all(d["reachable"] and d["settings_current"] for d in data["daemons"])
    (dkim,) = data["dkim"]
    assert {k: dkim[k] for k in ("domain", "active", "algorithm", "pending", "signed_by")} == {
        "domain": "hosted.test",
        "active": None,
        "algorithm": None,
        "pending": ["postwarden"],
        "signed_by": None,
    }
    assert data["warnings"] == [
        "hosted.test sends UNSIGNED mail: it has no DKIM key that verifies in DNS"
    ]
    assert dkim["signing"]["summary"] == (
        "UNSIGNED: no key of its own or of the primary domain verifies in DNS"
    )
    installation.cli("block", "add", "192.0.2.1")
    installation.in_force()
    assert status(installation)[0] == 0  # both run the new version
    marks = [(daemon, daemon.log_mark()) for daemon in (policyd, milter)]
    installation.write("version: 1\n")  # invalid: the daemons keep their last good settings
    for daemon, mark in marks:
        daemon.wait_for_log("settings rejected, keeping the last good settings", since=mark)
    code, data = status(installation)
    assert code == 1 and not any(d["settings_current"] for d in data["daemons"])
    installation.cli("block", "delete", "192.0.2.1", check=False)  # refused: file invalid
    milter.kill()
    code, data = status(installation)
    problems = {d["name"]: d["reachable"] for d in data["daemons"]}
    assert code == 1 and problems == {"postwarden-policyd": True, "postwarden-milter": False}


def test_hand_edits_are_audited_once(running: tuple[Installation, Policyd, MilterDaemon]) -> None:
    installation = running[0]
    installation.cli("block", "add", "192.0.2.1")
    installation.in_force()
    text = installation.settings.read_text()
    installation.write(text.replace("192.0.2.1", "192.0.2.2"))  # an editor, Ansible...
    installation.in_force()  # noticed once by each daemon; policyd records it after a delay
    rows = wait_until(
        lambda: rows if len(rows := installation.cli_json("history")) >= 3 else None,
        "the hand edit in the history (after init and the command)",
        interval=0.2,
    )
    assert [(r["source"], r["command"].rpartition(" block ")[2]) for r in rows][:2] == [
        ("file", "edited file"),
        ("command", "add 192.0.2.1"),
    ]
    assert rows[2]["command"].endswith(" init hosted.test")  # init is the first entry
    assert len(rows) == 3  # the hand edit recorded once
    assert "-    - 192.0.2.1" in rows[0]["diff"] and "+    - 192.0.2.2" in rows[0]["diff"]


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_policyd_metrics(running: tuple[Installation, Policyd, MilterDaemon]) -> None:
    installation, policyd, _ = running
    installation.cli("block", "add", "203.0.113.0/24")
    installation.in_force()
    request = (
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.9\n"
        b"recipient=bob@hosted.test\n\n"
    )
    with socket.create_connection(("127.0.0.1", policyd.policy_port), timeout=5) as conn:
        for _ in range(3):
            conn.sendall(request)
            assert conn.recv(4096).startswith(b"action=554")
    text = _metrics(policyd.metrics_port)
    assert 'postwarden_policy_decisions_total{domain="hosted.test",rule="blocked-ip"} 3.0' in text
    assert "postwarden_policy_seconds_count 3.0" in text
    assert "postwarden_settings_reloads_total 1.0" in text


POLICYD_FAMILIES = {
    "postwarden_policy_decisions_total",
    "postwarden_policy_seconds",
    "postwarden_socketmap_lookups_total",
    "postwarden_unknown_recipient_admissions_refused_total",
    "postwarden_connections_refused_total",
}
MILTER_FAMILIES = {
    "postwarden_milter_messages_total",
    "postwarden_milter_seconds",
    "postwarden_dkim_signatures_total",
    "postwarden_spam_tags_total",
    "postwarden_gateway_blocks_total",
    "postwarden_gateway_unknown_origins_total",
    "postwarden_dkim_key_checks_total",
    "postwarden_dkim_keys_failing",
}
SHARED = {
    "postwarden_settings_reloads_total",
    "postwarden_settings_refused_total",
    "postwarden_internal_errors_total",
}


def _families(text: str) -> set[str]:
    """The metric families in a /metrics text (not the client library's *_created gauges)."""
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    return {name for name in names if not name.endswith("_created")}


def test_each_daemon_exports_only_its_own_metric_families(
    running: tuple[Installation, Policyd, MilterDaemon],
) -> None:
    _, policyd, milter = running
    # policyd's workers count in files: a family shows once a worker touched it
    served = _families(_metrics(policyd.metrics_port))
    assert served and served <= POLICYD_FAMILIES | SHARED, served
    assert _families(_metrics(milter.metrics_port)) == MILTER_FAMILIES | SHARED
