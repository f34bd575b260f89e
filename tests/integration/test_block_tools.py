"""``block history``, ``block prune`` and ``what-if`` on traffic recorded through a real Postfix.

A mix of clients (two blocked ranges, an allowed address inside one of them, clients on no
list, IPv6) sends to a private Postfix wired to postwarden-policyd; policyd records each
refused attempt and every RCPT decision. ``what-if`` with one blocked range removed must
report exactly the attempts that range caused, and nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import PostfixInstance, ServiceUser, send
from tests.integration.daemons import Installation, Policyd

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    allowed_ips: [198.51.100.7]
    blocked_ips: [203.0.113.0/24, 198.51.100.0/25, "2001:db8:bad::/48", 192.0.2.200]
  other.test:
    blocked_ips: [198.51.100.0/24]
"""
HOSTED = {"hosted.test": ("alice", "bob"), "other.test": ("carol",)}


def _traffic() -> list[tuple[str, str, list[str]]]:
    """(client, sender, recipients): deterministic, every case several times."""
    clients = [
        "203.0.113.9",
        "203.0.113.77",
        "198.51.100.7",  # allowed by hosted.test, blocked by other.test
        "198.51.100.20",
        "198.51.100.200",  # outside hosted.test's /25, inside other.test's /24
        "192.0.2.10",
        "2001:db8:bad::5",
        "2001:db8:1::5",
    ]
    rcpts = [["alice@hosted.test"], ["bob@hosted.test", "carol@other.test"], ["carol@other.test"]]
    return [
        (client, f"s{i}@sender{i % 3}.example", rcpts[i % len(rcpts)])
        for i, client in enumerate(clients * 3)
    ]


@pytest.fixture
def inst(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    inst = Installation(traversable_tmp, service_user)
    inst.write(SETTINGS)
    return inst


@pytest.fixture
def recorded(
    postfix_factory: Callable[..., PostfixInstance], inst: Installation
) -> Iterator[dict[tuple[str, str], bool]]:
    """Run the traffic; yield {(client, recipient): refused} as Postfix answered."""
    policyd = Policyd(inst)
    policyd.start()
    try:
        mx = postfix_factory(hosted=HOSTED)
        policyd.wire(mx)
        answers: dict[tuple[str, str], bool] = {}
        for client, sender, rcpts in _traffic():
            result = send(mx.mx_port, sender, rcpts, client_ip=client)
            for rcpt in rcpts:
                answers[(client, rcpt)] = result.rcpts[rcpt].code >= 500
        refused = sum(
            1 for client, _, rcpts in _traffic() for rcpt in rcpts if answers[(client, rcpt)]
        )
        _until_recorded(inst, refused)
        yield answers
    finally:
        policyd.stop()


def _until_recorded(inst: Installation, refused: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = inst.cli_json("block", "history", "--all-domains", "--limit", "1000")["attempts"]
        if len(rows) >= refused:
            assert len(rows) == refused
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(rows)} of {refused} attempts recorded")
        time.sleep(0.2)


def _in(client: str, network: str) -> bool:
    return ipaddress.ip_address(client) in ipaddress.ip_network(network)


def _what_if(inst: Installation, text: str) -> dict[str, Any]:
    proposed = inst.base / "proposed.yaml"
    proposed.write_text(text)
    return inst.cli_json("what-if", str(proposed), "--since", "1h", "--examples", "100")


def _pairs(part: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["client"], e["recipient"]) for g in part["groups"] for e in g["examples"]}


def test_history_lists_each_refused_attempt(
    recorded: dict[tuple[str, str], bool], inst: Installation
) -> None:
    rows = inst.cli_json("block", "history", "--limit", "1000")["attempts"]
    assert rows and {r["domain"] for r in rows} == {"hosted.test"}
    assert {(r["client"], r["recipient"]) for r in rows} == {
        pair for pair, refused in recorded.items() if refused and "hosted.test" in pair[1]
    }
    one = inst.cli_json("block", "history", "--client", "203.0.113.9")["attempts"]
    assert one and all(r["client"] == "203.0.113.9" for r in one)
    assert {(r["entry"], r["refused_by"]) for r in one} == {("203.0.113.0/24", "policyd")}
    assert one[0]["sender"].endswith(".example")
    text = inst.cli("block", "history", "--domain", "other.test").stdout
    assert "198.51.100.0/24" in text and "<carol@other.test>" in text
    bad = inst.cli("block", "history", "--since", "yesterday", check=False)
    assert bad.returncode == 1 and "'yesterday' is not a duration" in bad.stderr


