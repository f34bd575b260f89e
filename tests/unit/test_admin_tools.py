"""Table-driven checks of the admin tools' pure parts: Postfix's certificate name rules,
durations, and the DKIM key watch's schedule and state changes (no DNS)."""

from __future__ import annotations

import math

import pytest

from postwarden.dkim import keys
from postwarden.dkim.store import DkimKeys, Status
from postwarden.dkim.watch import CheckResult, Event, Finding, KeyWatch, due
from postwarden.settings.model import DkimWatch
from postwarden.state.db import StateDB
from postwarden.tls.names import matches_hostname, matches_nexthop, name_matches
from postwarden.util.duration import BadDuration, parse_duration


@pytest.mark.parametrize(
    ("pattern", "name", "want"),
    [
        ("mx.example.com", "MX.Example.com.", True),
        ("*.example.com", "mx.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("mx.example.com", "mx2.example.com", False),
    ],
)
def test_certificate_name_rules(pattern: str, name: str, want: bool) -> None:
    assert name_matches(pattern, name) is want, f"got {not want}, want {want}"


def test_hostname_and_nexthop_strategies() -> None:
    names = ("mx1.mail.partner.example",)
    assert matches_hostname(names, "mx1.mail.partner.example")
    assert not matches_hostname(names, "mx2.mail.partner.example")
    assert matches_nexthop(names, "partner.example")  # dot-nexthop: any depth below
    assert not matches_nexthop(names, "other.example")
    assert matches_nexthop(("partner.example",), "partner.example")  # nexthop itself


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), (" 2W ", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1d", "1y"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadDuration, match="is not a duration"):
        parse_duration(text)


CADENCE = DkimWatch(
    pending_first_check=10,
    pending_max_interval=40,
    pending_for_hours=1,
    active_interval=1000,
    failing_interval=5,
)


class Script:
    """A checker answering from a list of findings, one per call."""

    def __init__(self, *findings: Finding) -> None:
        self.findings = list(findings)

    def __call__(self, row: object) -> CheckResult:
        return CheckResult(self.findings.pop(0), "scripted")


def test_pending_back_off_then_activation(tmp_path) -> None:
    with StateDB.open(tmp_path) as db:
        table = DkimKeys(db)
        table.add("example.com", "s1", keys.Algorithm.RSA, 2048, now=0.0)
        watch = KeyWatch(
            table, Script(Finding.WRONG, Finding.WRONG, Finding.VERIFIED), lambda: CADENCE
        )
        assert watch.run_due(9.0) == []  # not due before pending_first_check
        steps = [s.event for s in watch.run_due(10.0)]
        assert steps == [Event.STILL_PENDING]
        row = table.require("example.com", "s1")
        assert (row.next_check, row.failures) == (20.0, 1)  # first interval 10 s
        watch.run_due(20.0)
        assert table.require("example.com", "s1").next_check == 40.0  # doubled
        assert [s.event for s in watch.run_due(40.0)] == [Event.ACTIVATED]
        assert table.require("example.com", "s1").signs


def test_pending_gives_up_after_its_time(tmp_path) -> None:
    with StateDB.open(tmp_path) as db:
        table = DkimKeys(db)
        table.add("example.com", "s1", keys.Algorithm.RSA, 2048, now=0.0)
        watch = KeyWatch(table, Script(*[Finding.WRONG] * 500), lambda: CADENCE)
        events = []
        for now in range(0, 3700, 10):
            events += [s.event for s in watch.run_due(float(now))]
        assert events[-1] is Event.GAVE_UP and events.count(Event.GAVE_UP) == 1
        row = table.require("example.com", "s1")
        assert row.status is Status.PENDING and row.next_check == math.inf
        assert due(row, CADENCE) is None


def test_active_key_fails_falls_back_and_recovers(tmp_path) -> None:
    with StateDB.open(tmp_path) as db:
        table = DkimKeys(db)
        table.add("example.com", "s1", keys.Algorithm.RSA, 2048, now=0.0)
        table.activate("example.com", "s1", "ok", now=0.0)
        script = Script(Finding.UNSURE, Finding.WRONG, Finding.WRONG, Finding.VERIFIED)
        watch = KeyWatch(table, script, lambda: CADENCE)
        assert [s.event for s in watch.run_due(1000.0)] == [Event.DNS_ERROR]
        assert table.require("example.com", "s1").signs  # a DNS error proves nothing
        now = table.require("example.com", "s1").next_check
        assert [s.event for s in watch.run_due(now)] == [Event.FAILING]
        row = table.require("example.com", "s1")
        assert not row.signs and row.failing == now
        assert [s.event for s in watch.run_due(now + 5)] == [Event.STILL_FAILING]
        assert [s.event for s in watch.run_due(now + 10)] == [Event.RECOVERED]
        assert table.require("example.com", "s1").signs