def test_what_if_reports_exactly_the_attempts_of_a_removed_range(
    recorded: dict[tuple[str, str], bool], inst: Installation
) -> None:
    caused = {
        pair
        for pair, refused in recorded.items()
        if refused and "hosted.test" in pair[1] and _in(pair[0], "203.0.113.0/24")
    }
    assert caused
    without = _what_if(inst, SETTINGS.replace("203.0.113.0/24, ", ""))
    assert without["newly_allowed"]["count"] == sum(
        1 for client, _, rcpts in _traffic() for r in rcpts if (client, r) in caused
    )
    assert _pairs(without["newly_allowed"]) == caused
    assert [g["key"] for g in without["newly_allowed"]["groups"]] == [
        "blocked-ip of hosted.test 203.0.113.0/24"
    ]
    for category in ("newly_refused", "refused_differently", "routed_differently"):
        assert without[category]["count"] == 0, category
    assert without["replayed"] == sum(len(r) for _, _, r in _traffic())

    stricter = _what_if(inst, SETTINGS.replace("192.0.2.200]", "192.0.2.0/24]"))
    assert _pairs(stricter["newly_refused"]) == {
        (c, r) for c, _, rcpts in _traffic() for r in rcpts if c == "192.0.2.10" and "hosted" in r
    }
    assert stricter["newly_allowed"]["count"] == 0

    broken = inst.base / "broken.yaml"
    broken.write_text(SETTINGS.replace("192.0.2.200", "192.0.2.300"))
    failed = inst.cli("what-if", str(broken), check=False)
    assert failed.returncode == 1 and "192.0.2.300" in failed.stderr


def test_prune_deletes_only_entries_the_history_shows_unused(
    recorded: dict[tuple[str, str], bool], inst: Installation
) -> None:
    early = inst.cli_json("block", "prune", "--unused-for", "7", "--dry-run")
    assert early["would_delete"] == []
    assert all("recorded only since" in k["why"] for k in early["kept"])

    # Ten days pass: recording and every listing began ten days ago; the blocks are recent.
    inst.cli("block", "add", "192.0.2.128/25", "--domain", "hosted.test")
    _until_listed(inst, "192.0.2.128/25")
    db = sqlite3.connect(inst.state_dir / "state.db")
    with db:
        ago = time.time() - 10 * 86400
        db.execute("UPDATE state_meta SET value = ? WHERE name = 'recording_since'", (repr(ago),))
        db.execute("UPDATE listed_entries SET since = ? WHERE entry != '192.0.2.128/25'", (ago,))
    db.close()
    dry = inst.cli_json("block", "prune", "--unused-for", "7", "--dry-run")
    assert dry["would_delete"] == ["192.0.2.200"]  # listed ten days, never blocked
    kept = {k["entry"]: k["why"] for k in dry["kept"]}
    assert kept["203.0.113.0/24"].startswith("blocked on")
    assert kept["192.0.2.128/25"].startswith("listed only since")
    assert "192.0.2.200" in inst.settings.read_text()

    done = inst.cli_json("block", "prune", "--unused-for", "7")
    assert done["deleted"] == ["192.0.2.200"]
    listed = [e["entry"] for e in inst.cli_json("block", "list")["entries"]]
    assert "192.0.2.200" not in listed and "203.0.113.0/24" in listed
    assert "block prune" in json.dumps(inst.cli_json("history", "--limit", "1"))
    too_long = inst.cli_json("block", "prune", "--unused-for", "60", "--dry-run")
    assert too_long["would_delete"] == [] and "retention_days is 30" in too_long["kept"][0]["why"]


def _until_listed(inst: Installation, entry: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db = sqlite3.connect(inst.state_dir / "state.db")
        try:
            if db.execute("SELECT 1 FROM listed_entries WHERE entry = ?", (entry,)).fetchone():
                return
        finally:
            db.close()
        time.sleep(0.2)
    raise AssertionError(f"policyd did not note {entry}")
